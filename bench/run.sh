#!/bin/sh
# SPDX-License-Identifier: MIT
# Runs the bench: checks the tools, starts a private nginx (plain HTTP and TLS, self-signed
# certificate made here) in a temp prefix, hands over to bench/driver.lua, and always stops
# nginx by its pid. Usage (from the repo root, normally via make): sh bench/run.sh full|smoke
# `sh bench/run.sh serve` only starts the server and prints its URLs, for profiling by hand.
set -eu

MODE=${1:-full}
LUA=${LUA:-lua5.4}      # runs the SDK side; the driver always runs on lua5.4
DRIVER=lua5.4
BUILD=${BUILD:-build}
BENCH_BIN=${BENCH_BIN:-$BUILD/bench}
case "$MODE" in full|smoke|serve) ;; *) echo "usage: bench/run.sh full|smoke|serve" >&2; exit 2 ;; esac

# --- tools: install what is missing as root, otherwise say how ---
NGINX=$(command -v nginx 2>/dev/null || echo /usr/sbin/nginx)
missing=""
[ -x "$NGINX" ] || missing="$missing nginx"
command -v openssl >/dev/null 2>&1 || missing="$missing openssl"
if [ "$MODE" = full ]; then
  command -v valgrind >/dev/null 2>&1 || missing="$missing valgrind"
fi
# the nginx row (bench/nginx_row.lua): the lua module and wrk
[ -f /usr/lib/nginx/modules/ngx_http_lua_module.so ] || missing="$missing libnginx-mod-http-lua"
command -v wrk >/dev/null 2>&1 || missing="$missing wrk"
command -v "$DRIVER" >/dev/null 2>&1 || missing="$missing lua5.4"
for l in "$DRIVER" "$LUA"; do
  "$l" -e 'require "socket"' >/dev/null 2>&1 || missing="$missing lua-socket"
  "$l" -e 'require "cjson"' >/dev/null 2>&1 || missing="$missing lua-cjson"
done
if [ -n "$missing" ]; then
  if [ "$(id -u)" = 0 ]; then
    echo "bench: installing:$missing"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq >/dev/null && apt-get install -y -qq $missing >/dev/null || {
      echo "bench: could not install:$missing" >&2; exit 1; }
    NGINX=$(command -v nginx 2>/dev/null || echo /usr/sbin/nginx)
  else
    echo "bench: missing packages. Install them with:" >&2
    echo "  sudo apt-get install -y$missing" >&2
    exit 1
  fi
fi

# --- private prefix; everything below is removed on exit ---
T=$(mktemp -d "${TMPDIR:-/tmp}/chatmaid-bench.XXXXXX")
NGINX_PID=""
cleanup() {
  if [ -n "$NGINX_PID" ]; then
    kill "$NGINX_PID" 2>/dev/null || true
    wait "$NGINX_PID" 2>/dev/null || true
  fi
  rm -rf "$T"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
# Workers run as nobody when started by root: they must be able to read the data files.
chmod 755 "$T"
mkdir "$T/data"
cp bench/data/*.json "$T/data/"
chmod 644 "$T"/data/*.json

# A fresh throwaway certificate per run (P-256: instant to generate); never committed.
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 2 \
  -keyout "$T/key.pem" -out "$T/cert.pem" -subj /CN=127.0.0.1 \
  -addext subjectAltName=IP:127.0.0.1 >/dev/null 2>&1 || {
  echo "bench: openssl req failed" >&2; exit 1; }

free_port() {
  "$DRIVER" -e 'local s = assert(require("socket").bind("127.0.0.1", 0))
    local _, p = s:getsockname() s:close() print(p)'
}
PORT=$(free_port)
TLS_PORT=$(free_port)
while [ "$TLS_PORT" = "$PORT" ]; do TLS_PORT=$(free_port); done

"$DRIVER" bench/driver.lua render bench/locations.conf.in "$T/locations.conf" \
  DATA="$T/data" SEND_JSON=@bench/data/send.json
"$DRIVER" bench/driver.lua render bench/nginx.conf.in "$T/nginx.conf" \
  TMP="$T" PORT="$PORT" TLS_PORT="$TLS_PORT"

"$NGINX" -p "$T/" -c "$T/nginx.conf" -e "$T/error.log" &
NGINX_PID=$!

if [ "$MODE" = serve ]; then
  echo "bench: serving http://127.0.0.1:$PORT and https://127.0.0.1:$TLS_PORT" \
    "(ca_file $T/cert.pem); Ctrl-C stops"
  wait "$NGINX_PID"
  exit 0
fi

status=0
"$DRIVER" bench/driver.lua run "$MODE" lua="$LUA" build="$BUILD" bin="$BENCH_BIN" \
  port="$PORT" tls_port="$TLS_PORT" ca="$T/cert.pem" tmp="$T" || status=$?
if [ "$status" != 0 ]; then
  echo "bench: FAILED (exit $status); nginx error log:" >&2
  tail -n 20 "$T/error.log" >&2 2>/dev/null || true
  exit "$status"
fi
# The nginx row: its own two nginx (front worker and 100 ms stub), after the rows above so
# it appends its section to the RESULTS.md they wrote (full).
"$DRIVER" bench/nginx_row.lua "$MODE" || status=$?
exit "$status"
