variable "plan_file" {
  type        = string
  description = "Path to the manifest written by `resin plan --name N --network dhcp --join \"provider=aws tag_key=K tag_value=V\" --json --out FILE`. Images and metadata files it names are read from this machine."

  validation {
    condition     = can(jsondecode(file(var.plan_file)))
    error_message = "The plan_file must name a readable JSON file written by `resin plan --json --out FILE`."
  }

  validation {
    condition     = !can(jsondecode(file(var.plan_file))) || try(jsondecode(file(var.plan_file)).format, null) == "resin-plan/1"
    error_message = "The plan_file is not a Resin plan of format \"resin-plan/1\": make it again with this checkout's `resin plan --json --out FILE`."
  }

  validation {
    condition     = try(jsondecode(file(var.plan_file)).format, null) != "resin-plan/1" || try(jsondecode(file(var.plan_file)).cluster.network.mode, null) == "dhcp"
    error_message = "The AWS module needs a plan made with `--network dhcp`: EC2 gives every instance its address from the VPC subnet (and a new one when the auto-scaling group replaces it), so the fixed addresses of a static plan cannot be honoured. Make the plan with `resin plan --network dhcp --join \"provider=aws tag_key=resin-cluster tag_value=NAME\"`."
  }

  validation {
    # Checked only once the rules above hold, so that one mistake gives one message.
    condition = try(jsondecode(file(var.plan_file)).cluster.network.mode, null) != "dhcp" || try(
      can(regex("(^|\\s)provider=aws(\\s|$)", jsondecode(file(var.plan_file)).cluster.network.join)) &&
      can(regex("(^|\\s)tag_key=\\S", jsondecode(file(var.plan_file)).cluster.network.join)) &&
      can(regex("(^|\\s)tag_value=\\S", jsondecode(file(var.plan_file)).cluster.network.join)),
      false
    )
    error_message = "The plan's join string must name AWS cloud auto-join with a tag, e.g. `resin plan --join \"provider=aws tag_key=resin-cluster tag_value=NAME\"`: the module tags every instance with that tag so that nodes find each other."
  }
}

variable "bucket" {
  type        = string
  description = "An existing S3 bucket, in the provider's region, that the role images (disk.raw) are uploaded to for EC2's snapshot import."

  validation {
    condition     = can(regex("^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$", var.bucket))
    error_message = "The bucket must be an S3 bucket name: 3 to 63 lowercase letters, digits, '.' and '-'."
  }
}

variable "key_prefix" {
  type        = string
  description = "Prefix of the S3 keys images are uploaded under; each image lands at <prefix><cluster>/<role>/<digest>/disk.raw."
  default     = "resin/"

  validation {
    condition     = var.key_prefix == "" || can(regex("^[A-Za-z0-9!_.*'()/-]*/$", var.key_prefix))
    error_message = "The key_prefix must be empty or end with '/', using only S3's safe key characters."
  }
}

variable "vmimport_role_name" {
  type        = string
  description = "The IAM service role EC2 VM Import uses to read the images from the bucket (AWS's default name is vmimport). It must exist already; see terraform/README.md."
  default     = "vmimport"

  validation {
    condition     = can(regex("^[\\w+=,.@-]{1,64}$", var.vmimport_role_name))
    error_message = "The vmimport_role_name must be an IAM role name (1 to 64 of letters, digits and +=,.@_-)."
  }
}

variable "subnet_ids" {
  type        = list(string)
  description = "VPC subnets for the nodes, ideally one per availability zone. Node i is placed in subnet_ids[(i - 1) % length] and stays there when its auto-scaling group replaces it."

  validation {
    condition     = length(var.subnet_ids) > 0 && alltrue([for s in var.subnet_ids : can(regex("^subnet-[0-9a-f]+$", s))])
    error_message = "Give at least one subnet id (subnet-…); all of them in one VPC."
  }
}

variable "api_cidrs" {
  type        = list(string)
  description = "IPv4 networks allowed to reach the API ports (Consul HTTPS 8501, Nomad 4646, Vault 8200) from outside the cluster. Empty: only the cluster's own security group."
  default     = []

  validation {
    condition     = alltrue([for c in var.api_cidrs : can(cidrnetmask(c))])
    error_message = "Each entry of api_cidrs must be an IPv4 network in CIDR form, e.g. 10.0.0.0/16."
  }
}

