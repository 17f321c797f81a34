# Shared by the metadata providers and the boot script (sourced, not run). The functions
# that use variables run in a subshell, so they set none of the sourcing script's.

# The value of KEY=VALUE on the kernel command line; fails when it is not there.
# The command line is split into words without glob expansion (set -f, in a subshell
# so the caller keeps its own settings): an argument such as "x=*" stays as it is.
cmdline_value() (
  set -f
  for arg in $(cat /proc/cmdline); do
    case $arg in "$1="?*) echo "${arg#"$1="}"; exit 0 ;; esac
  done
  exit 1
)

# Ask DHCP once for a lease on NIC $1, sending at most $2 discovers a second apart;
# dhcp-event configures the NIC and records the lease in /run/resin/dhcp/$1.
dhcp_lease() {
  mkdir -p /run/resin/dhcp
  udhcpc -i "$1" -n -q -t "$2" -T 1 -A 0 -s /usr/lib/resin/metadata/dhcp-event >/dev/null 2>&1
}

# Ask DHCP for an address on every NIC at once, once per boot. A NIC without a DHCP
# server costs at most three seconds; the cluster NICs are set up later from metadata.
network_up() (
  [ -f /run/resin/dhcp-tried ] && exit 0
  for dev in /sys/class/net/*; do
    iface=${dev##*/}
    [ "$iface" = lo ] && continue
    ip link set "$iface" up
    dhcp_lease "$iface" 3 &
  done
  wait
  : > /run/resin/dhcp-tried
)

# HTTP for busybox: wget cannot PUT, so requests other than GET go over nc.
# http_request METHOD HOST PORT PATH [HEADER...]: the response body on stdout, or
# failure unless the status is 200. HTTP/1.0, so the server closes when done.
http_request() (
  method=$1 host=$2 port=$3 path=$4
  shift 4
  {
    printf '%s %s HTTP/1.0\r\nHost: %s\r\nContent-Length: 0\r\n' "$method" "$path" "$host"
    for header in "$@"; do printf '%s\r\n' "$header"; done
    printf '\r\n'
  } | timeout 5 nc -w 2 "$host" "$port" > /run/resin/http-response 2>/dev/null || exit 1
  cr=$(printf '\r')
  {
    IFS= read -r status || exit 1
    case $status in "HTTP/1."?" 200"*) ;; *) exit 1 ;; esac
    while IFS= read -r line; do
      case $line in "" | "$cr") break ;; esac
    done
    cat
  } < /run/resin/http-response
)
