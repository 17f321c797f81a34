output "network_name" {
  description = "The cluster's libvirt network."
  value       = libvirt_network.cluster.name
}

output "network_cidr" {
  description = "The cluster network's addresses; the KVM host has the first one."
  value       = local.cidr
}

output "domains" {
  description = "libvirt domain of each node, by node name (`virsh console <name>` shows its serial console)."
  value       = { for name, d in libvirt_domain.node : name => d.name }
}

output "addresses" {
  description = "Each node's cluster address (from the plan), by node name."
  value       = { for name, node in local.nodes : name => node.address }
}

output "image_volumes" {
  description = "Image volume of each role, by role."
  value       = { for role, r in local.roles : role => libvirt_volume.image[trimprefix(r.image.digest, "sha256:")].name }
}
