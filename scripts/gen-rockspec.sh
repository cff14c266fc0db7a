#!/bin/sh
# Regenerates rockspec/chatmaid-scm-1.rockspec from the tree, so every Lua module and C
# source is listed (LuaRocks installs only what the rockspec names).
cd "$(dirname "$0")/.."
{
cat <<'HEAD'
rockspec_format = "3.0"
package = "chatmaid"
version = "scm-1"
source = { url = "git+https://github.com/lua-chatmaid/lua-chatmaid.git" }
description = {
  summary = "Chatmaid WhatsApp API client: a libcurl C core with an idiomatic Lua layer",
  detailed = [[
Send and track WhatsApp messages through the Chatmaid API: kept-alive libcurl transport,
structured errors, safe retries with idempotency keys, pagination, polling, batch sends,
webhook verification in C (OpenSSL HMAC-SHA256), a local sandbox and a CLI.]],
  license = "MIT",
  labels = { "whatsapp", "http", "curl", "api", "openresty" },
}
-- lua-cjson: the library itself. argparse: the `chatmaid` command and luasocket: the sandbox
-- (`chatmaid-sandbox`, `chatmaid sandbox`, chatmaid.sandbox.start), both commands this rock
-- installs, so they are dependencies too rather than a note: `luarocks install chatmaid`
-- gives commands that run. LuaRocks has no optional dependencies; a library-only user who
-- does not want them can pass --deps-mode none and install lua-cjson alone.
-- Where the system provides them (Debian's lua-cjson, lua-argparse, lua-socket, invisible to
-- LuaRocks), install offline with: luarocks make --deps-mode none <this rockspec>.
dependencies = { "lua >= 5.1, < 5.5", "lua-cjson >= 2.1", "argparse >= 0.6", "luasocket >= 3.0" }
external_dependencies = {
  -- Debian keeps curl.h in a multiarch include dir that LuaRocks does not search, while
  -- the compiler does: so look for the libraries.
  CURL = { library = "curl" },
  OPENSSL = { library = "crypto" },
  -- chatmaid.redis outside nginx (Debian: libhiredis-dev)
  HIREDIS = { library = "hiredis" },
}
test = { type = "busted" }
build = {
  type = "builtin",
  modules = {
    ["chatmaid.core"] = {
      sources = {
HEAD
for f in csrc/*.c; do case $f in csrc/redis*) ;; *) echo "        \"$f\",";; esac; done
cat <<'MID'
      },
      libraries = { "curl", "crypto" },
      incdirs = { "csrc", "$(CURL_INCDIR)", "$(OPENSSL_INCDIR)" },
      libdirs = { "$(CURL_LIBDIR)", "$(OPENSSL_LIBDIR)" },
      defines = { "_POSIX_C_SOURCE=200809L" },
    },
    ["chatmaid.redis.core"] = {
      sources = {
MID
for f in csrc/redis*.c; do echo "        \"$f\","; done
cat <<'MID'
      },
      libraries = { "hiredis" },
      incdirs = { "csrc", "$(HIREDIS_INCDIR)" },
      libdirs = { "$(HIREDIS_LIBDIR)" },
      defines = { "_POSIX_C_SOURCE=200809L" },
    },
MID
find lua -name '*.lua' | sort | while read -r f; do
  m=$(echo "$f" | sed 's|^lua/||; s|\.lua$||; s|/init$||; s|/|.|g')
  echo "    [\"$m\"] = \"$f\","
done
echo "  },"
echo "  install = { bin = {"
for b in bin/*; do echo "    [\"$(basename "$b")\"] = \"$b\","; done
echo "  } },"
echo "}"
} > rockspec/chatmaid-scm-1.rockspec
