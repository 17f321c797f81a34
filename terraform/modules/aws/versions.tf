terraform {
  # Any 1.x from 1.9 on; the repository's tests parse and format-check this module
  # with Terraform 1.11.
  required_version = "~> 1.9"

  required_providers {
    aws = {
      source  = "hashicorp/aws"
      version = "~> 6.0"
    }
  }
}
