# Shared by the initramfs /init and the boot script (sourced, not run).

# The block device whose virtio serial (set by the host) is $1, e.g. "persist".
disk_with_serial() {
  for block in /sys/block/vd*; do
    [ -r "$block/serial" ] || continue
    if [ "$(cat "$block/serial")" = "$1" ]; then echo "/dev/${block##*/}"; return 0; fi
  done
  return 1
}

# The partition whose GPT name is $1 (the kernel reports it as PARTNAME in uevent).
partition_named() {
  for uevent in /sys/class/block/*/uevent; do
    if grep -qx "PARTNAME=$1" "$uevent"; then block=${uevent%/uevent}; echo "/dev/${block##*/}"; return 0; fi
  done
  return 1
}

# $1 is "PARTLABEL=<name>" (a GPT partition), "LABEL=<label>" (a filesystem's label,
# e.g. the bootable ISO's) or a virtio serial.
find_disk() {
  case $1 in
    PARTLABEL=*) partition_named "${1#PARTLABEL=}" ;;
    LABEL=*) findfs "$1" 2>/dev/null ;;
    *) disk_with_serial "$1" ;;
  esac
}

# Wait up to $2 tenths of a second for the disk $1 (as find_disk takes it) to appear.
wait_for_disk() {
  tries=0
  until find_disk "$1"; do
    tries=$((tries + 1))
    [ "$tries" -ge "$2" ] && return 1
    sleep 0.1
  done
}
