output "ami_ids" {
  description = "AMI id of each role's image, by role."
  value       = { for role, ami in aws_ami.role : role => ami.id }
}

output "asg_names" {
  description = "Name of each node's auto-scaling group (of one instance), by node name."
  value       = { for name, asg in aws_autoscaling_group.node : name => asg.name }
}

output "launch_template_ids" {
  description = "Id of each node's launch template, by node name."
  value       = { for name, lt in aws_launch_template.node : name => lt.id }
}

output "security_group_id" {
  description = "The cluster's security group: add it to a bastion or load balancer that should reach the nodes."
  value       = aws_security_group.cluster.id
}

output "instance_role_name" {
  description = "The IAM role every node runs as (ec2:DescribeInstances only)."
  value       = aws_iam_role.node.name
}

output "join" {
  description = "The cloud auto-join string the nodes use, as the plan gives it."
  value       = local.join
}

output "cluster_name" {
  description = "The cluster's name, from the plan."
  value       = local.cluster.name
}
