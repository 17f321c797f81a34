# Shared by the initramfs /init and the boot script (sourced, not run). Each function
# gives its result on stdout and by its exit status, and runs in a subshell: it sets no
# variable of the script that sources it.

# The block device whose virtio serial (set by the host) is $1, e.g. "persist".
disk_with_serial() (
  for block in /sys/block/vd*; do
    [ -r "$block/serial" ] || continue
    if [ "$(cat "$block/serial")" = "$1" ]; then echo "/dev/${block##*/}"; exit 0; fi
  done
  exit 1
)

# The persist disk. Resin's own VMs name it by its virtio serial. Elsewhere (an EBS
# volume's serial is its volume id; a libvirt or metal disk may have none) it is the
# ext4 volume labelled persist, or on first boot the one whole disk whose first MiB is
# all zeros: a disk with anything on it is never taken, so never formatted.
persist_disk() (
  disk_with_serial persist && exit 0
  findfs LABEL=persist 2>/dev/null && exit 0
  blank=""
  for block in /sys/block/*; do
    name=${block##*/}
    case $name in loop* | ram* | sr* | zram*) continue ;; esac
    [ "$(cat "$block/ro" 2>/dev/null)" = 0 ] || continue
    cmp -s -n 1048576 "/dev/$name" /dev/zero || continue
    [ -z "$blank" ] || { echo "resin: more than one blank disk ($blank, /dev/$name): none is taken as the persist disk" >&2; exit 1; }
    blank=/dev/$name
  done
  [ -n "$blank" ] && echo "$blank"
)

# The partition whose GPT name is $1 (the kernel reports it as PARTNAME in uevent).
partition_named() (
  for uevent in /sys/class/block/*/uevent; do
    if grep -qx "PARTNAME=$1" "$uevent"; then block=${uevent%/uevent}; echo "/dev/${block##*/}"; exit 0; fi
  done
  exit 1
)

# $1 is "PARTLABEL=<name>" (a GPT partition), "LABEL=<label>" (a filesystem's label,
# e.g. the bootable ISO's) or a virtio serial.
find_disk() (
  case $1 in
    PARTLABEL=*) partition_named "${1#PARTLABEL=}" ;;
    LABEL=*) findfs "$1" 2>/dev/null ;;
    *) disk_with_serial "$1" ;;
  esac
)

# Wait up to $2 tenths of a second for the disk $1 (as find_disk takes it) to appear.
wait_for_disk() (
  tries=0
  until find_disk "$1"; do
    tries=$((tries + 1))
    [ "$tries" -ge "$2" ] && exit 1
    sleep 0.1
  done
)
