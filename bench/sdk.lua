-- SPDX-License-Identifier: MIT
-- The SDK side of the bench rows, run by bench/driver.lua in a fresh process per measurement:
--   lua5.4 bench/sdk.lua <mode> key=value...
-- Timed modes print "RESULT <microseconds per operation>"; a row whose API has not landed yet
-- prints "NA <why>" and exits 0. Any failing call raises: a broken row fails the bench.
-- Runs on every Lua the SDK supports (make bench LUA_VERSION=5.1, LUA=luajit).
local mode = arg[1]
local o = {}
for i = 2, #arg do
  local k, v = arg[i]:match("^([%w_]+)=(.*)$")
  if not k then error("bench/sdk.lua: bad argument " .. arg[i], 0) end
  o[k] = v
end
package.path = "lua/?.lua;lua/?/init.lua;" .. package.path
package.cpath = (o.build or "build") .. "/?.so;" .. package.cpath

local socket = require "socket"
local gettime = socket.gettime   -- wall clock: most of a request is waiting for nginx

local KEY = "sk_test_bench_000000000000000"
local FROM, TO, CONTENT = "507f1f77bcf86cd799439011", "+15557654321", "Hello from the bench"
local SECRET, T_NOW = "whsec_bench_0000000000000000000", 1770387513
local n = tonumber(o.n or "1000")
local warmup = tonumber(o.warmup or "100")

local function na(why)
  io.write("NA ", why, "\n")
  os.exit(0)
end

-- package.searchpath is 5.2+.
local function findable(name, path)
  local file = name:gsub("%.", "/")
  for template in path:gmatch("[^;]+") do
    local f = io.open((template:gsub("%?", file)), "rb")
    if f then
      f:close()
      return true
    end
  end
  return false
end

-- A module that is not there yet makes the row n/a; one that is there but broken raises.
local function need_module(name)
  if not findable(name, package.path) then na("module " .. name .. " not found") end
  return require(name)
end

local function fail(what, err)
  error("bench/sdk.lua " .. mode .. ": " .. what .. ": " .. tostring(err), 0)
end

local function new_client(url, extra)
  local chatmaid = need_module("chatmaid")
  local opts = { api_key = KEY, base_url = url, max_retries = 0 }
  for k, v in pairs(extra or {}) do opts[k] = v end
  local client, err = chatmaid.new(opts)
  if not client then fail("chatmaid.new", err) end
  return client
end

-- elapsed: wall seconds; cpu: os.clock() seconds (this process, libcurl included).
local function result(elapsed, cpu, count)
  io.write(string.format("RESULT %.3f\nCPU %.3f\n", elapsed * 1e6 / count, cpu * 1e6 / count))
end

local function rss_kb()
  local f = assert(io.open("/proc/self/status"))
  local s = f:read("*a")
  f:close()
  return tonumber(s:match("VmRSS:%s*(%d+)"))
end

local function collect()
  collectgarbage("collect")
  collectgarbage("collect")   -- the second pass frees what the first one's finalizers let go
end

-- Each op returns normally only on a correct answer; the first answer is checked in full.
local function send_op(client)
  local msg, err = client:send{ from = FROM, to = TO, content = CONTENT }
  if not msg then fail("client:send", err) end
  return msg
end

local function check_sent(msg)
  if msg.id ~= "msg_abc123def456" or msg.status ~= "sent" or msg.to ~= TO then
    fail("client:send", "unexpected message " .. tostring(msg.id))
  end
end

local function timed(op, check)
  check(op())
  for _ = 1, warmup do op() end
  local t0, c0 = gettime(), os.clock()
  for _ = 1, n do op() end
  result(gettime() - t0, os.clock() - c0, n)
end

local MODES = {}

function MODES.send()
  local client = new_client(o.url)
  timed(function() return send_op(client) end, check_sent)
end

-- Over TLS; http=1.1|2 picks the protocol, otherwise the SDK's default.
function MODES.tls()
  local client = new_client(o.url, { ca_file = o.ca, http_version = o.http })
  timed(function() return send_op(client) end, check_sent)
end

function MODES.get()
  local client = new_client(o.url)
  timed(function()
    local msg, err = client:message("msg_x")
    if not msg then fail("client:message", err) end
    return msg
  end, function(msg)
    if msg.id ~= "msg_x" or msg.status ~= "sent" then fail("client:message", msg.id) end
  end)
end

