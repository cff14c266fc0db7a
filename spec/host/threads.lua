-- Run by chatmaid_host -t N (spec/host/threads_spec.lua): each thread has its own lua_State,
-- loads chatmaid, makes its own client and real requests, and checks every answer.
-- arg[1]: sandbox URL, arg[2]: sends per thread.
local chatmaid = require "chatmaid"
local host = rawget(_G, "host")   -- set by chatmaid_host
local core = require "chatmaid.core"
local url, n = arg[1], tonumber(arg[2])
local me = "thread " .. host.thread
local c = assert(chatmaid.new{ api_key = "sk_test_sandbox_0000000000000001", base_url = url,
                               timeout = 20 })
local acc = assert(c:account())
assert(type(acc) == "table", me .. ": account is not a table")
local keys = {}
for i = 1, n do
  local content = me .. " message " .. i
  local m, err = c:send{ from = "ph_primary", to = "+15557654321", content = content }
  assert(m, me .. ": send failed: " .. tostring(err))
  assert(m.content == content, me .. ": got the answer to another request")
  local got = assert(c:message(m.id))
  assert(got.id == m.id and got.content == content, me .. ": message() mismatch")
  assert(not keys[m.idempotencyKey], me .. ": an idempotency key came twice")
  keys[m.idempotencyKey] = true
end
local ok, data = core.decode_envelope(200, '{"success":true,"data":{"t":' .. host.thread .. '}}')
assert(ok and data.t == host.thread)
c:close()
-- one string, one fwrite: two arguments are two writes, and another thread's line can land
-- between them ("thread 7thread 3 ok\n ok", a red CI run)
io.write(me .. " ok\n")
