# Consul 1.8.7 settings shared by every node of the consul-server role.
# Fixed at image build time; per-node facts are in /run/config/consul.
data_dir             = "/var/lib/consul"
disable_update_check = true
client_addr          = "0.0.0.0"
server               = true
log_level            = "INFO"
ui = true
