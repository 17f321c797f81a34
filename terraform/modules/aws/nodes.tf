# Nodes: one launch template and one auto-scaling group of exactly one instance each.
#
# Why not one launch template and one group per role: a node's metadata carries its
# identity (its name, its TLS certificate and key for that name, its ACL tokens), and
# the metadata is the instance's user data. Instances of one launch template all get
# the same user data, so every node needs its own template. An auto-scaling group of
# one then does what a group is good for here: when the instance dies or fails its
# EC2 health check, the group launches a replacement with the same template, that is
# the same identity, which rejoins the cluster under the same name.
#
# The persist disk (service data on /var/lib) is a second EBS volume in the launch
# template. It is created with each instance and deleted with it: a replacement
# starts with an empty persist disk and catches up from its peers (raft), so replace
# one node at a time. See the README for what that means for upgrades.

resource "aws_launch_template" "node" {
  for_each = local.nodes

  name_prefix = "resin-${each.key}-"
  description = "Resin node ${each.key} (${each.value.role})"

  image_id      = aws_ami.role[each.value.role].id
  instance_type = local.role_instance_type[each.value.role]
  # The metadata holds the node's private key and tokens: keep it out of plan output.
  user_data = sensitive(local.user_data[each.key])

  iam_instance_profile {
    arn = aws_iam_instance_profile.node.arn
  }

  network_interfaces {
    device_index                = 0
    security_groups             = [aws_security_group.cluster.id]
    associate_public_ip_address = var.associate_public_ip
    delete_on_termination       = true
  }

  # IMDSv2 only, and one hop. The hop limit stops only containers behind a bridge:
  # the node itself closes the service once its boot has read the user data
  # (services/base/metadata/close: only root, and the users of the agents that need it
  # for cloud auto-join, reach 169.254.169.254 after that; packets from other network
  # namespaces are dropped). The IPv6 endpoint stays off: those rules are IPv4.
  metadata_options {
    http_endpoint               = "enabled"
    http_tokens                 = "required"
    http_put_response_hop_limit = 1
    http_protocol_ipv6          = "disabled"
    instance_metadata_tags      = "disabled"
  }

  # The persist disk.
  block_device_mappings {
    device_name = "/dev/sdf"
    ebs {
      volume_size           = local.roles[each.value.role].vm.persist_disk_gib
      volume_type           = var.persist_volume_type
      encrypted             = true
      delete_on_termination = true
    }
  }

  tag_specifications {
    resource_type = "volume"
    tags          = local.node_tags[each.key]
  }

  tag_specifications {
    resource_type = "network-interface"
    tags          = local.node_tags[each.key]
  }

  tags = local.node_tags[each.key]

  lifecycle {
    precondition {
      condition     = filesha256(each.value.metadata.path) == each.value.metadata.sha256
      error_message = "The metadata of ${each.key} at ${each.value.metadata.path} is not the file the plan describes (its sha256 differs): make the plan again with `resin plan`."
    }
    precondition {
      # base64 of 16384 bytes is 21848 characters.
      condition     = length(local.user_data[each.key]) <= 21848
      error_message = "The gzipped metadata of ${each.key} is larger than the 16 KB EC2 allows as user data."
    }
  }
}

resource "aws_autoscaling_group" "node" {
  for_each = local.nodes

  name             = "resin-${each.key}"
  min_size         = 1
  max_size         = 1
  desired_capacity = 1
  # One subnet per node: a replacement comes back in the same availability zone, and
  # nodes are spread over the zones of var.subnet_ids in order.
  vpc_zone_identifier = [local.node_subnets[each.key]]

  health_check_type         = "EC2"
  health_check_grace_period = 300

  # A new template version (a new image or new metadata) does not replace the running
  # instance: replacing nodes is done one at a time, outside this apply (README).
  launch_template {
    id      = aws_launch_template.node[each.key].id
    version = aws_launch_template.node[each.key].latest_version
  }

  dynamic "tag" {
    for_each = local.node_tags[each.key]
    content {
      key                 = tag.key
      value               = tag.value
      propagate_at_launch = true
    }
  }
}
