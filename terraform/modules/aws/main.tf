# A Resin cluster on EC2, from the manifest `resin plan --json` writes.
#
# Per role: the role's UEFI disk image (disk.raw) goes to S3, EC2 imports it as an
# EBS snapshot, and the snapshot becomes an AMI (image.tf). Per node: a launch
# template whose user data is that node's metadata, and an auto-scaling group of
# exactly one instance (nodes.tf). One security group holds the cluster
# (security.tf); one IAM role lets nodes find each other through cloud auto-join
# (iam.tf).
#
# Every value derived from the plan is computed here, in locals that need no
# provider, so that the repository's unit tests can evaluate them with Terraform on
# a machine that cannot download the AWS provider.

locals {
  plan    = jsondecode(file(var.plan_file))
  cluster = local.plan.cluster
  roles   = local.plan.roles
  nodes   = { for node in local.plan.nodes : node.name => node }

  # "provider=aws tag_key=K tag_value=V" → { provider = "aws", tag_key = "K", tag_value = "V" }
  join      = local.cluster.network.join
  join_args = { for kv in regexall("([a-z_]+)=(\\S+)", local.join) : kv[0] => kv[1] }

  # Later maps win: var.tags cannot override the cluster's own tags.
  common_tags = merge(var.tags, {
    "resin-cluster" = local.cluster.name
  })

  # Hex part of each role's image digest, for names and S3 keys.
  image_ids = { for role, r in local.roles : role => trimprefix(r.image.digest, "sha256:") }

  # Each role's architecture as AWS names it, and its instance type: instance_types names
  # it, else default_instance_type, else the plan's default for the image's architecture
  # (t3.small for amd64, Graviton t4g.small for arm64). A plan from before Resin recorded
  # architectures is amd64.
  ami_architecture = { for role, r in local.roles : role => try(r.platform.aws.architecture, "x86_64") }
  role_instance_type = {
    for role, r in local.roles : role => lookup(var.instance_types, role, coalesce(var.default_instance_type, try(r.platform.aws.instance_type, "t3.small")))
  }

  # Security group rules between members of the group (security.tf).
  cluster_ports = {
    "consul-rpc-serf-tcp" = { from = 8300, to = 8302, protocol = "tcp", description = "Consul server RPC (8300), Serf LAN (8301) and WAN (8302)" }
    "consul-serf-udp"     = { from = 8301, to = 8302, protocol = "udp", description = "Consul Serf LAN and WAN gossip" }
    "consul-https"        = { from = 8501, to = 8501, protocol = "tcp", description = "Consul HTTPS API" }
    "consul-grpc-tls"     = { from = 8503, to = 8503, protocol = "tcp", description = "Consul gRPC with TLS" }
    "consul-dns-tcp"      = { from = 8600, to = 8600, protocol = "tcp", description = "Consul DNS" }
    "consul-dns-udp"      = { from = 8600, to = 8600, protocol = "udp", description = "Consul DNS" }
    "nomad-tcp"           = { from = 4646, to = 4648, protocol = "tcp", description = "Nomad HTTP API (4646), RPC (4647) and Serf (4648)" }
    "nomad-serf-udp"      = { from = 4648, to = 4648, protocol = "udp", description = "Nomad Serf gossip" }
    "vault"               = { from = 8200, to = 8201, protocol = "tcp", description = "Vault API (8200) and cluster (8201)" }
    "status"              = { from = 9100, to = 9100, protocol = "tcp", description = "Resin node status endpoint" }
  }

  # The API ports, open to var.api_cidrs.
  api_ports = {
    "consul-https" = { from = 8501, to = 8501, protocol = "tcp", description = "Consul HTTPS API" }
    "nomad-http"   = { from = 4646, to = 4646, protocol = "tcp", description = "Nomad HTTP API (TLS)" }
    "vault-api"    = { from = 8200, to = 8200, protocol = "tcp", description = "Vault API (TLS)" }
  }

  # One rule per API port and network: "consul-https-10.0.0.0/16" → { from, to, …, cidr }.
  api_rules = merge([
    for name, port in local.api_ports : {
      for cidr in var.api_cidrs : "${name}-${cidr}" => merge(port, { cidr = cidr })
    }
  ]...)

  # Each node's user data: its metadata, gzipped (Resin images accept gzipped user
  # data; EC2 accepts at most 16 KB of it before base64).
  user_data = { for name, node in local.nodes : name => base64gzip(file(node.metadata.path)) }

  # Each node's tags, which its auto-scaling group gives the instance.
  node_tags = {
    for name, node in local.nodes : name => merge(
      local.common_tags,
      # The tag the plan's join string tells agents to look for (it may well be
      # resin-cluster itself, with the cluster's name as its value).
      { (local.join_args["tag_key"]) = local.join_args["tag_value"] },
      {
        "Name"       = name
        "resin-role" = node.role
        "resin-node" = name
      },
    )
  }

  # Node i goes to subnet i-1 (cyclically), so nodes spread over availability zones.
  node_subnets = { for name, node in local.nodes : name => var.subnet_ids[(node.index - 1) % length(var.subnet_ids)] }
}
