# A Resin cluster on a KVM host through libvirt, from a plan made with
#   resin plan --name lab --nodes 3 --role consul-server --json --out plan.json
# See terraform/README.md. Needs the dmacvicar/libvirt provider (terraform init
# downloads it).

terraform {
  required_version = "~> 1.9"

  required_providers {
    libvirt = {
      source  = "dmacvicar/libvirt"
      version = "~> 0.8.3"
    }
  }
}

variable "libvirt_uri" {
  type        = string
  description = "libvirt connection URI: qemu:///system on the KVM host itself, qemu+ssh://user@host/system from elsewhere."
  default     = "qemu:///system"
}

provider "libvirt" {
  uri = var.libvirt_uri
}

module "resin" {
  source = "../../modules/libvirt"

  plan_file = "${path.root}/plan.json"
}

output "addresses" {
  description = "Each node's cluster address."
  value       = module.resin.addresses
}

output "network_cidr" {
  description = "The cluster network; the KVM host has its first address."
  value       = module.resin.network_cidr
}
