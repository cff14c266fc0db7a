-- SPDX-License-Identifier: MIT
-- Driving a client from a libuv event loop (luv; Debian: lua-luv): poll handles on the
-- sockets from client:fds(), a timer from client:step_timeout(), client:step(0) when either
-- fires. Nothing polls blindly and nothing blocks the loop: a 10 ms heartbeat timer on the
-- same loop reports how late it ever ran. Key and URL from CHATMAID_API_KEY /
-- CHATMAID_BASE_URL.  lua5.4 examples/luv_loop.lua [count]
local uv = require "luv"
local chatmaid = require "chatmaid"

local count = tonumber(arg and arg[1]) or 3
local client = assert(chatmaid.new{ timeout = 15 })

local polls = {}            -- fd -> { handle = uv poll, events = "r" | "w" | "rw" }
local timer = uv.new_timer()
local drive                 -- forward declaration: the callbacks call it

-- After every step: watch exactly the sockets the client waits on, and arm the timer.
local function rearm()
  local want = client:fds()
  for fd, p in pairs(polls) do
    if not want[fd] then
      p.handle:stop()
      p.handle:close()
      polls[fd] = nil
    end
  end
  for fd, events in pairs(want) do
    local p = polls[fd]
    if not p then
      p = { handle = uv.new_socket_poll(fd) }
      polls[fd] = p
    end
    -- restarted every time: libcurl may have closed the fd and opened a new socket with the
    -- same number since the last step
    p.handle:stop()
    p.events = events
    p.handle:start(events, drive)
  end
  timer:stop()
  local wait = client:step_timeout()       -- nil: no task runs, nothing to wake up for
  if wait then timer:start(math.ceil(wait * 1000), 0, drive) end
end

function drive()
  client:step(0)
  rearm()
end

-- The work: a few sends as tasks, and a summary when all are done.
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

-- The rest of the application: a heartbeat that must keep its pace.
local heartbeat = uv.new_timer()
local last, worst_late = uv.hrtime(), 0
heartbeat:start(10, 10, function()
  local now = uv.hrtime()
  local late = (now - last) / 1e6 - 10
  if late > worst_late then worst_late = late end
  last = now
  if done == count then
    heartbeat:stop()
    heartbeat:close()
    timer:stop()
    timer:close()
    for _, p in pairs(polls) do p.handle:close() end
  end
end)

local start = uv.hrtime()
drive()
uv.run()
print(string.format("sent %d, failed %d in %.2f s; heartbeat at most %.1f ms late",
                    sent, failed, (uv.hrtime() - start) / 1e9, worst_late))
client:close()
os.exit(failed == 0 and sent == count and 0 or 1)
