# This node's place in cluster "resin", rendered by resin at bootstrap.
cluster_name = "resin"
api_addr     = "http://10.88.0.11:8200"
cluster_addr = "https://10.88.0.11:8201"

# Integrated storage on the persist disk. An uninitialised node keeps trying to join
# through every Vault server until one of them is initialised and unsealed.
storage "raft" {
  path    = "/var/lib/vault/raft"
  node_id = "resin-1"

  retry_join {
    leader_api_addr = "http://10.88.0.11:8200"
  }

  retry_join {
    leader_api_addr = "http://10.88.0.12:8200"
  }

  retry_join {
    leader_api_addr = "http://10.88.0.13:8200"
  }
}
