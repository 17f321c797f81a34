resource "libvirt_domain" "node" {
  for_each = local.nodes

  name        = each.key
  description = "Resin node ${each.key} (${each.value.role}) of cluster ${local.cluster.name}"
  memory      = local.roles[each.value.role].vm.memory_mib
  vcpu        = local.roles[each.value.role].vm.cpus
  arch        = local.node_platform[each.key].arch
  machine     = local.node_platform[each.key].machine
  autostart   = var.autostart
  running     = true

  # UEFI: the disk has no BIOS boot code.
  firmware = local.node_platform[each.key].firmware.code
  nvram {
    file     = "${var.nvram_dir}/${each.key}_VARS.fd"
    template = local.node_platform[each.key].firmware.vars
  }

  cpu {
    mode = var.cpu_mode
  }

  # First disk: the node's root (boots from its EFI system partition). Second disk:
  # the persist disk. Order matters to the XSLT below.
  disk {
    volume_id = libvirt_volume.root[each.key].id
  }
  disk {
    volume_id = libvirt_volume.persist[each.key].id
  }
  cloudinit = libvirt_cloudinit_disk.metadata[each.key].id

  boot_device {
    dev = ["hd"]
  }

  network_interface {
    network_id = libvirt_network.cluster.id
    mac        = each.value.macs.cluster
    # The node configures the plan's address itself; libvirt reserves it.
    addresses      = [each.value.address]
    hostname       = each.key
    wait_for_lease = false
  }

  # No second NIC: the plan's "host" NIC is local QEMU's way in. A node without it
  # says so on its console and serves its status endpoint (9100) on the cluster address.

  # `virsh console <node>` shows the node's serial console (its boot messages).
  console {
    type        = "pty"
    target_type = "serial"
    target_port = "0"
  }

  # Resin images carry only virtio drivers and tell disks apart by their virtio
  # serial: the provider's config drive (an IDE/SATA CD-ROM) becomes a read-only
  # virtio disk with serial "cidata", and the second disk gets serial "persist".
  xml {
    xslt = file("${path.module}/domain.xsl")
  }

  lifecycle {
    precondition {
      condition     = local.node_in_network[each.key]
      error_message = "Node ${each.key}'s address ${each.value.address} is not in the network ${local.cidr}."
    }
  }
}
