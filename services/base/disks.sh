# Shared by the initramfs /init and the boot script (sourced, not run).

# The block device whose virtio serial (set by the host) is $1, e.g. "persist".
disk_with_serial() {
  for block in /sys/block/vd*; do
    [ -r "$block/serial" ] || continue
    if [ "$(cat "$block/serial")" = "$1" ]; then echo "/dev/${block##*/}"; return 0; fi
  done
  return 1
}

# Wait up to $2 tenths of a second for the disk with serial $1 to appear.
wait_for_disk() {
  tries=0
  until disk_with_serial "$1"; do
    tries=$((tries + 1))
    [ "$tries" -ge "$2" ] && return 1
    sleep 0.1
  done
}
