# This node's place in cluster "resin", rendered by resin at bootstrap.
node_name          = "resin-2"
node_id            = "1b4e9b99-b2bb-7835-399d-629033424079"
datacenter         = "dc1"
primary_datacenter = "dc1"
bind_addr          = "10.88.0.12"
advertise_addr     = "10.88.0.12"
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
    agent              = "adb78ff9-4bb6-44db-89a0-b653b634a604"
    default            = "0e96037b-9ff0-42bd-83ae-27c606f8fe93"
  }
}
