# This node's place in cluster "resin", rendered by resin at bootstrap.
cluster_name = "resin"
api_addr     = "https://10.88.0.12:8200"
cluster_addr = "https://10.88.0.12:8201"

# Integrated storage on the persist disk. An uninitialised node keeps trying to join
# through every Vault server until one of them is initialised and unsealed; it checks
# the leader's certificate against Vault's CA and the name every Vault node's
# certificate carries, and presents its own (the API requires a client certificate).
storage "raft" {
  path    = "/var/lib/vault/raft"
  node_id = "resin-2"

  retry_join {
    leader_api_addr         = "https://10.88.0.11:8200"
    leader_ca_cert_file     = "/run/vault/ca.pem"
    leader_client_cert_file = "/run/vault/cert.pem"
    leader_client_key_file  = "/run/vault/key.pem"
    leader_tls_servername   = "vault.resin.internal"
  }

  retry_join {
    leader_api_addr         = "https://10.88.0.12:8200"
    leader_ca_cert_file     = "/run/vault/ca.pem"
    leader_client_cert_file = "/run/vault/cert.pem"
    leader_client_key_file  = "/run/vault/key.pem"
    leader_tls_servername   = "vault.resin.internal"
  }

  retry_join {
    leader_api_addr         = "https://10.88.0.13:8200"
    leader_ca_cert_file     = "/run/vault/ca.pem"
    leader_client_cert_file = "/run/vault/cert.pem"
    leader_client_key_file  = "/run/vault/key.pem"
    leader_tls_servername   = "vault.resin.internal"
  }
}
