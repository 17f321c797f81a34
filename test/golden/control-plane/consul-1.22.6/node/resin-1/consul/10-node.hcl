# This node's place in cluster "resin", rendered by resin at bootstrap.
node_name          = "resin-1"
node_id            = "d8f697d1-7980-edae-b54b-44db1e103e5e"
datacenter         = "dc1"
primary_datacenter = "dc1"
bind_addr          = "10.88.0.11"
advertise_addr     = "10.88.0.11"
encrypt            = "ERERERERERERERERERERERERERERERERERERERERERE="
retry_join         = ["10.88.0.11","10.88.0.12","10.88.0.13"]
bootstrap_expect   = 3

# This server's own agent token (it may write this node and the services its role
# registers, nothing else), the management token the servers create when one of
# them first leads (the host's token; only servers hold it), and the cluster's DNS
# token as the default (read nodes and services: what DNS answers with).
acl {
  tokens {
    initial_management = "11111111-1111-4111-8111-111111111111"
    agent              = "a9c2f465-7c34-4bc6-8258-b99b3921b71a"
    default            = "0e96037b-9ff0-42bd-83ae-27c606f8fe93"
  }
}
