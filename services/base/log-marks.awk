# A service's log on its way to svlogd: every line passes through unchanged, and the
# first line that matches a step's pattern marks that step on the boot timeline.
# `marks` names a file of "STEP ERE" lines (services/<service>/marks); `lib` is where
# mark() lives (the image's timeline.sh unless given).
BEGIN {
  if (lib == "") lib = "/usr/lib/resin/timeline.sh"
  while ((getline line < marks) > 0) {
    if (line ~ /^[ \t]*(#|$)/) continue
    n++
    step[n] = line; sub(/[ \t].*/, "", step[n])
    pattern[n] = line; sub(/^[^ \t]+[ \t]+/, "", pattern[n])
  }
  close(marks)
}
{
  print
  fflush()
  for (i = 1; i <= n; i++)
    if (!(i in done) && $0 ~ pattern[i]) {
      done[i] = 1
      system(". " lib "; mark " step[i])
    }
}
