# This node's place in cluster "resin", rendered by resin at bootstrap.
name       = "resin-3"
datacenter = "dc1"

advertise {
  http = "{{ GetPrivateIP }}"
  rpc  = "{{ GetPrivateIP }}"
  serf = "{{ GetPrivateIP }}"
}

server {
  bootstrap_expect = 3
  encrypt          = "IiIiIiIiIiIiIiIiIiIiIiIiIiIiIiIiIiIiIiIiIiI="

  server_join {
    retry_join = ["provider=aws tag_key=resin-cluster tag_value=resin"]
  }
}

# The Consul token Nomad registers its services with (merged into the consul block of
# /etc/nomad.d/00-role.hcl).
consul {
  token = "33333333-3333-4333-8333-333333333333"
}
