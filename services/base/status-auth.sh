# Sourced by the status endpoint's control CGIs (sv, log). Anyone who reaches the
# endpoint may read /cgi-bin/status; acting on services and reading their logs needs
# this node's status token, which only the host has (it reaches the node in its
# metadata, /run/config/resin/status-token): "Authorization: Bearer <token>".
refuse() {
  printf 'Status: %s\r\nContent-Type: application/json\r\n\r\n{"ok":false,"error":"%s"}\n' "$1" "$2"
  exit 0
}
token=$(cat /run/config/resin/status-token 2>/dev/null)
[ -n "$token" ] || refuse "403 Forbidden" "this node has no status token: it serves read-only status"
[ "$HTTP_AUTHORIZATION" = "Bearer $token" ] || refuse "401 Unauthorized" "needs Authorization: Bearer <the node's status token>"
unset token
