# Nomad 1.11.0 settings shared by every node of the control-plane role.
# Fixed at image build time; per-node facts are in /run/config/nomad.
data_dir             = "/var/lib/nomad"
disable_update_check = true
bind_addr            = "0.0.0.0"
log_level            = "INFO"

server {
  enabled = true
}

client {
  enabled  = true
  cni_path = "/opt/cni/bin"

  # Nodes have no route out: skip the cloud metadata probes instead of waiting on them.
  options = {
    "fingerprint.denylist" = "env_aws,env_azure,env_digitalocean,env_gce"
  }
}

# The Consul agent on this node (every role runs one).
consul {
  address = "127.0.0.1:8500"
}
