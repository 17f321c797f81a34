# Consul 1.22.6 settings shared by every node of the nomad-client-docker role.
# Fixed at image build time; per-node facts are in /run/config/consul.
data_dir             = "/var/lib/consul"
disable_update_check = true
client_addr          = "0.0.0.0"
server               = false
log_level            = "INFO"

# Raft's timing: heartbeat, election and leader-lease timeouts scale with this.
performance {
  raft_multiplier = 1
}

# Mutual TLS everywhere, with Consul's own CA: agents and every API client (Nomad, the
# host's CLI) present a certificate it signed, and servers must be server.<dc>.consul.
# The files come from the node's metadata (the run script copies them to /run/consul).
tls {
  defaults {
    ca_file         = "/run/consul/ca.pem"
    cert_file       = "/run/consul/cert.pem"
    key_file        = "/run/consul/key.pem"
    verify_incoming = true
    verify_outgoing = true
  }

  internal_rpc {
    verify_server_hostname = true
  }
}

# The HTTP API only over TLS (the host reaches it through a forward to 127.0.0.1:8501).
ports {
  http     = -1
  https    = 8501
  grpc     = -1
  grpc_tls = 8503
}

# Nothing without a token. The tokens themselves are per cluster: /run/config/consul.
acl {
  enabled                  = true
  default_policy           = "deny"
  enable_token_persistence = true
}
