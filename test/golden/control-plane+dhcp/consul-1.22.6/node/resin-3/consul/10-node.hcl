# This node's place in cluster "resin", rendered by resin at bootstrap.
node_name          = "resin-3"
node_id            = "aac60951-53ce-367f-5410-58d2491bd2b6"
datacenter         = "dc1"
primary_datacenter = "dc1"
bind_addr          = "{{ GetPrivateIP }}"
advertise_addr     = "{{ GetPrivateIP }}"
encrypt            = "ERERERERERERERERERERERERERERERERERERERERERE="
retry_join         = ["provider=aws tag_key=resin-cluster tag_value=resin"]
bootstrap_expect   = 3

# This server's own agent token (it may write this node and the services its role
# registers, nothing else), the management token the servers create when one of
# them first leads (the host's token; only servers hold it), and the cluster's DNS
# token as the default (read nodes and services: what DNS answers with).
acl {
  tokens {
    initial_management = "11111111-1111-4111-8111-111111111111"
    agent              = "61e9eca7-7388-45ed-854e-2a581b54562b"
    default            = "0e96037b-9ff0-42bd-83ae-27c606f8fe93"
  }
}
