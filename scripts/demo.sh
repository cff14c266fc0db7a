#!/bin/sh
# make demo: the quickstart against a local sandbox, with a webhook receiver that verifies
# the signed delivery. No account, no network. Usage: scripts/demo.sh LUA BUILD_DIR
set -eu
LUA=${1:-lua5.4}
BUILD=${2:-build}
cd "$(dirname "$0")/.."
export LUA_PATH="./lua/?.lua;./lua/?/init.lua;;"
export LUA_CPATH="./$BUILD/?.so;;"
tmp=$(mktemp -d)
pids=""
cleanup() { for p in $pids; do kill "$p" 2>/dev/null || true; done; rm -rf "$tmp"; }
trap cleanup EXIT INT TERM

free_port() { "$LUA" -e 'local s = assert(require("socket").bind("127.0.0.1", 0))
  local _, p = s:getsockname() io.write(p) s:close()'; }

# wait_for FILE PATTERN SECONDS: poll a log file for a line (no busy loop, bounded).
wait_for() {
  i=0
  while ! grep -q "$2" "$1" 2>/dev/null; do
    i=$((i + 1))
    [ "$i" -gt $(($3 * 10)) ] && return 1
    sleep 0.1
  done
}

SECRET=whsec_demo_$(date +%s)
RPORT=$(free_port)
echo "== starting a webhook receiver on 127.0.0.1:$RPORT (examples/webhook_receiver.lua)"
CHATMAID_WEBHOOK_SECRET=$SECRET "$LUA" examples/webhook_receiver.lua --port "$RPORT" \
  >"$tmp/receiver.log" 2>&1 &
pids="$pids $!"
wait_for "$tmp/receiver.log" "listening" 10 || { cat "$tmp/receiver.log"; exit 1; }

echo "== starting the sandbox (bin/chatmaid-sandbox) with a live key, webhooks to the receiver"
"$LUA" bin/chatmaid-sandbox --port 0 --live-delay 1 --exit-with-parent \
  --webhook-url "http://127.0.0.1:$RPORT/webhooks/chatmaid" --webhook-secret "$SECRET" \
  >"$tmp/sandbox.log" 2>&1 &
pids="$pids $!"
wait_for "$tmp/sandbox.log" "listening on" 10 || { cat "$tmp/sandbox.log"; exit 1; }
URL=$(sed -n 's/.*listening on \(http:[^ ]*\).*/\1/p' "$tmp/sandbox.log" | head -n 1)
echo "   sandbox at $URL"
echo
echo "== examples/quickstart.lua"
CHATMAID_API_KEY=sk_live_sandbox_0000000000000001 CHATMAID_BASE_URL=$URL \
  "$LUA" examples/quickstart.lua
echo
echo "== the receiver got the signed message.sent webhook and verified it:"
if wait_for "$tmp/receiver.log" "^message\." 15; then
  grep "^message\." "$tmp/receiver.log" | sed 's/^/   /'
else
  echo "   no webhook arrived within 15 s; receiver log:"; sed 's/^/   /' "$tmp/receiver.log"
  exit 1
fi
echo
echo "Done. Point CHATMAID_BASE_URL at the sandbox to test your own code: see README.md."
