-- SPDX-License-Identifier: MIT
-- A child process for spec/integration/loop_luv_spec.lua: `count` sends through
-- chatmaid.loop.luv against CHATMAID_BASE_URL (the spec makes the sandbox reset connections),
-- one after another so libcurl closes sockets and reuses their numbers. Prints
-- "sent N failed N reused N"; the spec reads stderr, which must stay empty.
--   lua5.4 spec/support/luv_child.lua <count> [epoll|sockets]
local uv = require "luv"
local chatmaid = require "chatmaid"

local count, watch = tonumber(arg[1]) or 5, arg[2]
local client = assert(chatmaid.new{ timeout = 10 })
local loop = chatmaid.loop.luv(client, uv, { watch = watch })

local reused = require "spec.support.fd_reuse"(client, uv)

local sent, failed = 0, 0
local function one(i)
  if i > count then return end
  client:spawn(function()
    return client:send{ from = "ph_primary", to = "+15557654321", content = "child " .. i }
  end):on_done(function(t)
    if t:result() then sent = sent + 1 else failed = failed + 1 end
    one(i + 1)
  end)
end
one(1)
uv.run()
print(string.format("sent %d failed %d reused %d", sent, failed, reused()))
loop:stop()
uv.run("nowait")
client:close()
