#!/bin/sh
# SPDX-License-Identifier: MIT
# Installs each rock with `luarocks make` into an empty tree and uses it from there, as a user
# on a fresh machine would (issue 25): no checkout on any path (cd /), LUA_PATH and LUA_CPATH
# naming only the tree and Debian's own Lua dirs (lua-cjson, LuaSocket, argparse).
#   1. chatmaid alone: its core links no hiredis, its manifest needs only lua and lua-cjson,
#      it installs no sandbox, CLI or Redis module, and it loads with lua-cjson as the only
#      module from outside the tree;
#   2. chatmaid-sandbox into the same tree: require("chatmaid.sandbox").start{} (and the
#      installed command through CHATMAID_SANDBOX_BIN), then the library sends a message to it;
#   3. chatmaid-redis: its core links hiredis; a seen set against a real redis-server;
#   4. chatmaid-cli: the installed `chatmaid` and `chatmaid-sandbox` commands run together.
# Usage: scripts/check-rocks.sh [LUA_VERSION [ROCK_VERSION]]   (5.4 and VERSION-1 by default;
# ROCK_VERSION scm-1 checks the scm rockspecs). `make check-rocks` runs it; so does CI.
set -eu
cd "$(dirname "$0")/.."
V=${1:-5.4}
RV=${2:-$(cat VERSION)-1}
LUA=lua$V
ROOT=$(pwd)
T=$(mktemp -d)
pids=""
cleanup() { for p in $pids; do kill "$p" 2>/dev/null || true; done; rm -rf "$T"; }
trap cleanup EXIT INT TERM

fail() { echo "check-rocks: $*" >&2; exit 1; }
install_rock() {
  echo "== luarocks --lua-version=$V make $1-$RV.rockspec (tree $T)"
  luarocks --lua-version="$V" make --deps-mode none --tree "$T" "rockspec/$1-$RV.rockspec" \
    >"$T/luarocks.log" 2>&1 || { cat "$T/luarocks.log"; fail "luarocks make $1 failed"; }
}

MULTIARCH=$(cc -print-multiarch 2>/dev/null || gcc -print-multiarch)
SYS_PATH="/usr/share/lua/$V/?.lua;/usr/share/lua/$V/?/init.lua"
SYS_CPATH="/usr/lib/$MULTIARCH/lua/$V/?.so"
TREE_PATH="$T/share/lua/$V/?.lua;$T/share/lua/$V/?/init.lua"
TREE_CPATH="$T/lib/lua/$V/?.so"
LIB="$T/lib/lua/$V"

# run_lua LUA_PATH LUA_CPATH CODE: the interpreter from /, with only these paths (no ;;)
run_lua() {
  (cd / && env -u LUA_INIT -u "LUA_INIT_${V%.*}_${V#*.}" LUA_PATH="$1" LUA_CPATH="$2" \
    "LUA_PATH_${V%.*}_${V#*.}=$1" "LUA_CPATH_${V%.*}_${V#*.}=$2" "$LUA" -e "$3")
}

