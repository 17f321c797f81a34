# This node's place in cluster "resin", rendered by resin at bootstrap.
node_name          = "resin-3"
node_id            = "aac60951-53ce-367f-5410-58d2491bd2b6"
datacenter         = "dc1"
primary_datacenter = "dc1"
bind_addr          = "10.88.0.13"
advertise_addr     = "10.88.0.13"
encrypt            = "ERERERERERERERERERERERERERERERERERERERERERE="
retry_join         = []

# This agent's own token, which may write this node and the services its role registers,
# nothing else (the host creates it once the servers have a leader), and the cluster's
# DNS token as the default (read nodes and services: what DNS answers with).
acl {
  tokens {
    agent   = "61e9eca7-7388-45ed-854e-2a581b54562b"
    default = "0e96037b-9ff0-42bd-83ae-27c606f8fe93"
  }
}
