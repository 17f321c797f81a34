# A Resin cluster on a KVM host you own, through libvirt, from the manifest
# `resin plan --json` writes (a static plan: the plan gives every node its address).
#
# Per image: a volume holding the role's disk.qcow2 (GPT, EFI system partition with a
# unified kernel image, squashfs root and its dm-verity hash tree). Per node: a copy-on-write root volume over
# it, a persist volume for service data, a config drive labelled cidata carrying the
# node's metadata as user-data (volumes.tf), and a UEFI domain whose NICs have the
# node's MACs (domains.tf), on the cluster's libvirt networks (network.tf).
#
# Every value derived from the plan is computed here, in locals that need no
# provider, so that the repository's unit tests can evaluate them with Terraform on
# a machine that cannot download the libvirt provider.

locals {
  plan    = jsondecode(file(var.plan_file))
  cluster = local.plan.cluster
  roles   = local.plan.roles
  nodes   = { for node in local.plan.nodes : node.name => node }
  cidr    = coalesce(var.network_cidr, local.cluster.network.subnet)

  # Image volumes are keyed by digest, not by role: during a rolling upgrade nodes on
  # the old image still boot from (and their root volumes are overlays of) the old
  # volume while replaced nodes use the new one. The old one goes with the first
  # apply that no longer names it.
  images     = { for role, r in local.roles : trimprefix(r.image.digest, "sha256:") => r.image... }
  node_image = { for name, node in local.nodes : name => trimprefix(local.roles[node.role].image.digest, "sha256:") }

  # Each node's architecture, machine type and UEFI firmware, from its role's image (a plan
  # from before Resin recorded architectures is amd64): x86_64/q35/OVMF or aarch64/virt/AAVMF.
  firmware = {
    amd64 = { code = var.ovmf_code, vars = var.ovmf_vars_template }
    arm64 = { code = var.aavmf_code, vars = var.aavmf_vars_template }
  }
  node_platform = {
    for name, node in local.nodes : name => {
      arch     = try(local.roles[node.role].platform.libvirt.arch, "x86_64")
      machine  = try(local.roles[node.role].platform.libvirt.machine, "q35")
      firmware = local.firmware[try(local.roles[node.role].arch, "amd64")]
    }
  }

  # Whether each node's planned address lies in the cluster network.
  node_in_network = {
    for name, node in local.nodes : name => try(
      cidrhost("${node.address}/${split("/", local.cidr)[1]}", 0) == cidrhost(local.cidr, 0), false
    )
  }
}
