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
# nothing else (the host creates it once the servers have a leader).
acl {
  tokens {
    agent = "adb78ff9-4bb6-44db-89a0-b653b634a604"
  }
}
