# Vault 1.21.0 settings shared by every node of the control-plane role.
# Fixed at image build time; per-node facts are in /run/config/vault.
ui            = true
disable_mlock = true
log_level     = "info"

# The API over mutual TLS: this node's certificate from Vault's own CA (the run script
# copies it to /run/vault), and only clients with a certificate from that CA get an
# answer: the host (its certificate for Vault) and the other Vault nodes (raft joins).
# No Consul or Nomad certificate is from it, so no other node can race the host to
# /v1/sys/init. Cluster traffic on 8201 is
# always mutual TLS, with certificates Vault makes itself.
listener "tcp" {
  address                            = "0.0.0.0:8200"
  cluster_address                    = "0.0.0.0:8201"
  tls_cert_file                      = "/run/vault/cert.pem"
  tls_key_file                       = "/run/vault/key.pem"
  tls_client_ca_file                 = "/run/vault/ca.pem"
  tls_require_and_verify_client_cert = true
}

# Unsealing: Resin initialises Vault with Shamir keys it keeps on the host and unseals
# each node through the API after boot. In production, unseal automatically instead
# with a transit key of another Vault (or a cloud KMS: awskms, gcpckms, azurekeyvault),
# so that a rebooted node unseals itself and no unseal key is held by an operator:
#
# seal "transit" {
#   address         = "https://vault-unsealer.example:8200"
#   key_name        = "autounseal"
#   mount_path      = "transit/"
#   tls_ca_cert     = "/run/vault/unsealer-ca.pem"
#   # the token comes from the environment: VAULT_TOKEN
# }
