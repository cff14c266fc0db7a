-- SPDX-License-Identifier: MIT
-- Servers that misbehave, for the Redis fault specs, each a child process on a free
-- 127.0.0.1 port:
--   hostile(answer_code) -> { port, stop() }: a RESP server whose answers a Lua chunk
--     decides: answer_code is the body of `function(cmd, data, n)` (cmd: the command's name
--     in capitals, data: the raw request, n: the request number on this connection; the
--     global PORT is the server's own port) and
--     returns a string (sent at once), { "chunk", ..., delay = s } (each chunk `delay` s
--     apart), or nil (close the connection).
--   closer() -> { port, stop() }: closes every connection as soon as it is accepted.
--   proxy(target_port) -> { port, switch(p), stop() }: a TCP forwarder (a virtual IP): each
--     new connection goes to the current target; switch(p) moves the target for the
--     connections that come next, as a failover moves a VIP (open ones stay where they are).
local workers = require "spec.support.workers"

local _M = {}

local function started(w)
  local port = tonumber(w.pipe:read("*l"))
  assert(port, "the fault server did not start")
  return port
end

function _M.hostile(answer_code)
  local w = workers.spawn([[
    local socket = require "socket"
    local answer = function(cmd, data, n) ]] .. answer_code .. [[ end
    local s = assert(socket.bind("127.0.0.1", 0))
    local _, port = s:getsockname()
    PORT = port   -- luacheck: ignore (the answer code may name its own port)
    io.write(port, "\n") io.stdout:flush()
    while true do
      local c = s:accept()
      c:settimeout(10)
      local n = 0
      while true do
        local data, err, partial = c:receive(1)
        if not data then break end
        c:settimeout(0.02)
        local more, _, p2 = c:receive(65536)
        data = data .. (more or p2 or "")
        c:settimeout(10)
        n = n + 1
        local cmd = (data:match("^%*%d+\r\n%$%d+\r\n([^\r]*)") or ""):upper()
        local a = answer(cmd, data, n)
        if a == nil then break end
        if type(a) == "string" then
          if not c:send(a) then break end
        else
          local ok = true
          for i = 1, #a do
            if not c:send(a[i]) then ok = false break end
            if a.delay then socket.sleep(a.delay) end
          end
          if not ok then break end
        end
      end
      c:close()
    end
  ]])
  local port = started(w)
  return { port = port, stop = function() w:kill9() w:reap() end }
end

-- closer() -> { port, stop() }: accepts each connection and closes it at once, unread
function _M.closer()
  local w = workers.spawn([[
    local socket = require "socket"
    local s = assert(socket.bind("127.0.0.1", 0))
    local _, port = s:getsockname()
    io.write(port, "\n") io.stdout:flush()
    while true do
      local c = s:accept()
      if c then c:close() end
    end
  ]])
  local port = started(w)
  return { port = port, stop = function() w:kill9() w:reap() end }
end

function _M.proxy(target)
  local file = os.tmpname()
  local f = assert(io.open(file, "w"))
  f:write(target)
  f:close()
  local w = workers.spawn([[
    local socket = require "socket"
    local file = ...
    local s = assert(socket.bind("127.0.0.1", 0))
    local _, port = s:getsockname()
    io.write(port, "\n") io.stdout:flush()
    s:settimeout(0)
    local peer, socks = {}, { s }
    local function drop(c)
      local p = peer[c]
      for _, x in ipairs({ c, p }) do
        if x then
          x:close()
          peer[x] = nil
          for i = #socks, 1, -1 do if socks[i] == x then table.remove(socks, i) end end
        end
      end
    end
    while true do
      local r = socket.select(socks, nil, 1)
      for _, c in ipairs(r) do
        if c == s then
          local a = s:accept()
          if a then
            local fh = io.open(file)
            local t = tonumber(fh:read("*a"))
            fh:close()
            local b = socket.connect("127.0.0.1", t)
            if b then
              a:settimeout(0) b:settimeout(0)
              peer[a], peer[b] = b, a
              socks[#socks + 1] = a
              socks[#socks + 1] = b
            else
              a:close()
            end
          end
        elseif peer[c] then
          local data, err, partial = c:receive(65536)
          data = data or partial
          if data and #data > 0 then
            peer[c]:settimeout(5)
            peer[c]:send(data)
            peer[c]:settimeout(0)
          end
          if err == "closed" then drop(c) end
        end
      end
    end
  ]], { file })
  local port = started(w)
  return {
    port = port,
    switch = function(_, p)
      local fh = assert(io.open(file, "w"))
      fh:write(p)
      fh:close()
    end,
    stop = function() w:kill9() w:reap() os.remove(file) end,
  }
end

return _M
