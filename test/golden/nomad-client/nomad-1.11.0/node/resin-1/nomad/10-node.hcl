# This node's place in cluster "resin", rendered by resin at bootstrap.
name       = "resin-1"
datacenter = "dc1"

advertise {
  http = "10.88.0.11"
  rpc  = "10.88.0.11"
  serf = "10.88.0.11"
}
