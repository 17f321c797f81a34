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

# This server's agent token, and the management token the servers create when one of
# them first leads (the host's token; only servers hold it).
acl {
  tokens {
    master = "11111111-1111-4111-8111-111111111111"
    agent  = "22222222-2222-4222-8222-222222222222"
  }
}
