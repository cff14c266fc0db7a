-- SPDX-License-Identifier: MIT
-- The bench driver, called by bench/run.sh (which owns nginx and the temp prefix):
--   lua5.4 bench/driver.lua render IN OUT KEY=VALUE...   (KEY=@file: the file, on one line)
--   lua5.4 bench/driver.lua run full|smoke key=value...   (lua=... runs the SDK side)
-- `run` times each SDK row and its C baseline in alternate fresh processes (A B A B ...),
-- prints the table, memory, callgrind and require figures, and (full) writes RESULTS.md.
local socket = require "socket"

local function die(msg)
  io.stderr:write("bench: ", msg, "\n")
  os.exit(1)
end

local function read_file(path)
  local f, err = io.open(path, "rb")
  if not f then die(err) end
  local s = f:read("a")
  f:close()
  return s
end

local function write_file(path, s)
  local f, err = io.open(path, "wb")
  if not f then die(err) end
  f:write(s)
  f:close()
end

local function parse_kv(from)
  local t = {}
  for i = from, #arg do
    local k, v = arg[i]:match("^([%w_]+)=(.*)$")
    if not k then die("bad argument " .. arg[i]) end
    t[k] = v
  end
  return t
end

-- ---- render ----

local function render()
  local text = read_file(arg[2])
  local vars = parse_kv(4)
  for k, v in pairs(vars) do
    if v:sub(1, 1) == "@" then
      v = read_file(v:sub(2)):gsub("\n+$", "")
      -- Inlined into an nginx single-quoted string, where ' ends it and $ is a variable.
      if v:find("[\n'$\\]") then die(k .. ": file has a newline, quote, $ or backslash") end
      vars[k] = v
    end
  end
  text = text:gsub("@([%w_]+)@", function(k)
    return vars[k] or die("render: no value for @" .. k .. "@")
  end)
  write_file(arg[3], text)
end

-- ---- processes ----

local function quote(s)
  return "'" .. tostring(s):gsub("'", "'\\''") .. "'"
end

local function command(argv)
  local q = {}
  for i, a in ipairs(argv) do q[i] = quote(a) end
  return table.concat(q, " ")
end

-- Runs argv; returns its output (stdout and stderr). A non-zero exit fails the bench.
local function exec(argv)
  local cmd = command(argv)
  local p = io.popen(cmd .. " 2>&1")
  local out = p:read("a")
  local ok, how, code = p:close()
  if not ok then
    die(string.format("FAILED (%s %s): %s\n%s", how, tostring(code), cmd, out))
  end
  return out
end

-- One timed run -> wall and CPU microseconds per op, or nil, why when the row is not
-- implemented yet.
local function measure(argv)
  local out = exec(argv)
  if out:find("^NA ") or out:find("\nNA ") then return nil, out:match("NA ([^\n]*)") end
  local v = tonumber(out:match("RESULT ([%d%.]+)"))
  local cpu = tonumber(out:match("CPU ([%d%.]+)"))
  if not (v and cpu) then die("no RESULT/CPU lines from " .. command(argv) .. ":\n" .. out) end
  local connects = tonumber(out:match("CONNECTS (%d+)") or "0")
  if connects > 0 then
    io.stderr:write("bench: warning: ", connects, " reconnects inside a timed loop: ",
                    command(argv), "\n")
  end
  return v, cpu
end

local function wait_port(port)
  for _ = 1, 100 do
    local c = socket.connect("127.0.0.1", port)
    if c then c:close() return end
    socket.sleep(0.05)
  end
  die("nginx did not start listening on port " .. port)
end

-- ---- statistics ----

local function sorted(xs)
  local s = {}
  for i, v in ipairs(xs) do s[i] = v end
  table.sort(s)
  return s
end

local function median(xs)
  local s = sorted(xs)
  local m = #s // 2
  if #s % 2 == 1 then return s[m + 1] end
  return (s[m] + s[m + 1]) / 2
end

local function fmt_us(v)
  if v >= 100 then return string.format("%.0f", v) end
  if v >= 10 then return string.format("%.1f", v) end
  return string.format("%.2f", v)
end

