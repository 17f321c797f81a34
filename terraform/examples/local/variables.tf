variable "name" {
  type        = string
  description = "Cluster name (resin up --name): its state lives in $RESIN_STATE_HOME/clusters/<name>."
  default     = "tf-local"

  validation {
    condition     = can(regex("^[a-z][a-z0-9-]{0,30}$", var.name))
    error_message = "The cluster name must be lowercase letters, digits and '-', starting with a letter, at most 31 characters (as resin requires)."
  }
}

variable "nodes" {
  type        = number
  description = "Number of nodes (resin up --nodes). Three or five give Consul a quorum that survives one or two lost nodes."
  default     = 3

  validation {
    condition     = var.nodes >= 1 && var.nodes <= 200 && floor(var.nodes) == var.nodes
    error_message = "The number of nodes must be a whole number from 1 to 200."
  }
}

variable "role" {
  type        = string
  description = "Role of every node (resin up --role), a file machines/<role>.yml."
  default     = "consul-server"

  validation {
    condition     = can(regex("^[a-z][a-z0-9-]*$", var.role))
    error_message = "The role must name a role in machines/ (lowercase letters, digits and '-'), e.g. consul-server or control-plane."
  }
}

variable "arch" {
  type        = string
  description = "Architecture of every node (resin up --arch): amd64, or arm64 (emulated by TCG on an amd64 host: several times slower to boot; raise up_timeout)."
  default     = "amd64"

  validation {
    condition     = contains(["amd64", "arm64"], var.arch)
    error_message = "The arch must be \"amd64\" or \"arm64\"."
  }
}

variable "channel" {
  type        = string
  description = "Where Consul, Nomad and Vault come from (resin up --channel): debian (Consul 1.8.7 from Debian; the only channel a machine without internet has) or official (HashiCorp's releases, fetched or imported first)."
  default     = "debian"

  validation {
    condition     = contains(["debian", "official"], var.channel)
    error_message = "The channel must be \"debian\" or \"official\"."
  }
}

variable "resin" {
  type        = string
  description = "Path to the resin executable. Null: this checkout's bin/resin (three directories above this module)."
  default     = null

  validation {
    condition     = var.resin == null || try(length(trimspace(var.resin)) > 0, false)
    error_message = "The resin path must not be empty; leave it unset for this checkout's bin/resin."
  }
}

variable "keep_data" {
  type        = bool
  description = "What `terraform destroy` does: true stops the cluster and keeps its disks and secrets (resin down), false deletes them (resin destroy --yes). Change it with `terraform apply` before destroying: destroy uses the value stored at the last apply."
  default     = true
}

variable "up_timeout" {
  type        = number
  description = "Seconds resin up waits for a healthy cluster (resin up --timeout). Without KVM (software emulation) boots are slower."
  default     = 300

  validation {
    condition     = var.up_timeout >= 30 && floor(var.up_timeout) == var.up_timeout
    error_message = "The up_timeout must be a whole number of seconds, at least 30."
  }
}
