terraform {
  # No required_providers: terraform_data and local-exec are built into Terraform, so
  # `terraform init` downloads nothing and works on a machine without internet.
  required_version = "~> 1.9"
}
