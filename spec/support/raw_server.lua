-- SPDX-License-Identifier: MIT
-- A one-file HTTP responder for specs that need bytes the sandbox does not produce (gzip
-- bodies): a child process that answers every request on a connection with the same raw
-- response read from a file. local srv = raw_server.start(path_to_response); srv:stop()
-- With a second argument (a file name) it appends each request line it receives to that
-- file, exactly as it came off the wire: srv:requests() reads them back.
local _M = {}
local mt = { __index = _M }

local CHILD = [=[
local socket = require "socket"
local f = assert(io.open(arg[1], "rb")) local resp = f:read("*a") f:close()
local log = arg[2] and assert(io.open(arg[2], "ab"))
local s = assert(socket.bind("127.0.0.1", 0))
local _, port = s:getsockname()
io.write("port=", port, "\n") io.stdout:flush()
while true do
  local c = s:accept()
  if c then
    c:settimeout(5)
    while true do
      local line = c:receive("*l")
      if not line then break end
      if log then log:write(line, "\n") log:flush() end
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

function _M.start(response_file, log_file)
  local lua = os.getenv("CHATMAID_LUA") or "lua5.4"
  local script = os.tmpname()
  local f = assert(io.open(script, "w"))
  f:write(CHILD)
  f:close()
  local p = assert(io.popen("exec " .. lua .. " " .. script .. " " .. response_file
                            .. (log_file and (" " .. log_file) or "")
                            .. " & echo $!; wait", "r"))
  -- the shell's pid and the child's port line race on the pipe: tell them apart
  local pid, port
  for _ = 1, 2 do
    local line = p:read("*l") or ""
    local n = line:match("^port=(%d+)$")
    if n then port = tonumber(n) else pid = line end
  end
  return setmetatable({ pid = pid, port = port, url = "http://127.0.0.1:" .. tostring(port),
                        pipe = p, script = script, log_file = log_file }, mt)
end

-- The request lines received so far (needs a log file given to start).
function _M:requests()
  local out = {}
  local f = io.open(self.log_file, "rb")
  if not f then return out end
  for line in f:lines() do out[#out + 1] = line end
  f:close()
  return out
end

function _M:stop()
  -- SIGKILL: a test server needs no clean exit, and nothing it inherited can delay it
  if self.pid then os.execute("kill -9 " .. self.pid .. " 2>/dev/null") end
  self.pid = nil
  if self.pipe then self.pipe:close() end
  self.pipe = nil
  os.remove(self.script)
end

return _M