local function span(xs)
  local s = sorted(xs)
  return string.format("%s (%s-%s)", fmt_us(median(xs)), fmt_us(s[1]), fmt_us(s[#s]))
end

-- ---- the run ----

local function run()
  local mode = arg[2]
  local o = parse_kv(3)
  local smoke = mode == "smoke"
  local lua, bin = o.lua, o.bin
  local url = "http://127.0.0.1:" .. o.port
  local tls_url = "https://127.0.0.1:" .. o.tls_port
  wait_port(o.port)
  wait_port(o.tls_port)

  -- n: timed operations per process (about 0.2 s each in a full run); smoke: a handful.
  local R = smoke and 1 or tonumber(os.getenv("BENCH_ROUNDS") or "7")
  local function N(full, small) return tostring(smoke and small or full) end
  local W = smoke and "2" or "100"
  local hook = "bench/data/webhook.json"
  local function sdk(m, n, extra)
    local argv = { lua, "bench/sdk.lua", m, "n=" .. n, "warmup=" .. W, "build=" .. o.build }
    for _, a in ipairs(extra or {}) do argv[#argv + 1] = a end
    return argv
  end
  local function http(m, n, extra)
    local argv = { bin .. "/baseline_http", m, url, n, "--warmup", W }
    for _, a in ipairs(extra or {}) do argv[#argv + 1] = a end
    return argv
  end

  -- Each row: the SDK run, its baselines (the first, or the fastest with pick = "fastest",
  -- is the one the target compares with), the target ratio. info rows have no target.
  local rows = {
    { name = "client:send (sequential)",
      sdk = sdk("send", N(4000, 20), { "url=" .. url }),
      base = { { "raw libcurl + cjson", http("send", N(4000, 20)) } }, target = 1.10 },
    { name = "client:message(id)",
      sdk = sdk("get", N(4000, 20), { "url=" .. url }),
      base = { { "raw libcurl + cjson", http("get", N(4000, 20)) } }, target = 1.10 },
    { name = "client:list_messages{limit=100}",
      sdk = sdk("list", N(800, 5), { "url=" .. url }),
      base = { { "raw libcurl + cjson", http("list", N(800, 5)) } }, target = 1.10 },
    { name = "client:send_batch, 16 in flight",
      sdk = sdk("batch", N(8000, 64), { "url=" .. url, "inflight=16" }),
      base = { { "raw curl multi + cjson", { bin .. "/baseline_multi", url, N(8000, 64),
                 "--inflight", "16", "--warmup", W } },
               { "raw curl multi, no JSON", { bin .. "/baseline_multi", url, N(8000, 64),
                 "--inflight", "16", "--warmup", W, "--no-json" } } },
      target = 1.10 },
    { name = "webhook.verify, 1 KiB body",
      sdk = sdk("verify", N(300000, 1000), { "body=" .. hook }),
      base = { { "OpenSSL, keyed state reused", { bin .. "/baseline_hmac", "dup",
                 N(300000, 1000), hook } },
               { "OpenSSL, keyed state re-init", { bin .. "/baseline_hmac", "reinit",
                 N(300000, 1000), hook } },
               { "OpenSSL HMAC(), fresh key", { bin .. "/baseline_hmac", "oneshot",
                 N(300000, 1000), hook } } },
      pick = "fastest2", target = 1.2 },
    { name = "client:send over TLS (SDK default)",
      sdk = sdk("tls", N(3000, 20), { "url=" .. tls_url, "ca=" .. o.ca }),
      base = { { "raw C + cjson, TLS HTTP/2", http("send", N(3000, 20), { "--ca", o.ca,
                 "--http", "2" }) },
               { "raw C + cjson, TLS HTTP/1.1", http("send", N(3000, 20), { "--ca", o.ca,
                 "--http", "1.1" }) } },
      pick = "fastest", target = 1.10 },
    { name = "client:send over TLS, http_version=1.1",
      sdk = sdk("tls", N(3000, 20), { "url=" .. tls_url, "ca=" .. o.ca, "http=1.1" }),
      base = {}, info = true },
    { name = "client:send over TLS, http_version=2",
      sdk = sdk("tls", N(3000, 20), { "url=" .. tls_url, "ca=" .. o.ca, "http=2" }),
      base = {}, info = true },
  }

  for _, row in ipairs(rows) do
    row.sdk_us, row.sdk_cpu = {}, {}
    for _, b in ipairs(row.base) do b.us, b.cpu = {}, {} end
  end
  local t_start = socket.gettime()
  for r = 1, R do
    io.write(string.format("round %d/%d\n", r, R))
    io.flush()
    for _, row in ipairs(rows) do
      if not row.na then
        local v, cpu = measure(row.sdk)
        if v then row.sdk_us[r], row.sdk_cpu[r] = v, cpu else row.na = cpu end
      end
      for _, b in ipairs(row.base) do b.us[r], b.cpu[r] = measure(b[2]) end
    end
  end

  -- The baseline a row is judged against. "fastest2": the faster of the first two.
  local function chosen(row)
    if #row.base == 0 then return nil end
    local best = row.base[1]
    local upto = row.pick == "fastest" and #row.base or row.pick == "fastest2" and 2 or 1
    for i = 2, upto do
      if median(row.base[i].us) < median(best.us) then best = row.base[i] end
    end
    return best
  end

  local lines = {}
  local function out(s)
    lines[#lines + 1] = s
    io.write(s, "\n")
  end
  local misses = {}
  out("")
  out("| row | SDK µs/op median (min-max) | baseline | baseline µs/op median (min-max) "
      .. "| paired ratio | target | | client CPU ratio |")
  out("|---|---|---|---|---|---|---|---|")
  for _, row in ipairs(rows) do
    local b = chosen(row)
    local sdk_cell, ratio_cell, verdict = "n/a (not implemented)", "-", "n/a"
    local cpu_cell = "-"
    if not row.na then
      sdk_cell = span(row.sdk_us)
      if b then
        local ratios, cpu_ratios = {}, {}
        for r = 1, R do
          ratios[r] = row.sdk_us[r] / b.us[r]
          cpu_ratios[r] = row.sdk_cpu[r] / b.cpu[r]
        end
        cpu_cell = string.format("%.2fx", median(cpu_ratios))
        local ratio = median(ratios)
        ratio_cell = string.format("%.2fx", ratio)
        verdict = ratio <= row.target and "PASS" or "MISS"
        if verdict == "MISS" then misses[#misses + 1] = row.name end
        if smoke then verdict = "ran" end   -- a handful of operations says nothing
      else
        verdict = "info"
      end
    end
    out(string.format("| %s | %s | %s | %s | %s | %s | %s | %s |", row.name, sdk_cell,
                      b and b[1] or "-", b and span(b.us) or "-", ratio_cell,
                      row.target and string.format("<= %.2fx", row.target) or "-", verdict,
                      cpu_cell))
  end
  out("")
  out("Paired ratio: median over rounds of SDK / baseline wall time from the same round "
      .. "(the target). Client CPU ratio: the same with each process's own CPU time "
      .. "(user + system, libcurl included), which waiting on nginx and other load do not "
      .. "inflate.")
  out("")
  out("Other baselines measured in the same rounds:")
  out("")
  for _, row in ipairs(rows) do
    local b0 = chosen(row)
    for _, b in ipairs(row.base) do
      if b ~= b0 then
        out(string.format("- %s: %s µs/op (%s)", b[1], span(b.us), row.name))
      end
    end
  end
  out(string.format("\nTimed rounds: %d, %.0f s.", R, socket.gettime() - t_start))

  -- ---- memory ----
  out("")
  out("Memory (VmRSS of the Lua process, after full collections):")
  out("")
  local n1, n2 = smoke and 100 or 10000, smoke and 300 or 100000
  local mem = exec{ lua, "bench/sdk.lua", "mem", "url=" .. url, "build=" .. o.build,
                    "n1=" .. n1, "n2=" .. n2 }
  if mem:find("^NA ") then
    out("- sends through one client: n/a (not implemented)")
  else
    local a, b = tonumber(mem:match("RSS_A (%d+)")), tonumber(mem:match("RSS_B (%d+)"))
    if not (a and b) then die("mem: unexpected output:\n" .. mem) end
    local growth = b - a
    local verdict = growth < 1024 and "PASS" or "MISS"
    if verdict == "MISS" then misses[#misses + 1] = "memory growth" end
    if smoke then verdict = "ran" end
    out(string.format("- after %d sends: %d KiB; after %d sends: %d KiB; growth %d KiB "
                      .. "(target < 1024 KiB): %s", n1, a, n2, b, growth, verdict))
  end
  local nc = smoke and 100 or 10000
  local cl = exec{ lua, "bench/sdk.lua", "clients", "url=" .. url, "build=" .. o.build,
                   "n=" .. nc }
  if cl:find("^NA ") then
    out("- clients: n/a (not implemented)")
  else
    local a, b = tonumber(cl:match("RSS_BEFORE (%d+)")), tonumber(cl:match("RSS_AFTER (%d+)"))
    if not (a and b) then die("clients: unexpected output:\n" .. cl) end
    out(string.format("- one client: %d KiB; after creating and collecting %d clients: "
                      .. "%d KiB (+%d KiB)", a, nc, b, b - a))
  end

  -- ---- instructions per operation (callgrind: free of the timing noise) ----
  if not smoke then
    out("")
    out("Instructions per operation (valgrind --tool=callgrind; Ir of a long run minus Ir of a "
        .. "short one, divided by the difference in operations, so start-up cancels out):")
    out("")
    out("| operation | SDK Ir/op | baseline | baseline Ir/op | ratio |")
    out("|---|---|---|---|---|")
    local function ir(argv)
      local file = o.tmp .. "/callgrind.out"
      local vg = { "valgrind", "--tool=callgrind", "--callgrind-out-file=" .. file }
      for _, a in ipairs(argv) do vg[#vg + 1] = a end
      local res = exec(vg)
      if res:find("\nNA ") or res:find("^NA ") then return nil end
      local text = read_file(file)
      os.remove(file)
      local total = tonumber(text:match("\nsummary:%s*(%d+)") or text:match("\ntotals:%s*(%d+)"))
      if not total then die("no Ir total in callgrind output") end
      return total
    end
    local function per_op(make, small, big)
      local a = ir(make(small))
      if not a then return nil end
      return (ir(make(big)) - a) / (big - small)
    end
    local function sdk_cg(m, extra)
      return function(k)
        local argv = { lua, "bench/sdk.lua", m, "n=" .. k, "warmup=0", "build=" .. o.build }
        for _, a in ipairs(extra) do argv[#argv + 1] = a end
        return argv
      end
    end
    local cg_rows = {
      { "client:send", sdk_cg("send", { "url=" .. url }), "raw libcurl + cjson",
        function(k) return { bin .. "/baseline_http", "send", url, k, "--warmup", "0" } end,
        200, 1200 },
      { "client:list_messages{limit=100}", sdk_cg("list", { "url=" .. url }),
        "raw libcurl + cjson",
        function(k) return { bin .. "/baseline_http", "list", url, k, "--warmup", "0" } end,
        20, 120 },
      { "client:send_batch, 16 in flight", sdk_cg("batch", { "url=" .. url, "inflight=16" }),
        "raw curl multi + cjson",
        function(k) return { bin .. "/baseline_multi", url, k, "--warmup", "0" } end,
        400, 2400 },
      { "webhook.verify, 1 KiB", sdk_cg("verify", { "body=" .. hook }),
        "OpenSSL, keyed state reused",
        function(k) return { bin .. "/baseline_hmac", "dup", k, hook, "--warmup", "0" } end,
        2000, 12000 },
      { "webhook.verify, 1 KiB", sdk_cg("verify", { "body=" .. hook }),
        "OpenSSL, keyed state re-init",
        function(k) return { bin .. "/baseline_hmac", "reinit", k, hook, "--warmup", "0" } end,
        2000, 12000 },
    }
    local sdk_cache = {}
    for _, c in ipairs(cg_rows) do
      local label, sdk_make, base_label, base_make, small, big = table.unpack(c)
      local s = sdk_cache[label]
      if s == nil then
        s = per_op(function(k) return sdk_make(tostring(k)) end, small, big) or false
        sdk_cache[label] = s
      end
      local b = per_op(function(k) return base_make(tostring(k)) end, small, big)
      out(string.format("| %s | %s | %s | %.0f | %s |", label,
                        s and string.format("%.0f", s) or "n/a (not implemented)", base_label, b,
                        s and string.format("%.2fx", s / b) or "-"))
    end
  end

  -- ---- require time ----
  out("")
  local runs = smoke and 2 or 20
  local bare, req, cstart = {}, {}, {}
  local setup = string.format("package.path = 'lua/?.lua;lua/?/init.lua;' .. package.path "
    .. "package.cpath = %q .. '/?.so;' .. package.cpath", o.build)
  local have = package.searchpath("chatmaid", "lua/?.lua;lua/?/init.lua")
  for i = 1, runs do
    local t0 = socket.gettime()
    exec{ lua, "-e", "" }
    bare[i] = socket.gettime() - t0
    -- A C program linked with libcurl that only starts up: the dynamic loader and
    -- curl_global_init, which any libcurl binding pays.
    t0 = socket.gettime()
    exec{ bin .. "/baseline_http", "get", url, "0", "--warmup", "0" }
    cstart[i] = socket.gettime() - t0
    if have then
      t0 = socket.gettime()
      exec{ lua, "-e", setup .. " require 'chatmaid'" }
      req[i] = socket.gettime() - t0
    end
  end
  if have then
    out(string.format("`require \"chatmaid\"`: %.2f ms (median of %d fresh processes, %.2f ms, "
                      .. "minus a bare `%s -e ''`, %.2f ms)", (median(req) - median(bare)) * 1e3,
                      runs, median(req) * 1e3, lua, median(bare) * 1e3))
  else
    out("`require \"chatmaid\"`: n/a (not implemented)")
  end
  out(string.format("For scale: the C baseline (libcurl, OpenSSL and a Lua state with cjson) "
                    .. "starts and exits in %.2f ms.", median(cstart) * 1e3))

  if smoke then
    io.write("\nbench-smoke: every row ran (smoke timings mean nothing; run `make bench`)\n")
    return
  end
  out("")
  if #misses > 0 then
    out("Targets missed: " .. table.concat(misses, "; ") .. ".")
  else
    out("Targets missed: none.")
  end

  -- ---- RESULTS.md ----
  local function sh(cmd)
    local p = io.popen(cmd .. " 2>/dev/null")
    local s = p:read("a") or ""
    p:close()
    return (s:gsub("%s+$", ""))
  end
  local info = exec{ lua, "bench/sdk.lua", "info", "build=" .. o.build }
  local cpu = read_file("/proc/cpuinfo"):match("model name%s*:%s*([^\n]+)") or "unknown"
  local head = {
    "# Bench results",
    "",
    "Written by `make bench` (bench/driver.lua); see docs/bench.md for what each row means.",
    "",
    "- date: " .. os.date("!%Y-%m-%d %H:%M UTC"),
    "- commit: " .. sh("git rev-parse --short HEAD")
      .. (sh("git status --porcelain -- lua csrc") ~= "" and " plus uncommitted changes in "
          .. "lua/ or csrc/" or ""),
    "- machine: " .. sh("nproc") .. " CPUs, " .. cpu .. ", Linux " .. sh("uname -r"),
    "- load average at the end: " .. sh("cut -d' ' -f1-3 /proc/loadavg"),
    "- " .. (info:match("CURL ([^\n]+)") or ("libcurl " .. sh("curl-config --version")))
      .. ", " .. sh("openssl version") .. ", " .. (info:match("LUA ([^\n]+)") or lua)
      .. ", lua-cjson (Debian), " .. sh("{ nginx -v || /usr/sbin/nginx -v; } 2>&1 | head -1"),
    "- server: nginx, 1 worker, on the same machine; one kept-alive connection per "
      .. "sequential client.",
  }
  -- a hand-written analysis kept next to the numbers (bench/batch-cost.md)
  local notes = io.open("bench/batch-cost.md", "rb")
  local extra = ""
  if notes then
    extra = "\n" .. notes:read("a")
    notes:close()
  end
  write_file("bench/RESULTS.md", table.concat(head, "\n") .. "\n" .. table.concat(lines, "\n")
             .. "\n" .. extra)
  io.write("\nwrote bench/RESULTS.md\n")
end

local cmd = arg[1]
if cmd == "render" then
  render()
elseif cmd == "run" then
  run()
else
  die("usage: driver.lua render IN OUT K=V... | run full|smoke k=v...")
end
