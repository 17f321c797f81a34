# The boot timeline. `mark STEP` notes the guest's uptime (seconds since the kernel
# started) when boot first reaches STEP, as an "UPTIME STEP" line in $RESIN_TIMELINE
# (/run/resin/timeline; /init keeps its own until the root's /run exists). The status
# endpoint serves it; `resin status --timeline` and `npm run bench` show it. A mark
# that cannot be written is skipped: it never stops a boot.
mark() (
  file=${RESIN_TIMELINE:-/run/resin/timeline}
  grep -qs " $1\$" "$file" && exit 0
  read -r up _ < /proc/uptime && echo "$up $1" >> "$file" || :
) 2>/dev/null
