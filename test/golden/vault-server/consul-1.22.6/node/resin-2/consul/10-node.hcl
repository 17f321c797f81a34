# This node's place in cluster "resin", rendered by resin at bootstrap.
node_name          = "resin-2"
node_id            = "1b4e9b99-b2bb-7835-399d-629033424079"
datacenter         = "dc1"
primary_datacenter = "dc1"
bind_addr          = "10.88.0.12"
advertise_addr     = "10.88.0.12"
encrypt            = "ERERERERERERERERERERERERERERERERERERERERERE="
retry_join         = []

# This agent's own token, which may write this node and the services its role registers,
# nothing else (the host creates it once the servers have a leader), and the cluster's
# DNS token as the default (read nodes and services: what DNS answers with).
acl {
  tokens {
    agent   = "adb78ff9-4bb6-44db-89a0-b653b634a604"
    default = "0e96037b-9ff0-42bd-83ae-27c606f8fe93"
  }
}
