-- SPDX-License-Identifier: MIT
-- A non-blocking socket seen from inside a scheduler task: reads and writes yield instead of
-- blocking. Bodies are read by exact byte counts, never by lines.
local scheduler = require("chatmaid.sandbox.scheduler")

local _M = {}
local mt = { __index = _M }

-- wrap(sock, sched) -> conn. sock must have settimeout(0).
function _M.wrap(sock, sched)
  sock:settimeout(0)
  return setmetatable({ sock = sock, sched = sched, closed = false }, mt)
end

-- receive_line(max) -> line (without CRLF) | nil, "closed" | "too long" | err
function _M:receive_line(max)
  local acc = ""
  while true do
    local line, err, partial = self.sock:receive("*l", acc)
    if line then
      if #line > max then return nil, "too long" end
      return line
    end
    if err ~= "timeout" then return nil, err end
    acc = partial or acc
    if #acc > max then return nil, "too long" end
    scheduler.wait_read(self.sock)
  end
end

-- receive_n(n) -> exactly n bytes | nil, err
function _M:receive_n(n)
  local parts, got = {}, 0
  while got < n do
    local data, err, partial = self.sock:receive(n - got)
    data = data or partial
    if data and #data > 0 then
      parts[#parts + 1] = data
      got = got + #data
    end
    if got < n then
      if err and err ~= "timeout" then return nil, err end
      if err == "timeout" then scheduler.wait_read(self.sock) end
    end
  end
  return table.concat(parts)
end

-- drain(): read and discard until the peer closes (or the server stops).
function _M:drain()
  while not self.closed do
    local _, err, partial = self.sock:receive(65536)
    if err == "timeout" then
      if partial == "" then scheduler.wait_read(self.sock) end
    elseif err then
      return
    end
  end
end

-- send(data) -> true | nil, err
function _M:send(data)
  local i = 1
  while i <= #data do
    local last, err, partial = self.sock:send(data, i)
    if last then
      i = last + 1
    elseif err == "timeout" then
      i = (partial or (i - 1)) + 1
      scheduler.wait_write(self.sock)
    else
      return nil, err
    end
  end
  return true
end

-- close(reset): close the socket; with reset, ask the kernel for an RST (linger 0).
function _M:close(reset)
  if self.closed then return end
  self.closed = true
  if self.sched then self.sched:forget(self.sock) end
  if reset then pcall(self.sock.setoption, self.sock, "linger", { on = true, timeout = 0 }) end
  self.sock:close()
end

return _M
