# This node's place in cluster "resin", rendered by resin at bootstrap.
name       = "resin-3"
datacenter = "dc1"

advertise {
  http = "10.88.0.13"
  rpc  = "10.88.0.13"
  serf = "10.88.0.13"
}
