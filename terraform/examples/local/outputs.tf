output "name" {
  description = "The cluster's name."
  value       = terraform_data.cluster.output.name
}

output "status_command" {
  description = "The command that shows the cluster's state (exits non-zero unless it is healthy)."
  value       = "${local.resin} status --name ${var.name}"
}
