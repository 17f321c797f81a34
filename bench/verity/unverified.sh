# The bench's stand-in for services/base/verity.sh, in its image without dm-verity only
# (bench/verity.ts builds that image in a temporary project copy; no Resin image ever
# holds this file). The functions /init calls, opening nothing: verity_open hands /init
# the root disk itself, so the root is mounted as Resin mounted it before dm-verity.
# The root hash word /init prints says so on the console.

verity_params() (
  echo "none:the-bench-image-without-dm-verity - -"
)

verity_open() (
  echo "$1"
)

# As in verity.sh (the ISO's root file; the bench boots the virtio disk only).
loop_attach() (
  dev=$(losetup -f) && losetup -r "$dev" "$1" && echo "$dev"
)
