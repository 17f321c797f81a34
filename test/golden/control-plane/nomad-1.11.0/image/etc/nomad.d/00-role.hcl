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
  # No task runs as root (Nomad's default) or as a service user that may still reach a
  # cloud's metadata service after boot for cloud auto-join (services/base/metadata/close).
  options = {
    "fingerprint.denylist" = "env_aws,env_azure,env_digitalocean,env_gce"
    "user.denylist"        = "root,Administrator,consul,vault"
  }
}

# Mutual TLS for RPC and the HTTP API, with Nomad's own CA. Servers must be
# server.global.nomad, clients client.global.nomad. HTTP API clients need not present a
# certificate (verify_https_client = false): ACL tokens guard the API.
tls {
  http                   = true
  rpc                    = true
  ca_file                = "/run/nomad/ca.pem"
  cert_file              = "/run/nomad/cert.pem"
  key_file               = "/run/nomad/key.pem"
  verify_server_hostname = true
  verify_https_client    = false
}

# Nothing without a token; the host bootstraps the management token (POST /v1/acl/bootstrap).
acl {
  enabled = true
}

# The Consul agent on this node (every role runs one), over its HTTPS API: checked
# against Consul's CA, with the client certificate Consul's CA issued this node's Nomad
# (Consul accepts no Nomad certificate). Its token is per cluster: /run/config/nomad.
consul {
  address   = "127.0.0.1:8501"
  ssl       = true
  ca_file   = "/run/nomad/consul-ca.pem"
  cert_file = "/run/nomad/consul-cert.pem"
  key_file  = "/run/nomad/consul-key.pem"
}
