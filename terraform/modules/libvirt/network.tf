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
