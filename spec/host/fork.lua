-- Run by chatmaid_host (spec/host/fork_spec.lua): a process that used a client forks; the
-- parent and the child then both use that client, at the same time, and each must get the
-- answers to its own requests. arg[1]: base URL, arg[2]: requests per process, arg[3]: mode,
-- arg[4]: ca_file. Mode "close": the child only closes the client (and its Lua state) and
-- exits; the parent's connection must survive that (over TLS, a cleanup in the child would
-- send close_notify on the parent's connection).
local chatmaid = require "chatmaid"
local host = rawget(_G, "host")   -- set by chatmaid_host
local url, n, mode = arg[1], tonumber(arg[2]), arg[3] or "share"
local c = assert(chatmaid.new{ api_key = "sk_test_sandbox_0000000000000001", base_url = url,
                               timeout = 3, max_retries = 0, ca_file = arg[4] })
local function send(content)
  return assert(c:send{ from = "ph_primary", to = "+15557654321", content = content })
end
local mp, mc = send("for the parent"), send("for the child")
local connects = c.transport:stats().connects      -- 1: one kept-alive connection

local function fetch_loop(who, m)
  for i = 1, n do
    local got, err = c:message(m.id)
    if not got then error(who .. ": request " .. i .. " failed: " .. tostring(err), 0) end
    if got.id ~= m.id then
      error(who .. ": request " .. i .. " got the answer for " .. tostring(got.id), 0)
    end
  end
end

-- Mode "batch": both processes send batches over the multi handle, which the parent
-- already used (with its connections) before the fork.
local function batch(who, k)
  local items = {}
  for i = 1, k do
    items[i] = { from = "ph_primary", to = "+15557654321", content = who .. " batch " .. i }
  end
  local results = c:send_batch(items, { concurrency = 4, rate_per_minute = false })
  for i = 1, k do
    local r = results[i]
    if not (r and r.message) then
      error(who .. ": batch item " .. i .. " failed: " .. tostring(r and r.err), 0)
    end
    if r.message.content ~= items[i].content then
      error(who .. ": batch item " .. i .. " got the answer for " .. tostring(r.message.content), 0)
    end
  end
end
if mode == "batch" then batch("before the fork", 4) end

local pid = host.fork()
if pid == 0 and mode == "batch" then
  local ok, err = pcall(batch, "child", n)
  if not ok then io.stderr:write(tostring(err), "\n") host.exit(3) end
  c:close()
  io.write("child ok\n")
  host.exit(0)
end
if mode == "batch" then
  batch("parent", n)
  local status = host.wait(pid)
  assert(status == 0, "the child failed (exit " .. status .. ")")
  batch("parent after the child", 4)
  c:close()
  io.write("parent ok\n")
  return
end
if pid == 0 and mode == "close" then
  c:close()
  c = nil
  collectgarbage()
  collectgarbage()
  io.write("child ok\n")
  host.exit(0)
end
if pid == 0 then
  local ok, err = pcall(fetch_loop, "child", mc)
  if not ok then io.stderr:write(tostring(err), "\n") host.exit(3) end
  c:close()              -- in the child: must not shut down the parent's connection
  io.write("child ok\n")
  host.exit(0)
end
fetch_loop("parent", mp)
local status = host.wait(pid)
assert(status == 0, "the child failed (exit " .. status .. ")")
fetch_loop("parent after the child", mp)
local st = c.transport:stats()
-- The parent kept its own connection all along: no reconnect.
assert(st.connects == connects, "the parent reconnected: " .. st.connects .. " connects")
c:close()
io.write("parent ok\n")
