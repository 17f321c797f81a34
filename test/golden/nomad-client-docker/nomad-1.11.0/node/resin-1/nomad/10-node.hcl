# This node's place in cluster "resin", rendered by resin at bootstrap.
name       = "resin-1"
datacenter = "dc1"

advertise {
  http = "10.88.0.11"
  rpc  = "10.88.0.11"
  serf = "10.88.0.11"
}

# The Consul token Nomad registers its services with (merged into the consul block of
# /etc/nomad.d/00-role.hcl).
consul {
  token = "33333333-3333-4333-8333-333333333333"
}
