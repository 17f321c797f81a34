# A local Resin cluster in QEMU, driven by Terraform with nothing but what is built
# into Terraform: a terraform_data resource whose provisioners run the resin CLI.
#
# apply:   resin up --name N --nodes … --role … --arch … --channel …, then resin status
#          (which exits non-zero, failing the apply, unless the cluster is healthy)
# destroy: resin down --name N (keep_data = true) or resin destroy N --yes
#
# The cluster's state is resin's, in $RESIN_STATE_HOME (or $XDG_STATE_HOME/resin);
# Terraform records only that it started it.

locals {
  resin = var.resin != null ? var.resin : abspath("${path.module}/../../../bin/resin")
}

resource "terraform_data" "cluster" {
  # A different name, size, role, architecture or channel is a different cluster: replace
  # it. (The architecture is a trigger only when it is not amd64, so that a cluster made
  # before the variable existed is not replaced.)
  triggers_replace = merge({
    name    = var.name
    nodes   = var.nodes
    role    = var.role
    channel = var.channel
  }, var.arch == "amd64" ? {} : { arch = var.arch })

  # Destroy-time provisioners may refer only to self, so everything they need is here.
  input = {
    name      = var.name
    resin     = local.resin
    keep_data = var.keep_data
  }

  provisioner "local-exec" {
    command = "exec \"$RESIN\" up --name \"$NAME\" --nodes \"$NODES\" --role \"$ROLE\" --arch \"$ARCH\" --channel \"$CHANNEL\" --timeout \"$TIMEOUT\""
    environment = {
      RESIN   = local.resin
      NAME    = var.name
      NODES   = var.nodes
      ROLE    = var.role
      ARCH    = var.arch
      CHANNEL = var.channel
      TIMEOUT = var.up_timeout
    }
  }

  provisioner "local-exec" {
    command = "exec \"$RESIN\" status --name \"$NAME\""
    environment = {
      RESIN = local.resin
      NAME  = var.name
    }
  }

  provisioner "local-exec" {
    when    = destroy
    command = self.input.keep_data ? "exec \"$RESIN\" down --name \"$NAME\"" : "exec \"$RESIN\" destroy \"$NAME\" --yes"
    environment = {
      RESIN = self.input.resin
      NAME  = self.input.name
    }
  }
}
