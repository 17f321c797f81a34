# One security group for the whole cluster. Nodes reach each other only on the
# HashiStack's ports; outsiders in var.api_cidrs reach only the API ports; nodes
# reach out only to each other and over HTTPS (the EC2 API, for cloud auto-join).
# AWS's default allow-all egress rule is removed by the provider when it creates a
# group, so what is listed here is all there is.

data "aws_subnet" "first" {
  id = var.subnet_ids[0]
}

resource "aws_security_group" "cluster" {
  name_prefix = "resin-${local.cluster.name}-"
  description = "Resin cluster ${local.cluster.name}"
  vpc_id      = data.aws_subnet.first.vpc_id

  tags = merge(local.common_tags, { "Name" = "resin-${local.cluster.name}" })

  lifecycle {
    create_before_destroy = true
  }
}

resource "aws_vpc_security_group_ingress_rule" "cluster" {
  for_each = local.cluster_ports

  security_group_id            = aws_security_group.cluster.id
  referenced_security_group_id = aws_security_group.cluster.id
  ip_protocol                  = each.value.protocol
  from_port                    = each.value.from
  to_port                      = each.value.to
  description                  = each.value.description

  tags = local.common_tags
}

resource "aws_vpc_security_group_ingress_rule" "api" {
  for_each = local.api_rules

  security_group_id = aws_security_group.cluster.id
  cidr_ipv4         = each.value.cidr
  ip_protocol       = each.value.protocol
  from_port         = each.value.from
  to_port           = each.value.to
  description       = each.value.description

  tags = local.common_tags
}

resource "aws_vpc_security_group_egress_rule" "cluster" {
  for_each = local.cluster_ports

  security_group_id            = aws_security_group.cluster.id
  referenced_security_group_id = aws_security_group.cluster.id
  ip_protocol                  = each.value.protocol
  from_port                    = each.value.from
  to_port                      = each.value.to
  description                  = each.value.description

  tags = local.common_tags
}

resource "aws_vpc_security_group_egress_rule" "https" {
  for_each = toset(var.egress_https_cidrs)

  security_group_id = aws_security_group.cluster.id
  cidr_ipv4         = each.value
  ip_protocol       = "tcp"
  from_port         = 443
  to_port           = 443
  description       = "HTTPS to the EC2 API (cloud auto-join)"

  tags = local.common_tags
}
