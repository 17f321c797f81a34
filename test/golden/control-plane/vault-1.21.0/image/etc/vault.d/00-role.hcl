# Vault 1.21.0 settings shared by every node of the control-plane role.
# Fixed at image build time; per-node facts are in /run/config/vault.
ui            = true
disable_mlock = true
log_level     = "info"

# Plain HTTP for now: TLS comes with the cluster's certificates in a later change.
# Cluster traffic on 8201 is always mutual TLS, with certificates Vault makes itself.
listener "tcp" {
  address         = "0.0.0.0:8200"
  cluster_address = "0.0.0.0:8201"
  tls_disable     = true
}
