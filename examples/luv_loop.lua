-- SPDX-License-Identifier: MIT
-- Driving a client from a libuv event loop (luv; Debian: lua-luv) with chatmaid.loop.luv:
-- sends run as tasks while the loop stays free; a 10 ms heartbeat timer on the same loop
-- reports how late it ever ran. uv.run() returns by itself once the sends and the heartbeat
-- are done. Key and URL from CHATMAID_API_KEY / CHATMAID_BASE_URL.
--   lua5.4 examples/luv_loop.lua [count]
local uv = require "luv"
local chatmaid = require "chatmaid"

local count = tonumber(arg and arg[1]) or 3
local client = assert(chatmaid.new{ timeout = 15 })
local loop = chatmaid.loop.luv(client, uv)   -- Neovim: chatmaid.loop.luv(client, vim.uv)

-- The work: a few sends as tasks, and a tally when each is done (on_done runs inside the
-- loop's callback).
local sent, failed, done = 0, 0, 0
for i = 1, count do
  client:spawn(function()
    return client:send{ to = "+1555765432" .. (i % 10), content = "luv message " .. i }
  end):on_done(function(t)
    local msg, err = t:result()
    if msg then sent = sent + 1
    else failed = failed + 1; print("send failed: " .. tostring(err)) end
    done = done + 1
  end)
end

-- The rest of the application: a heartbeat that must keep its pace until the sends are done.
local heartbeat = uv.new_timer()
local last, worst_late = uv.hrtime(), 0
heartbeat:start(10, 10, function()
  local now = uv.hrtime()
  local late = (now - last) / 1e6 - 10
  if late > worst_late then worst_late = late end
  last = now
  if done == count then heartbeat:close() end
end)

local start = uv.hrtime()
uv.run()
print(string.format("sent %d, failed %d in %.2f s; heartbeat at most %.1f ms late",
                    sent, failed, (uv.hrtime() - start) / 1e9, worst_late))
loop:stop()       -- closes its handles; one more uv.run() lets libuv finish closing them
uv.run()          -- (luv 1.44 crashes at exit on a handle still closing)
client:close()
os.exit(failed == 0 and sent == count and 0 or 1)
