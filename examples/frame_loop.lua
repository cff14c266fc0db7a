-- SPDX-License-Identifier: MIT
-- A game-style frame loop (love.update-style): client:step(0) once per frame, never blocking.
-- Sends a few messages as tasks while the loop keeps its 60 frames per second, and prints
-- the worst frame's own work time. Key and URL from CHATMAID_API_KEY / CHATMAID_BASE_URL
-- (`make demo` style: against the sandbox).  lua5.4 examples/frame_loop.lua [count]
local chatmaid = require "chatmaid"
local socket = require "socket"            -- a clock and a frame sleep, as an engine has

local count = tonumber(arg and arg[1]) or 3
local client = assert(chatmaid.new{ timeout = 15 })

-- Game state: what the HUD shows.
local sent, failed = 0, 0

-- What a key press would do: start a send and go on with the frame.
local function on_key_press(i)
  local task = client:spawn(function()
    -- inside a task every call on the client waits without blocking the frame
    return client:send{ to = "+1555765432" .. (i % 10), content = "frame loop message " .. i }
  end)
  task:on_done(function(t)                 -- runs inside client:step, on the game's thread
    local msg, err = t:result()
    if msg then sent = sent + 1
    else failed = failed + 1; print("send failed: " .. tostring(err)) end
  end)
end

-- love.update(dt) equivalent
local function update(frame)
  if frame <= count then on_key_press(frame) end
  return client:step(0)                    -- does what is ready, returns at once
end

local FRAME = 1 / 60
local worst, frames = 0, 0
local start = socket.gettime()
while true do
  local t0 = socket.gettime()
  frames = frames + 1
  local running = update(frames)
  local work = socket.gettime() - t0
  if work > worst then worst = work end
  if running == 0 and frames > count then break end
  if socket.gettime() - start > 60 then print("gave up after 60 s"); os.exit(1) end
  local left = FRAME - (socket.gettime() - t0)
  if left > 0 then socket.sleep(left) end  -- love.run's timer sleep
end
print(string.format("sent %d, failed %d, %d frames in %.2f s, worst frame work %.2f ms",
                    sent, failed, frames, socket.gettime() - start, worst * 1000))
client:close()
os.exit(failed == 0 and sent == count and 0 or 1)
