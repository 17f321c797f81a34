# Images, and each node's root, persist and config-drive volumes.

resource "libvirt_volume" "image" {
  for_each = local.images

  name   = "resin-${local.cluster.name}-${substr(each.key, 0, 16)}.qcow2"
  pool   = var.pool
  source = each.value[0].files.disk_qcow2.path
  format = "qcow2"
}

resource "libvirt_volume" "root" {
  for_each = local.nodes

  name           = "${each.key}-root.qcow2"
  pool           = var.pool
  base_volume_id = libvirt_volume.image[local.node_image[each.key]].id
  format         = "qcow2"
}

resource "libvirt_volume" "persist" {
  for_each = local.nodes

  name   = "${each.key}-persist.qcow2"
  pool   = var.pool
  size   = local.roles[each.value.role].vm.persist_disk_gib * 1024 * 1024 * 1024
  format = "qcow2"
}

# The provider writes user_data as the file `user-data` on an ISO 9660 volume
# labelled cidata: the config drive Resin images look for at boot.
resource "libvirt_cloudinit_disk" "metadata" {
  for_each = local.nodes

  name = "${each.key}-cidata.iso"
  pool = var.pool
  # The metadata holds the node's private key and tokens: keep it out of plan output.
  user_data = sensitive(file(each.value.metadata.path))

  lifecycle {
    precondition {
      condition     = filesha256(each.value.metadata.path) == each.value.metadata.sha256
      error_message = "The metadata of ${each.key} at ${each.value.metadata.path} is not the file the plan describes (its sha256 differs): make the plan again with `resin plan`."
    }
  }
}
