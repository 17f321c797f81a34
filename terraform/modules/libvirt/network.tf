# The cluster network, isolated: nodes reach each other and the KVM host (which has
# its first address) reaches them; nothing else. A static node has no default route
# (its metadata names none, and it needs nothing outside its cluster), so a NAT or
# routed network would add nothing. Nodes set their own addresses from their
# metadata; the DHCP entries libvirt keeps for the plan's addresses (domains.tf) only
# reserve them.
resource "libvirt_network" "cluster" {
  name      = "resin-${local.cluster.name}"
  mode      = "none"
  domain    = "${local.cluster.name}.resin"
  addresses = [local.cidr]
  autostart = var.autostart

  dhcp {
    enabled = true
  }

  dns {
    enabled    = true
    local_only = true
  }
}

# The host NIC's segment. A static plan's metadata configures two NICs by MAC: the
# cluster NIC, and the "host" NIC through which resin's local QEMU reaches a node (a
# user-mode NIC there, 10.0.2.15/24, where the node status endpoint listens). A node
# whose host NIC is missing does not boot, so each node gets one here, on a bare L2
# segment with no address on the KVM host: nothing is reachable through it.
resource "libvirt_network" "host" {
  name      = "resin-${local.cluster.name}-host"
  mode      = "none"
  autostart = var.autostart
}
