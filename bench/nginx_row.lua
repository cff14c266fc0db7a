-- SPDX-License-Identifier: MIT
-- The nginx row of `make bench` (issue 24): one front nginx worker whose handler sends one
-- message per incoming request, against a stub API answering a send in 100 ms without
-- blocking; wrk at 16, 64, 256 and 1024 connections; the plain cosocket baseline in the same
-- interleaved rounds. Reports req/s, p99, errors, worker CPU per send and worker RSS growth
-- over 100,000 sends. Called by bench/run.sh; alone (from the repo root, after
-- `make LUA=luajit`):
--   lua5.4 bench/nginx_row.lua full|smoke [seconds=10] [rounds=5] [write=1]
-- Five rounds by default: CPU per send at 16 and 64 connections varies by ±20% from one
-- 10 s run to the next on a shared machine, and the median of five is steadier than of three.
-- Environment: BENCH_NGINX_SECONDS, BENCH_NGINX_ROUNDS, BENCH_NGINX_SENDS (RSS phase).
local socket = require "socket"

local mode = arg[1] or "full"
local opt = {}
for i = 2, #arg do
  local k, v = arg[i]:match("^([%w_]+)=(.*)$")
  if k then opt[k] = v end
end
local smoke = mode == "smoke"
local SECONDS = tonumber(opt.seconds or os.getenv("BENCH_NGINX_SECONDS") or (smoke and 1 or 10))
local ROUNDS = tonumber(opt.rounds or os.getenv("BENCH_NGINX_ROUNDS") or (smoke and 1 or 5))
local SENDS = tonumber(os.getenv("BENCH_NGINX_SENDS") or (smoke and 2000 or 100000))
local CONNS = smoke and { 16, 256 } or { 16, 64, 256, 1024 }
if opt.conns then
  CONNS = {}
  for c in opt.conns:gmatch("%d+") do CONNS[#CONNS + 1] = tonumber(c) end
end
-- which handlers race: base and sdk (the row), plus tr (the transport alone) when profiling
local WHICH = {}
for w in (opt.which or "base,sdk"):gmatch("%a+") do WHICH[#WHICH + 1] = w end
local WRITE = opt.write == "1" or (mode == "full" and opt.write ~= "0")

local function die(msg)
  io.stderr:write("bench (nginx row): ", msg, "\n")
  os.exit(1)
end

local function sh(cmd)
  local p = io.popen(cmd .. " 2>&1")
  local out = p:read("a")
  local ok = p:close()
  return out, ok
end

local function read(path)
  local f = io.open(path, "rb")
  if not f then return nil end
  local s = f:read("a")
  f:close()
  return s
end

local function write(path, s)
  local f = assert(io.open(path, "wb"))
  f:write(s)
  f:close()
end

local root = (sh("pwd")):gsub("%s+$", "")
if not read(root .. "/build/luajit/chatmaid/core.so") then
  die("build/luajit/chatmaid/core.so missing: run `make LUA=luajit` first")
end
local modules
for _, d in ipairs{ "/usr/lib/nginx/modules", "/usr/share/nginx/modules" } do
  if read(d .. "/ngx_http_lua_module.so") then modules = d break end
end
if not modules then die("no ngx_http_lua_module.so (apt-get install libnginx-mod-http-lua)") end
local nginx = (sh("command -v nginx || echo /usr/sbin/nginx")):gsub("%s+$", "")
if not (sh("command -v wrk")):find("wrk") then die("no wrk (apt-get install wrk)") end

local function free_port()
  local s = assert(socket.bind("127.0.0.1", 0))
  local _, p = s:getsockname()
  s:close()
  return tonumber(p)
end

local tmp = (sh("mktemp -d /tmp/chatmaid-bench-nginx.XXXXXX")):gsub("%s+$", "")
os.execute("chmod 755 " .. tmp)
local stub_port, front_port = free_port(), free_port()
local send_json = read(root .. "/bench/data/send.json"):gsub("\n+$", "")
local vars = { TMP = tmp, MODULES = modules, ROOT = root, STUB_PORT = stub_port,
               FRONT_PORT = front_port, SEND_JSON = send_json,
               USER = (sh("id -u")):match("^0") and "user root;" or "" }
local function render(name)
  local text = read(root .. "/bench/" .. name .. ".conf.in")
  text = text:gsub("@([%w_]+)@", function(k) return tostring(vars[k]) end)
  write(tmp .. "/" .. name .. ".conf", text)
end
render("nginx_stub")
render("nginx_front")

local started = {}
local function stop_all()
  if not started then return end
  for _, pidfile in ipairs(started) do
    local pid = tonumber((read(pidfile) or ""):match("%d+"))
    if pid then os.execute("kill -QUIT " .. pid .. " 2>/dev/null") end
  end
  started = nil
  socket.sleep(0.3)
  os.execute("rm -rf " .. tmp)
end
-- A Lua error anywhere below ends the interpreter with lua_close, which collects this guard:
-- the two nginx daemons never outlive the bench (5.1/LuaJIT: a userdata, as tables there
-- have no __gc).
local guard = newproxy and newproxy(true) or setmetatable({}, { __gc = stop_all })
if newproxy then getmetatable(guard).__gc = stop_all end

local function start(name, env)
  local out, ok = sh((env or "") .. " " .. nginx .. " -p " .. tmp .. "/ -c " .. tmp .. "/"
                     .. name .. ".conf -e " .. tmp .. "/" .. name .. "-error.log")
  if not ok then stop_all() die("nginx " .. name .. " failed: " .. out) end
  started[#started + 1] = tmp .. "/" .. (name == "nginx_stub" and "stub" or "front") .. ".pid"
end
start("nginx_stub")
start("nginx_front", "BENCH_STUB=http://127.0.0.1:" .. stub_port)
socket.sleep(0.3)

local function worker_pid()
  local master = (read(tmp .. "/front.pid") or ""):match("%d+")
  local pid = master and (sh("ps -o pid= --ppid " .. master)):match("%d+")
  if not pid then stop_all() die("no front worker") end
  return pid
end
local WORKER = worker_pid()
local TICK = tonumber((sh("getconf CLK_TCK")):match("%d+")) or 100

-- The worker's CPU time in seconds: /proc/<pid>/schedstat (nanoseconds; /proc/<pid>/stat
-- counts 10 ms ticks, too coarse for a few hundred sends).
local function cpu_seconds()
  local ns = (read("/proc/" .. WORKER .. "/schedstat") or ""):match("^(%d+)")
  if ns then return tonumber(ns) / 1e9 end
  local stat = read("/proc/" .. WORKER .. "/stat") or ""
  local fields = {}
  for f in stat:gsub("^.-%) ", ""):gmatch("%S+") do fields[#fields + 1] = f end
  -- after "pid (comm) ": state is field 1, utime 12, stime 13
  return (tonumber(fields[12]) + tonumber(fields[13])) / TICK
end

local function rss_kib()
  return tonumber((read("/proc/" .. WORKER .. "/status") or ""):match("VmRSS:%s*(%d+)"))
end

local function ms(v, unit)
  v = tonumber(v)
  if unit == "us" then return v / 1000 elseif unit == "s" then return v * 1000 end
  return v
end

-- wrk against /path -> { rps, p99 (ms), errors, requests, cpu (s per send) }
local function wrk(path, conns, seconds)
  local c0 = cpu_seconds()
  local cmd = ("wrk -t1 -c%d -d%ds --timeout 10s --latency http://127.0.0.1:%d%s")
              :format(conns, seconds, front_port, path)
  local out = sh(cmd)
  local c1 = cpu_seconds()
  local r = {}
  r.requests = tonumber(out:match("(%d+) requests in"))
  r.rps = tonumber(out:match("Requests/sec:%s*([%d%.]+)"))
  local v, unit = out:match("\n%s*99%%%s*([%d%.]+)(%a+)")
  r.p99 = v and ms(v, unit)
  if not (r.requests and r.rps and r.p99) then stop_all() die("wrk output: " .. out) end
  r.errors = tonumber(out:match("Non%-2xx or 3xx responses:%s*(%d+)") or 0)
  local a, b, c, d = out:match("Socket errors: connect (%d+), read (%d+), write (%d+), "
                               .. "timeout (%d+)")
  if a then r.errors = r.errors + a + b + c + d end
  r.cpu = (c1 - c0) / math.max(r.requests, 1)
  return r
end

local function median(xs)
  local t = {}
  for i, x in ipairs(xs) do t[i] = x end
  table.sort(t)
  local n = #t
  if n % 2 == 1 then return t[(n + 1) / 2] end
  return (t[n / 2] + t[n / 2 + 1]) / 2
end

if opt.probe then   -- one request to each handler, shown, and stop
  for _, path in ipairs{ "/base", "/sdk" } do
    io.write(path, ": ", (sh("curl -sS -i http://127.0.0.1:" .. front_port .. path)), "\n")
  end
  io.write((read(tmp .. "/front-error.log") or ""):sub(-2000), "\n")
  stop_all()
  os.exit(0)
end

local load0 = (read("/proc/loadavg") or ""):match("^(%S+ %S+ %S+)")
local t_start = socket.gettime()
wrk("/base", 64, 1)   -- warm both: pools filled, code compiled
wrk("/sdk", 64, 1)

local results = {}
for _, c in ipairs(CONNS) do
  local res = { base = {}, sdk = {}, tr = {} }
  results[#results + 1] = { conns = c, res = res }
  for r = 1, ROUNDS do
    local order = {}
    for i, w in ipairs(WHICH) do order[r % 2 == 1 and i or #WHICH + 1 - i] = w end
    for _, which in ipairs(order) do
      local x = wrk("/" .. which, c, SECONDS)
      res[which][#res[which] + 1] = x
      io.stderr:write(("  %4d conns, round %d, %-4s: %8.0f req/s, p99 %7.1f ms, %d errors,"
        .. " %.0f us CPU/send\n"):format(c, r, which, x.rps, x.p99, x.errors, x.cpu * 1e6))
    end
  end
end

-- RSS over SENDS sends through the client (after the rounds above warmed it), in runs of
-- at most 10 s until that many were answered.
local rss0 = rss_kib()
local t_rss = socket.gettime()
local x = { requests = 0, errors = 0 }
while x.requests < SENDS do
  local y = wrk("/sdk", 256, smoke and 1 or 10)
  x.requests, x.errors = x.requests + y.requests, x.errors + y.errors
end
local rss1 = rss_kib()
t_rss = socket.gettime() - t_rss
local load1 = (read("/proc/loadavg") or ""):match("^(%S+ %S+ %S+)")
local elapsed = socket.gettime() - t_start
stop_all()
guard = nil   -- luacheck: ignore (kept on the stack until here: only lua_close collects it)

-- ---- report ----
local lines = {
  "## nginx: a send per incoming request (issue 24)",
  "",
  ("Written by `make bench` (bench/nginx_row.lua), %s. One front nginx worker (no "
   .. "`thread_pool`), the default client made once per worker and reused "
   .. "(bench/nginx_handlers.lua); a stub API answering each send in 100 ms without "
   .. "blocking (another nginx worker); `wrk -t1` for %d s per run, %d interleaved rounds "
   .. "(baseline first in odd rounds); medians. Baseline: the same POST over `ngx.socket.tcp` "
   .. "with a keepalive pool of the same size (256) and cjson."):format(
     os.date("!%Y-%m-%d %H:%M UTC"), SECONDS, ROUNDS),
  ("Machine: %s CPUs shared with other work; load average %s at the start, %s at the end. "
   .. "wrk, both nginx and the front share the CPUs, so absolute numbers are low; the "
   .. "ratios come from the same rounds."):format((sh("nproc")):gsub("%s+$", ""), load0, load1),
  "",
  "| connections | cosocket baseline | lua-chatmaid, default client | req/s ratio | p99 ratio "
  .. "| errors (sdk / base) | worker CPU per send (sdk / base) | CPU ratio |",
  "|---|---|---|---|---|---|---|---|",
}
local pass = true
for _, e in ipairs(results) do
  local b, s = e.res.base, e.res.sdk
  local function m(list, k)
    local xs = {}
    for i, v in ipairs(list) do xs[i] = v[k] end
    return median(xs)
  end
  local function sum(list, k)
    local t = 0
    for _, v in ipairs(list) do t = t + v[k] end
    return t
  end
  local brps, srps, bp99, sp99 = m(b, "rps"), m(s, "rps"), m(b, "p99"), m(s, "p99")
  local bcpu, scpu = m(b, "cpu"), m(s, "cpu")
  local serr, berr = sum(s, "errors"), sum(b, "errors")
  local ok = srps >= 0.9 * brps and serr == 0 and sp99 <= 1.2 * bp99 and scpu <= 1.3 * bcpu
  pass = pass and ok
  lines[#lines + 1] = ("| %d | %.0f req/s, p99 %.0f ms | %.0f req/s, p99 %.0f ms | %.2f | %.2f "
    .. "| %d / %d | %.0f / %.0f µs | %.2f %s |"):format(e.conns, brps, bp99, srps, sp99,
    srps / brps, sp99 / bp99, serr, berr, scpu * 1e6, bcpu * 1e6, scpu / bcpu,
    ok and "" or "(MISS)")
end
local growth = rss1 - rss0
lines[#lines + 1] = ""
lines[#lines + 1] = ("Worker RSS over %d sends at 256 connections (%.0f s, %d errors): %d KiB "
  .. "-> %d KiB, growth %d KiB (target < 5120 KiB): %s."):format(x.requests, t_rss, x.errors,
  rss0, rss1, growth, growth < 5120 and "PASS" or "MISS")
lines[#lines + 1] = ""
lines[#lines + 1] = ("Targets per row: req/s >= 0.9x the baseline, no errors, p99 <= 1.2x, "
  .. "CPU per send <= 1.3x. Bench time %.0f s."):format(elapsed)
local text = table.concat(lines, "\n") .. "\n"
io.write("\n", text)

if WRITE and not smoke then
  local path = root .. "/bench/RESULTS.md"
  local cur = read(path) or ""
  local at = cur:find("\n## nginx: a send per incoming request", 1, true)
  if at then cur = cur:sub(1, at) end
  write(path, cur:gsub("\n*$", "\n\n") .. text)
  io.write("wrote the nginx section of bench/RESULTS.md\n")
end
if smoke and not pass then
  -- a smoke run only checks that both handlers work: no errors at all
  for _, e in ipairs(results) do
    for _, which in ipairs{ "base", "sdk" } do
      for _, r in ipairs(e.res[which]) do
        if r.errors > 0 then die(which .. " had errors") end
      end
    end
  end
end
