#!/bin/sh
# Checks what the build, the specs and the demo need. As root it installs what is missing from
# Debian's packages; otherwise it prints the one command that installs them.
PKGS="build-essential pkg-config libcurl4-openssl-dev libssl-dev openssl curl
lua5.4 liblua5.4-dev lua-cjson lua-cjson-dev lua-socket lua-busted lua-check luarocks lua-argparse
libhiredis-dev redis-server lua-luv"
missing=""
for p in $PKGS; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || missing="$missing $p"
done
[ -z "$missing" ] && exit 0
if [ "$(id -u)" = 0 ]; then
  echo "installing:$missing"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq >/dev/null && apt-get install -y -qq $missing >/dev/null || {
    echo "could not install:$missing" >&2; exit 1; }
else
  echo "missing packages. Install them with:" >&2
  echo "  sudo apt-get install -y$missing" >&2
  exit 1
fi
