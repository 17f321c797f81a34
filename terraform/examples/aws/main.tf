# A Resin cluster on AWS from a plan made with
#   resin plan --name prod --nodes 3 --role consul-server --network dhcp \
#     --join "provider=aws tag_key=resin-cluster tag_value=prod" --json --out plan.json
# See terraform/README.md. Needs the hashicorp/aws provider (terraform init downloads it).

terraform {
  required_version = "~> 1.9"

  required_providers {
    aws = {
      source  = "hashicorp/aws"
      version = "~> 6.0"
    }
  }
}

variable "region" {
  type        = string
  description = "AWS region to run the cluster in."
}

variable "bucket" {
  type        = string
  description = "Existing S3 bucket in that region for the image uploads."
}

variable "subnet_ids" {
  type        = list(string)
  description = "Subnets for the nodes, one per availability zone."
}

variable "api_cidrs" {
  type        = list(string)
  description = "Networks allowed to reach the Consul, Nomad and Vault APIs."
  default     = []
}

provider "aws" {
  region = var.region
}

module "resin" {
  source = "../../modules/aws"

  plan_file  = "${path.root}/plan.json"
  bucket     = var.bucket
  subnet_ids = var.subnet_ids
  api_cidrs  = var.api_cidrs
}

output "asg_names" {
  description = "Each node's auto-scaling group."
  value       = module.resin.asg_names
}

output "security_group_id" {
  description = "The cluster's security group."
  value       = module.resin.security_group_id
}
