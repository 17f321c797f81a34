# Role images: disk.raw → S3 → EBS snapshot (EC2 VM Import) → AMI.
#
# Names and keys carry the image digest, so a new image (after `resin build` and a new
# plan) is a new object, snapshot and AMI. They are created before the old ones are
# removed, so the launch templates always point at an AMI that exists.

resource "aws_s3_object" "disk" {
  for_each = local.roles

  bucket = var.bucket
  key    = "${var.key_prefix}${local.cluster.name}/${each.key}/${local.image_ids[each.key]}/disk.raw"
  source = each.value.image.files.disk_raw.path
  # The plan already knows the file's sha256; reading a multi-hundred-megabyte image
  # into Terraform only to hash it again would be wasted work.
  source_hash = each.value.image.files.disk_raw.sha256

  tags = merge(local.common_tags, { "resin-role" = each.key, "resin-image" = each.value.image.digest })

  lifecycle {
    create_before_destroy = true
    precondition {
      condition     = fileexists(each.value.image.files.disk_raw.path)
      error_message = "The image of role ${each.key} is not at ${each.value.image.files.disk_raw.path}: run `resin build ${each.key}` and `resin plan` again on this machine."
    }
  }
}

resource "aws_ebs_snapshot_import" "disk" {
  for_each = local.roles

  description = "Resin ${each.key} image ${each.value.image.digest}"
  role_name   = var.vmimport_role_name

  disk_container {
    format      = "RAW"
    description = "disk.raw of ${each.key}"
    user_bucket {
      s3_bucket = aws_s3_object.disk[each.key].bucket
      s3_key    = aws_s3_object.disk[each.key].key
    }
  }

  tags = merge(local.common_tags, {
    "Name"        = "resin-${local.cluster.name}-${each.key}"
    "resin-role"  = each.key
    "resin-image" = each.value.image.digest
  })

  lifecycle {
    create_before_destroy = true
  }
}

resource "aws_ami" "role" {
  for_each = local.roles

  name        = "resin-${local.cluster.name}-${each.key}-${substr(local.image_ids[each.key], 0, 16)}"
  description = "Resin ${each.key} image ${each.value.image.digest}"

  # The disk is GPT with an EFI system partition only: no BIOS boot code.
  boot_mode = "uefi"
  # With var.uefi_data, Secure Boot with the user's own keys (the plan's images are signed).
  uefi_data           = var.uefi_data
  architecture        = local.ami_architecture[each.key]
  virtualization_type = "hvm"
  ena_support         = true
  # Instances from this AMI answer only IMDSv2 (session tokens).
  imds_support     = "v2.0"
  root_device_name = "/dev/xvda"

  ebs_block_device {
    device_name           = "/dev/xvda"
    snapshot_id           = aws_ebs_snapshot_import.disk[each.key].id
    volume_type           = "gp3"
    delete_on_termination = true
  }

  tags = merge(local.common_tags, {
    "Name"        = "resin-${local.cluster.name}-${each.key}"
    "resin-role"  = each.key
    "resin-image" = each.value.image.digest
  })

  lifecycle {
    create_before_destroy = true
  }
}
