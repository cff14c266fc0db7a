-- SPDX-License-Identifier: MIT
-- A one-file HTTP responder for specs that need bytes the sandbox does not produce (gzip
-- bodies): a child process that answers every request on a connection with the same raw
-- response read from a file. local srv = raw_server.start(path_to_response); srv:stop()
local _M = {}
local mt = { __index = _M }

local CHILD = [=[
local socket = require "socket"
local f = assert(io.open(arg[1], "rb")) local resp = f:read("*a") f:close()
local s = assert(socket.bind("127.0.0.1", 0))
local _, port = s:getsockname()
io.write(port, "\n") io.stdout:flush()
while true do
  local c = s:accept()
  if c then
    c:settimeout(5)
    while true do
      local line = c:receive("*l")
      if not line then break end
      local len = 0
      while line and line ~= "" do
        local n = line:match("^[Cc]ontent%-[Ll]ength:%s*(%d+)")
        if n then len = tonumber(n) end
        line = c:receive("*l")
      end
      if len > 0 then c:receive(len) end
      c:send(resp)
    end
    c:close()
  end
end
]=]

function _M.start(response_file)
  local lua = os.getenv("CHATMAID_LUA") or "lua5.4"
  local script = os.tmpname()
  local f = assert(io.open(script, "w"))
  f:write(CHILD)
  f:close()
  local p = assert(io.popen("exec " .. lua .. " " .. script .. " " .. response_file
                            .. " & echo $!; wait", "r"))
  local pid = p:read("*l")
  local port = tonumber(p:read("*l"))
  return setmetatable({ pid = pid, port = port, url = "http://127.0.0.1:" .. tostring(port),
                        pipe = p, script = script }, mt)
end

function _M:stop()
  if self.pid then os.execute("kill " .. self.pid .. " 2>/dev/null") end
  self.pid = nil
  if self.pipe then self.pipe:close() end
  self.pipe = nil
  os.remove(self.script)
end

return _M
