terraform {
  # Any 1.x from 1.9 on (variable validations here refer to other variables); the
  # repository's tests parse and format-check this module with Terraform 1.11.
  required_version = "~> 1.9"

  required_providers {
    libvirt = {
      # 0.8 is the last series with the libvirt_domain / libvirt_volume /
      # libvirt_cloudinit_disk schema used here; 0.9 rewrote the resources.
      source  = "dmacvicar/libvirt"
      version = "~> 0.8.3"
    }
  }
}
