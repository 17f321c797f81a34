# Consul 1.22.6 settings shared by every node of the nomad-client role.
# Fixed at image build time; per-node facts are in /run/config/consul.
data_dir             = "/var/lib/consul"
disable_update_check = true
client_addr          = "0.0.0.0"
server               = false
log_level            = "INFO"
