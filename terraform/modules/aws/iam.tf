# What a node may do in AWS: list instances, which Consul's (and Nomad's) cloud
# auto-join needs to find the instances carrying the join tag. Nothing else: no
# managed policies, no SSM, no S3. DescribeInstances has no resource-level
# permissions, so its resource is "*".

data "aws_iam_policy_document" "assume" {
  statement {
    actions = ["sts:AssumeRole"]
    principals {
      type        = "Service"
      identifiers = ["ec2.amazonaws.com"]
    }
  }
}

data "aws_iam_policy_document" "auto_join" {
  statement {
    sid       = "CloudAutoJoin"
    actions   = ["ec2:DescribeInstances"]
    resources = ["*"]
  }
}

resource "aws_iam_role" "node" {
  name_prefix        = "resin-${local.cluster.name}-"
  description        = "Resin cluster ${local.cluster.name}: cloud auto-join only"
  assume_role_policy = data.aws_iam_policy_document.assume.json

  tags = local.common_tags
}

resource "aws_iam_role_policy" "auto_join" {
  name   = "cloud-auto-join"
  role   = aws_iam_role.node.id
  policy = data.aws_iam_policy_document.auto_join.json
}

resource "aws_iam_instance_profile" "node" {
  name_prefix = "resin-${local.cluster.name}-"
  role        = aws_iam_role.node.name

  tags = local.common_tags
}
