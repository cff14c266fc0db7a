-- SPDX-License-Identifier: MIT
-- The floor of any send_batch whose items pass through Lua (bench/batch-cost.md): the least a
-- Lua loop can do per item over the SDK's own core, 16 in flight, against the bench's nginx:
-- a key, the body encoded, the transfer added, the completion decoded by the envelope decoder
-- and compared, a result table. No validation, no scheduler or tasks, no retries, no pacing,
-- no idempotency conflict check, no journal or progress. Measured with callgrind like the
-- batch row (Ir of n=4400 minus Ir of n=400, over 4000):
--   lua5.4 bench/lean_floor.lua http://127.0.0.1:PORT N     (sh bench/run.sh serve for a server)
package.path = "lua/?.lua;lua/?/init.lua;" .. package.path
package.cpath = "build/?.so;" .. package.cpath
local core = require "chatmaid.core"
local transport = require "chatmaid.transport"
local json = require("cjson").new()

local url = arg[1] .. "/v1/messages/send"
local n = assert(tonumber(arg[2]), "usage: lean_floor.lua BASE_URL N")
local INFLIGHT = 16
local tr = transport.new{ timeout_ms = 30000, connect_timeout_ms = 10000, http_version = "1.1" }
local headers = { "Authorization: Bearer sk_test_bench_000000000000000",
                  "Accept: application/json", "User-Agent: lua-chatmaid/bench",
                  "Content-Type: application/json" }
local items = {}
for i = 1, n do
  items[i] = { from = "507f1f77bcf86cd799439011", to = "+15557654321",
               content = "Hello from the bench" }
end

local results, keys = {}, {}
local decode = core.decode_envelope
local in_flight, next_item, done = 0, 1, 0
local function start()
  local i = next_item
  next_item = i + 1
  local p = items[i]
  local key = core.uuid4()
  local body = json.encode{ fromPhoneId = p.from, to = p.to, content = p.content,
                            idempotencyKey = key }
  assert(tr:add(i, { method = "POST", url = url, headers = headers, body = body,
                     timeout_ms = 30000 }))
  keys[i] = key
  in_flight = in_flight + 1
end

while done < n do
  while in_flight < INFLIGHT and next_item <= n do start() end
  local comps = tr:poll(1000)
  for j = 1, #comps do
    local c = comps[j]
    local i = c.token
    local ok, data = decode(c.status, c.body)
    local p = items[i]
    if not (ok and data.to == p.to and data.content == p.content) then
      error("lean_floor: item " .. i .. ": unexpected answer " .. tostring(c.status or c.kind))
    end
    results[i] = { message = data, idempotency_key = keys[i] }
    keys[i] = nil
    in_flight = in_flight - 1
    done = done + 1
  end
end
