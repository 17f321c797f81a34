# This node's place in cluster "resin", rendered by resin at bootstrap.
cluster_name = "resin"
# The address comes from DHCP: the run script sets VAULT_API_ADDR and VAULT_CLUSTER_ADDR
# from the address the boot script recorded.

# Integrated storage on the persist disk. An uninitialised node keeps trying to join
# through every Vault server until one of them is initialised and unsealed; it checks
# the leader's certificate against Vault's CA and the name every Vault node's
# certificate carries, and presents its own (the API requires a client certificate).
storage "raft" {
  path    = "/var/lib/vault/raft"
  node_id = "resin-1"

  retry_join {
    auto_join               = "provider=aws tag_key=resin-cluster tag_value=resin"
    auto_join_scheme        = "https"
    leader_ca_cert_file     = "/run/vault/ca.pem"
    leader_client_cert_file = "/run/vault/cert.pem"
    leader_client_key_file  = "/run/vault/key.pem"
    leader_tls_servername   = "vault.resin.internal"
  }
}