variable "egress_https_cidrs" {
  type        = list(string)
  description = "Where nodes may open HTTPS connections outside the cluster: the EC2 API endpoint that cloud auto-join asks (through a NAT gateway or a VPC interface endpoint). Narrow it to the endpoint's network when you have one."
  default     = ["0.0.0.0/0"]

  validation {
    condition     = alltrue([for c in var.egress_https_cidrs : can(cidrnetmask(c))])
    error_message = "Each entry of egress_https_cidrs must be an IPv4 network in CIDR form."
  }
}

variable "associate_public_ip" {
  type        = bool
  description = "Give each instance a public IPv4 address. Off by default: nodes serve nothing to the internet and need only the EC2 API."
  default     = false
}

variable "instance_types" {
  type        = map(string)
  description = "EC2 instance type per role, e.g. { \"consul-server\" = \"t3.small\" }. Roles not named use default_instance_type. Must be Nitro types that boot UEFI (see the README's limitations), of the role's architecture (arm64 roles: Graviton, e.g. t4g, m7g)."
  default     = {}

  validation {
    condition     = alltrue([for t in values(var.instance_types) : can(regex("^[a-z][a-z0-9-]*\\.[a-z0-9]+$", t))])
    error_message = "Each instance type must look like family.size, e.g. t3.small or m7i.large."
  }
}

variable "default_instance_type" {
  type        = string
  description = "EC2 instance type for roles not named in instance_types. A Nitro type (UEFI boot, NVMe disks, ENA network). Null (the default): the plan's for each role's architecture, t3.small for amd64 and t4g.small for arm64; set it only when every such role has one architecture."
  default     = null

  validation {
    condition     = var.default_instance_type == null || can(regex("^[a-z][a-z0-9-]*\\.[a-z0-9]+$", var.default_instance_type))
    error_message = "The default_instance_type must look like family.size, e.g. t3.small."
  }
}

variable "persist_volume_type" {
  type        = string
  description = "EBS volume type of each node's persist disk (service data on /var/lib)."
  default     = "gp3"

  validation {
    condition     = contains(["gp2", "gp3", "io1", "io2", "st1", "sc1"], var.persist_volume_type)
    error_message = "The persist_volume_type must be one of gp2, gp3, io1, io2, st1, sc1."
  }
}

variable "tags" {
  type        = map(string)
  description = "Extra tags for everything the module creates. The module's own tags (resin-cluster, resin-role, resin-node and the join tag) win over these."
  default     = {}
}

variable "uefi_data" {
  type        = string
  description = "UEFI Secure Boot with your own keys: a UEFI variable store in AWS's format (base64, as `python-uefivars -o aws` or `virt-fw-vars --output-aws` write it) in which your PK, KEK and db are enrolled. Every AMI is registered with it, so instances enforce Secure Boot with those keys and boot only a UKI signed for a certificate in that db: every role's image must be built with `resin build --sign KEY,CERT`. Null (the default): AWS's default store, Secure Boot off."
  default     = null

  validation {
    condition     = var.uefi_data == null || try(length(var.uefi_data) % 4 == 0 && can(regex("^[A-Za-z0-9+/]+={0,2}$", var.uefi_data)), false)
    error_message = "The uefi_data must be a UEFI variable store in AWS's format, as base64 text (the contents of the file `uefivars.py -o aws -O FILE` or `virt-fw-vars --output-aws FILE` writes)."
  }

  validation {
    # Unsigned disk images would be refused by the firmware at every boot: refuse them here.
    condition = var.uefi_data == null || !can(jsondecode(file(var.plan_file)).roles) || alltrue([
      for role in values(jsondecode(file(var.plan_file)).roles) : can(regex("^[0-9a-f]{64}$", role.image.signature.certSha256))
    ])
    error_message = "uefi_data turns Secure Boot on, and the plan has a role whose image is not signed: its instances would not boot. Build every role with `resin build --sign KEY,CERT` (CERT enrolled in the uefi_data's db), then `resin upgrade --image-set` or `resin up` and `resin plan` again."
  }
}
