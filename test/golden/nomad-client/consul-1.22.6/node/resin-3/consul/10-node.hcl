# This node's place in cluster "resin", rendered by resin at bootstrap.
node_name      = "resin-3"
node_id        = "aac60951-53ce-367f-5410-58d2491bd2b6"
datacenter     = "dc1"
bind_addr      = "10.88.0.13"
advertise_addr = "10.88.0.13"
encrypt        = "ERERERERERERERERERERERERERERERERERERERERERE="
retry_join     = []
