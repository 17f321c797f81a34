# Consul 1.8.7 settings shared by every node of the consul-server role.
# Fixed at image build time; per-node facts are in /run/config/consul.
data_dir             = "/var/lib/consul"
disable_update_check = true
client_addr          = "0.0.0.0"
server               = true
log_level            = "INFO"
ui = true

# Raft's timing: heartbeat, election and leader-lease timeouts scale with this.
performance {
  raft_multiplier = 1
}

# How long a new or returning server must stay healthy before it votes.
autopilot {
  server_stabilization_time = "10s"
}

# Mutual TLS everywhere, with Consul's own CA: agents and every API client (Nomad, the
# host's CLI) present a certificate it signed, and servers must be server.<dc>.consul.
# The files come from the node's metadata (the run script copies them to /run/consul).
ca_file                = "/run/consul/ca.pem"
cert_file              = "/run/consul/cert.pem"
key_file               = "/run/consul/key.pem"
verify_incoming        = true
verify_outgoing        = true
verify_server_hostname = true

# The HTTP API only over TLS (the host reaches it through a forward to 127.0.0.1:8501).
ports {
  http  = -1
  https = 8501
  grpc  = 8502
}

# Nothing without a token. The tokens themselves are per cluster: /run/config/consul.
acl {
  enabled                  = true
  default_policy           = "deny"
  enable_token_persistence = true
}
