variable "plan_file" {
  type        = string
  description = "Path to the manifest written by `resin plan --name N --json --out FILE`. The images and metadata files it names are read on the machine that runs Terraform and uploaded to the libvirt host."

  validation {
    condition     = can(jsondecode(file(var.plan_file)))
    error_message = "The plan_file must name a readable JSON file written by `resin plan --json --out FILE`."
  }

  validation {
    condition     = !can(jsondecode(file(var.plan_file))) || try(jsondecode(file(var.plan_file)).format, null) == "resin-plan/1"
    error_message = "The plan_file is not a Resin plan of format \"resin-plan/1\": make it again with this checkout's `resin plan --json --out FILE`."
  }

  validation {
    condition     = try(jsondecode(file(var.plan_file)).format, null) != "resin-plan/1" || try(jsondecode(file(var.plan_file)).cluster.network.mode, null) == "static"
    error_message = "The libvirt module needs a static plan (`resin plan` without `--network dhcp`): nodes of a dhcp plan find each other by cloud auto-join, which has no libvirt provider, while a static plan gives every node its address on the cluster network."
  }
}

variable "pool" {
  type        = string
  description = "libvirt storage pool for the images, root, persist and config-drive volumes."
  default     = "default"

  validation {
    condition     = length(var.pool) > 0
    error_message = "The pool must name a libvirt storage pool."
  }
}

variable "network_cidr" {
  type        = string
  description = "IPv4 network of the cluster's libvirt network; the KVM host takes its first address. Null: the plan's subnet, where the plan's node addresses lie."
  default     = null

  validation {
    condition     = var.network_cidr == null || can(cidrnetmask(var.network_cidr))
    error_message = "The network_cidr must be an IPv4 network in CIDR form, e.g. 10.88.0.0/24."
  }

  validation {
    condition = (
      var.network_cidr == null ||
      try(jsondecode(file(var.plan_file)).cluster.network.mode, null) != "static" ||
      try(var.network_cidr == jsondecode(file(var.plan_file)).cluster.network.subnet, false)
    )
    error_message = "The plan fixes every node's address in its subnet: leave network_cidr unset, or set it to the plan's cluster.network.subnet."
  }
}

variable "ovmf_code" {
  type        = string
  description = "UEFI firmware (OVMF code) on the KVM host. Resin disk images boot UEFI only. Must match ovmf_vars_template (both 2 MB or both 4 MB builds)."
  default     = "/usr/share/OVMF/OVMF_CODE.fd"

  validation {
    condition     = startswith(var.ovmf_code, "/")
    error_message = "The ovmf_code must be an absolute path on the KVM host."
  }
}

variable "ovmf_vars_template" {
  type        = string
  description = "UEFI variable store template on the KVM host that each domain's NVRAM is copied from."
  default     = "/usr/share/OVMF/OVMF_VARS.fd"

  validation {
    condition     = startswith(var.ovmf_vars_template, "/")
    error_message = "The ovmf_vars_template must be an absolute path on the KVM host."
  }
}

variable "aavmf_code" {
  type        = string
  description = "UEFI firmware for arm64 nodes (AAVMF code, Debian's qemu-efi-aarch64) on the KVM host."
  default     = "/usr/share/AAVMF/AAVMF_CODE.fd"

  validation {
    condition     = startswith(var.aavmf_code, "/")
    error_message = "The aavmf_code must be an absolute path on the KVM host."
  }
}

variable "aavmf_vars_template" {
  type        = string
  description = "UEFI variable store template for arm64 nodes on the KVM host that each arm64 domain's NVRAM is copied from."
  default     = "/usr/share/AAVMF/AAVMF_VARS.fd"

  validation {
    condition     = startswith(var.aavmf_vars_template, "/")
    error_message = "The aavmf_vars_template must be an absolute path on the KVM host."
  }
}

variable "nvram_dir" {
  type        = string
  description = "Directory on the KVM host for each domain's UEFI variable store (<node>_VARS.fd)."
  default     = "/var/lib/libvirt/qemu/nvram"

  validation {
    condition     = startswith(var.nvram_dir, "/")
    error_message = "The nvram_dir must be an absolute path on the KVM host."
  }
}

variable "cpu_mode" {
  type        = string
  description = "libvirt CPU mode for the domains."
  default     = "host-passthrough"

  validation {
    condition     = contains(["host-passthrough", "host-model", "custom"], var.cpu_mode)
    error_message = "The cpu_mode must be host-passthrough, host-model or custom."
  }
}

variable "autostart" {
  type        = bool
  description = "Start the cluster's network and domains when the KVM host boots."
  default     = true
}
