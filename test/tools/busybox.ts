// busybox, which every image runs its shell scripts and awk with, is a requirement of
// the suite (scripts/apt-packages.txt; scripts/ensure-deps.sh installs it). Where it is
// missing, a test that runs it fails naming it: it never passes on dash alone.
import { whichProgram } from "../../cli/util/tools.js";

export const busybox = whichProgram("busybox") ?? "busybox (not installed: run sh scripts/ensure-deps.sh)";