for f in rockspec/*.rockspec; do
  luarocks lint "$f" >"$T/lint.log" 2>&1 || { cat "$T/lint.log"; fail "luarocks lint $f"; }
done

# 1. the library rock alone ------------------------------------------------------------------
install_rock chatmaid
[ -f "$LIB/chatmaid/core.so" ] || fail "chatmaid.core not installed"
if ldd "$LIB/chatmaid/core.so" | grep -q hiredis; then fail "chatmaid.core links hiredis"; fi
for m in chatmaid/redis.lua chatmaid/redis chatmaid/sandbox.lua chatmaid/sandbox chatmaid/cli; do
  [ ! -e "$T/share/lua/$V/$m" ] || fail "the library rock installed $m"
done
[ ! -e "$LIB/chatmaid/redis" ] || fail "the library rock installed chatmaid.redis.core"
# the installed manifest: the library needs lua and lua-cjson, nothing else
"$LUA" -e "MANIFEST = '$T/lib/luarocks/rocks-$V/manifest'" -e '
  local env = {}
  local f = assert(io.open(MANIFEST, "rb"))
  local chunk = assert((loadstring or load)(f:read("*a"), "=manifest"))
  f:close()
  if setfenv then setfenv(chunk, env) else chunk = assert(load(string.dump(chunk), nil, "b", env)) end
  chunk()
  local deps = assert(env.dependencies.chatmaid, "no chatmaid in the manifest")
  for _, list in pairs(deps) do
    for _, d in ipairs(list) do
      assert(d.name == "lua" or d.name == "lua-cjson", "the library rock depends on " .. d.name)
    end
  end' || fail "the library rock's manifest"
# loads with lua-cjson as the only module from outside the tree, and loads none of the others
mkdir "$T/cjson-only"
ln -s "/usr/lib/$MULTIARCH/lua/$V/cjson.so" "$T/cjson-only/cjson.so"
run_lua "$TREE_PATH" "$TREE_CPATH;$T/cjson-only/?.so" '
  local chatmaid = require "chatmaid"
  assert(chatmaid.new{ api_key = "sk_test_x1" })
  for _, m in ipairs{ "socket", "argparse", "chatmaid.redis.core", "chatmaid.sandbox" } do
    assert(package.loaded[m] == nil, m .. " was loaded")
  end
  assert(not pcall(require, "socket"), "LuaSocket is reachable: the check proves nothing")
  print("   chatmaid " .. chatmaid.VERSION .. " loads with lua-cjson alone")' ||
  fail "the library rock alone"

# 2. the sandbox rock, and a message sent to it ----------------------------------------------
install_rock chatmaid-sandbox
send_to_sandbox='
  local sandbox = require "chatmaid.sandbox"
  local src = debug.getinfo(sandbox.start, "S").source
  assert(src:find(TREE, 1, true), "chatmaid.sandbox is not the installed one: " .. src)
  local sb = sandbox.start{}
  local client = assert(require("chatmaid").new{ api_key = "sk_test_sandbox_0000000000000001",
                                                 base_url = sb.url })
  local msg, err = client:send{ to = "+15557654321", content = "hello from an installed tree" }
  sb:stop()
  assert(msg, tostring(err))
  print("   sent " .. msg.id .. " (" .. msg.status .. ") to the sandbox at " .. sb.url)'
run_lua "$TREE_PATH;$SYS_PATH" "$TREE_CPATH;$SYS_CPATH" \
  "TREE = '$T'; $send_to_sandbox" || fail "sandbox.start from the installed tree"
# the installed command (luarocks' shell wrapper) through CHATMAID_SANDBOX_BIN
CHATMAID_SANDBOX_BIN="$T/bin/chatmaid-sandbox" run_lua "$TREE_PATH;$SYS_PATH" \
  "$TREE_CPATH;$SYS_CPATH" "TREE = '$T'; $send_to_sandbox" ||
  fail "sandbox.start with CHATMAID_SANDBOX_BIN=$T/bin/chatmaid-sandbox"

# 3. the Redis rock --------------------------------------------------------------------------
install_rock chatmaid-redis
ldd "$LIB/chatmaid/redis/core.so" | grep -q hiredis || fail "chatmaid.redis.core without hiredis"
redis-server --port 0 --unixsocket "$T/redis.sock" --save "" --appendonly no --dir "$T" \
  >"$T/redis.log" 2>&1 &
pids="$pids $!"
i=0
while [ ! -S "$T/redis.sock" ]; do
  i=$((i + 1)); [ "$i" -gt 50 ] && { cat "$T/redis.log"; fail "redis-server did not start"; }
  sleep 0.1
done
run_lua "$TREE_PATH;$SYS_PATH" "$TREE_CPATH;$SYS_CPATH" "
  local set = require('chatmaid.redis').seen_set{ url = 'unix://$T/redis.sock' }
  assert(set:seen('evt_1') == false and set:seen('evt_1') == true)
  print('   chatmaid.redis: a seen set over ' .. 'unix://$T/redis.sock')" ||
  fail "chatmaid.redis from the installed tree"

# 4. the CLI rock: both installed commands ---------------------------------------------------
install_rock chatmaid-cli
export LUA_PATH="$TREE_PATH;$SYS_PATH" LUA_CPATH="$TREE_CPATH;$SYS_CPATH"
export "LUA_PATH_${V%.*}_${V#*.}=$LUA_PATH" "LUA_CPATH_${V%.*}_${V#*.}=$LUA_CPATH"
out=$(cd / && "$T/bin/chatmaid" --version) || fail "chatmaid --version"
[ "$out" = "chatmaid $(cat "$ROOT/VERSION")" ] || fail "chatmaid --version said: $out"
(cd / && exec "$T/bin/chatmaid-sandbox" --port 0 --exit-with-parent >"$T/sandbox.log" 2>&1) &
pids="$pids $!"
i=0
until grep -q "listening on" "$T/sandbox.log" 2>/dev/null; do
  i=$((i + 1)); [ "$i" -gt 50 ] && { cat "$T/sandbox.log"; fail "chatmaid-sandbox did not start"; }
  sleep 0.1
done
URL=$(sed -n 's/.*listening on \(http:[^ ]*\).*/\1/p' "$T/sandbox.log")
out=$(cd / && CHATMAID_BASE_URL=$URL CHATMAID_API_KEY=sk_test_sandbox_0000000000000001 \
  "$T/bin/chatmaid" phones) || fail "chatmaid phones: $out"
echo "$out" | grep -q "+" || fail "chatmaid phones listed no phone: $out"
echo "   chatmaid phones (installed command) against chatmaid-sandbox at $URL"
echo "check-rocks: the four rocks install and run on their own (Lua $V, $RV)"
