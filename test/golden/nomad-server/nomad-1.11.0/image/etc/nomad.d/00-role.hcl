# Nomad 1.11.0 settings shared by every node of the nomad-server role.
# Fixed at image build time; per-node facts are in /run/config/nomad.
data_dir             = "/var/lib/nomad"
disable_update_check = true
bind_addr            = "0.0.0.0"
log_level            = "INFO"

server {
  enabled = true
}

# The Consul agent on this node (every role runs one).
consul {
  address = "127.0.0.1:8500"
}
