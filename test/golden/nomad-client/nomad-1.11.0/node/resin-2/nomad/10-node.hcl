# This node's place in cluster "resin", rendered by resin at bootstrap.
name       = "resin-2"
datacenter = "dc1"

advertise {
  http = "10.88.0.12"
  rpc  = "10.88.0.12"
  serf = "10.88.0.12"
}
