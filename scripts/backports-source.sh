#!/bin/sh
# Print the deb822 apt source for CODENAME-backports (main) taken from this machine's own
# apt configuration: the URI and keyring of its first enabled `deb` entry for CODENAME's
# main component, in deb822 files (*.sources) or one-line files (sources.list, *.list).
# No mirror host is written anywhere but where the machine already names one. Exits 1,
# printing nothing, when no entry fits. Used by scripts/ensure-deps.sh to install Go.
#   sh scripts/backports-source.sh CODENAME [APT_ETC_DIR, default /etc/apt]
set -eu
codename=${1:-}
[ -n "$codename" ] || exit 1
etc=${2:-/etc/apt}
# The first enabled `deb` entry for this release's main component: deb822 stanzas
# (*.sources) or one-line entries (sources.list, *.list); its URI and keyring.
entry=$(for f in "$etc"/sources.list.d/*.sources; do [ -f "$f" ] && awk -v suite="$codename" '
    function flush() { if (deb && enabled && (" " suites " ") ~ (" " suite " ") && (" " comps " ") ~ / main / && uri != "") { print uri " " key; found = 1; exit } deb = 0; enabled = 1; uri = ""; key = ""; suites = ""; comps = "" }
    BEGIN { enabled = 1 }
    /^[ \t]*$/ { flush(); next }
    /^#/ { next }
    tolower($1) == "types:" { for (i = 2; i <= NF; i++) if ($i == "deb") deb = 1 }
    tolower($1) == "uris:" { uri = $2 }
    tolower($1) == "suites:" { $1 = ""; suites = $0 }
    tolower($1) == "components:" { $1 = ""; comps = $0 }
    tolower($1) == "enabled:" { enabled = (tolower($2) != "no") }
    tolower($1) == "signed-by:" && $2 ~ /^\// { key = $2 }
    END { if (!found) flush() }' "$f"; done | head -n 1)
if [ -z "$entry" ]; then
  entry=$(cat "$etc"/sources.list "$etc"/sources.list.d/*.list 2>/dev/null | sed 's/#.*//' | awk -v suite="$codename" '
    $1 == "deb" { key = ""; i = 2
      if ($2 ~ /^\[/) { for (; i <= NF; i++) { if ($i ~ /^\[?signed-by=/) { key = $i; sub(/^\[?signed-by=/, "", key); sub(/\]$/, "", key) } if ($i ~ /\]$/) { i++; break } } }
      if ($(i + 1) == suite) for (j = i + 2; j <= NF; j++) if ($j == "main") { print $i " " key; exit } }')
fi
[ -n "$codename" ] && [ -n "$entry" ] || exit 1
uri=${entry%% *}
key=${entry#* }
echo "Types: deb"
echo "URIs: $uri"
echo "Suites: ${codename}-backports"
echo "Components: main"
if [ -n "$key" ]; then echo "Signed-By: $key"; fi