function MODES.list()
  local client = new_client(o.url)
  local params = { limit = 100 }
  timed(function()
    local page, err = client:list_messages(params)
    if not page then fail("client:list_messages", err) end
    return page
  end, function(page)
    if type(page.data) ~= "table" or #page.data ~= 100 or page.pagination.limit ~= 100 then
      fail("client:list_messages", "not a page of 100 messages")
    end
  end)
end

local function batch_items(count)
  local items = {}
  for i = 1, count do items[i] = { from = FROM, to = TO, content = CONTENT } end
  return items
end

-- Every item of a batch must have succeeded. The result shape is send_batch's contract:
-- results[i] is the message for items[i], or a table holding it (.message / .value).
local function check_batch(results, err, count)
  if not results then fail("client:send_batch", err) end
  if #results ~= count then
    fail("client:send_batch", #results .. " results for " .. count .. " items")
  end
  for i = 1, count do
    local r = results[i]
    local msg = type(r) == "table" and (r.id and r or r.message or r.value)
    if type(msg) ~= "table" or msg.id ~= "msg_abc123def456" then
      fail("client:send_batch", "item " .. i .. ": " .. tostring(type(r) == "table"
        and (r.err or r.error) or r))
    end
  end
end

function MODES.batch()
  local client = new_client(o.url)
  if type(client.send_batch) ~= "function" then na("client:send_batch not implemented") end
  -- rate_per_minute = false: the default limiter paces sends to the API's 100 per minute,
  -- and this row measures the transfers, not the pacing.
  local opts = { concurrency = tonumber(o.inflight or "16"), rate_per_minute = false }
  local warm = batch_items(math.max(warmup, opts.concurrency))
  check_batch(client:send_batch(warm, opts), nil, #warm)
  local items = batch_items(n)
  local t0, c0 = gettime(), os.clock()
  local results, err = client:send_batch(items, opts)
  local elapsed, cpu = gettime() - t0, os.clock() - c0
  check_batch(results, err, n)
  result(elapsed, cpu, n)
end

function MODES.verify()
  local webhook = need_module("chatmaid.webhook")
  local f = assert(io.open(o.body, "rb"))
  local body = f:read("*a")
  f:close()
  local header = webhook.sign(body, SECRET, T_NOW)
  local opts = { now = T_NOW }
  local verify = webhook.verify
  local ok, err = verify(body, header, SECRET, opts)
  if ok ~= true then fail("webhook.verify", err) end
  -- A verifier that accepts everything would be fast too.
  if verify(body .. " ", header, SECRET, opts) then
    fail("webhook.verify", "accepted a tampered body")
  end
  for _ = 1, warmup do verify(body, header, SECRET, opts) end
  local t0, c0 = gettime(), os.clock()
  for _ = 1, n do
    ok, err = verify(body, header, SECRET, opts)
    if not ok then fail("webhook.verify", err) end
  end
  result(gettime() - t0, os.clock() - c0, n)
end

-- RSS after n1 and after n2 sends through one client (full collections before reading).
function MODES.mem()
  local client = new_client(o.url)
  local n1, n2 = tonumber(o.n1), tonumber(o.n2)
  check_sent(send_op(client))
  for _ = 2, n1 do send_op(client) end
  collect()
  local a = rss_kb()
  for _ = n1 + 1, n2 do send_op(client) end
  collect()
  io.write(string.format("RSS_A %d\nRSS_B %d\n", a, rss_kb()))
end

-- RSS before and after creating (and dropping) n clients.
function MODES.clients()
  local chatmaid = need_module("chatmaid")
  local opts = { api_key = KEY, base_url = o.url, max_retries = 0 }
  local client, err = chatmaid.new(opts)
  if not client then fail("chatmaid.new", err) end
  client = nil   -- luacheck: ignore (dropped on purpose)
  collect()
  local before = rss_kb()
  for _ = 1, n do
    client, err = chatmaid.new(opts)
    if not client then fail("chatmaid.new", err) end
  end
  client = nil   -- luacheck: ignore
  collect()
  io.write(string.format("RSS_BEFORE %d\nRSS_AFTER %d\n", before, rss_kb()))
end

-- Versions for the RESULTS.md header, from the libraries this process actually loaded.
function MODES.info()
  io.write("LUA ", _VERSION, "\n")
  if findable("chatmaid.core", package.cpath) then
    io.write("CURL ", require("chatmaid.core").curl_version, "\n")
  end
end

local run = MODES[mode]
if not run then error("bench/sdk.lua: unknown mode " .. tostring(mode), 0) end
run()
