#!/bin/sh
# The Debian packages lua-chatmaid needs. Usage: scripts/deps.sh check|install
#   check    (make, the build): the build's packages; prints what is missing and the one
#            command that installs it, and fails. Never installs anything.
#   install  (make demo, make test): everything the build, the specs and the demo need; as
#            root it installs what is missing, otherwise it prints the command and fails.
# Not a Debian system (no dpkg-query): nothing to check here, the compiler will tell.
mode=${1:-check}
BUILD_PKGS="build-essential pkg-config libcurl4-openssl-dev libssl-dev lua5.4 liblua5.4-dev
lua-cjson-dev libhiredis-dev"
TEST_PKGS="openssl curl lua-cjson lua-socket lua-busted lua-check luarocks lua-argparse
redis-server lua-luv"
case $mode in
  check) PKGS=$BUILD_PKGS ;;
  install) PKGS="$BUILD_PKGS $TEST_PKGS" ;;
  *) echo "usage: scripts/deps.sh check|install" >&2; exit 2 ;;
esac
command -v dpkg-query >/dev/null 2>&1 || exit 0
missing=""
for p in $PKGS; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || missing="$missing $p"
done
[ -z "$missing" ] && exit 0
if [ "$mode" = install ] && [ "$(id -u)" = 0 ]; then
  echo "installing:$missing"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq >/dev/null && apt-get install -y -qq $missing >/dev/null || {
    echo "could not install:$missing" >&2; exit 1; }
  exit 0
fi
sudo=""
[ "$(id -u)" = 0 ] || sudo="sudo "
echo "missing packages:$missing" >&2
echo "Install them with (\`make demo\` and \`make test\` do it themselves when run as root):" >&2
echo "  ${sudo}apt-get install -y$missing" >&2
exit 1
