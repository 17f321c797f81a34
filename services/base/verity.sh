# Sourced by the initramfs /init: open the root filesystem only through dm-verity. Each
# function gives its result on stdout and by its exit status, and runs in a subshell.
# The image's root hash, salt and size (in 4096-byte blocks) come on the kernel command
# line as resin.verity.roothash=, resin.verity.salt= and resin.verity.blocks=; the hash
# device is the image's rootfs.verity (veritysetup's layout: a superblock in its first
# 4096-byte block, the tree from the second on).

# "ROOTHASH SALT BLOCKS" from the command line words in $1, or why they are unusable.
verity_params() (
  hash="" salt="" blocks=""
  set -f
  for arg in $1; do
    case $arg in
      resin.verity.roothash=*) hash=${arg#*=} ;;
      resin.verity.salt=*) salt=${arg#*=} ;;
      resin.verity.blocks=*) blocks=${arg#*=} ;;
    esac
  done
  [ -n "$hash$salt$blocks" ] || { echo "the kernel command line names no root hash (resin.verity.roothash=, resin.verity.salt=, resin.verity.blocks=)"; exit 1; }
  case $hash in *[!0-9a-f]*) hash="" ;; esac
  [ "${#hash}" -eq 64 ] || { echo "resin.verity.roothash= is not 64 lower-case hex digits"; exit 1; }
  case $salt in "" | *[!0-9a-f]*) salt=x ;; esac
  [ "${#salt}" -le 512 ] && [ $((${#salt} % 2)) -eq 0 ] || { echo "resin.verity.salt= is not an even number of lower-case hex digits (at most 256 bytes)"; exit 1; }
  case $blocks in "" | 0* | *[!0-9]*) echo "resin.verity.blocks= is not a positive block count"; exit 1 ;; esac
  echo "$hash $salt $blocks"
)

# The device-mapper table of the verity target over data device $1 and hash device $2,
# for ROOTHASH SALT BLOCKS ($3 $4 $5), with the optional error mode $6
# (panic_on_corruption). Sizes are in 512-byte sectors; the tree starts at hash block 1.
verity_table() (
  echo "0 $(($5 * 8)) verity 1 $1 $2 4096 4096 $5 1 sha256 $3 $4${6:+ 1 $6}"
)

# Open data device $1 with hash device $2 as /dev/mapper/$3 (ROOTHASH SALT BLOCKS in
# $4 $5 $6) and read every block through it first: a root that does not match its root
# hash stops here, before anything on it runs, and why is said on stdout. One dmsetup
# call makes two devices over the same data and tree: $3-check, which answers a block
# that fails with an I/O error (the whole read goes through it), and $3, which panics on
# any block that fails later. $3 is handed out only once all of the root has verified.
# $3-check stays: it never serves a block that fails either, and removing it would cost
# another dmsetup run (0.1 s of a boot under TCG, a third of what opening the root costs
# besides the read itself).
verity_open() (
  # No udev in the initramfs: dmsetup makes the /dev/mapper nodes itself.
  DM_DISABLE_UDEV=1
  export DM_DISABLE_UDEV
  check="$3-check,,,ro,$(verity_table "$1" "$2" "$4" "$5" "$6")"
  armed="$3,,,ro,$(verity_table "$1" "$2" "$4" "$5" "$6" panic_on_corruption)"
  said=$(dmsetup create --concise "$check;$armed" 2>&1) || { echo "dmsetup cannot open $1 with the hash tree on $2: $said"; exit 1; }
  if ! said=$(dd if="/dev/mapper/$3-check" of=/dev/null bs=1048576 2>&1); then
    kernel=$(dmesg | grep -i 'verity' | tail -n 1 | sed 's/^\[[^]]*\] *//')
    dmsetup remove "$3" "$3-check" 2>/dev/null
    echo "$1 does not match root hash $4 (${kernel:-$(echo "$said" | head -n 1)})"
    exit 1
  fi
  echo "/dev/mapper/$3"
)

# A read-only loop device for the file $1 (the ISO's root and hash tree).
loop_attach() (
  dev=$(losetup -f) && losetup -r "$dev" "$1" && echo "$dev"
)
