-- SPDX-License-Identifier: MIT
-- Scripted hostile HTTP servers for specs: a child process (LuaSocket) that runs the given
-- Lua source for every accepted connection. The source sees:
--   c        the connection (LuaSocket tcp, 5 s timeout)
--   n        the connection's number (1, 2, ...)
--   read()   -> request line, headers (lowercase names), body | nil when the peer closed
--   log(s)   appends a line to the log file (srv:log() reads them back)
-- and returns when it is done with the connection (which is then closed).
--   local srv = raw_script.start[[ local r = read() if r then log(r) c:send(...) end ]]
--   srv.url, srv:log() -> { lines }, srv:stop()
local _M = {}
local mt = { __index = _M }

local PRELUDE = [=[
local socket = require "socket"
local logfile = arg[1]
local function log(s)
  local f = assert(io.open(logfile, "a")) f:write(s, "\n") f:close()
end
local srv = assert(socket.bind("127.0.0.1", 0))
local _, port = srv:getsockname()
io.write("port=", port, "\n") io.stdout:flush()
local src = arg[2]:gsub("%%(%x%x)", function(h) return string.char(tonumber(h, 16)) end)
local n = 0
while true do
  local c = srv:accept()
  if c then
    n = n + 1
    c:settimeout(5)
    local function read()
      local line = c:receive("*l")
      if not line then return nil end
      local h, len = {}, 0
      while true do
        local l = c:receive("*l")
        if not l or l == "" then break end
        local k, v = l:match("^([^:]+):%s*(.*)$")
        if k then h[k:lower()] = v end
      end
      len = tonumber(h["content-length"] or "0") or 0
      local body = len > 0 and c:receive(len) or ""
      return line, h, body
    end
    local env = setmetatable({ c = c, n = n, read = read, log = log, socket = socket },
                             { __index = _G })
    local f
    if setfenv then f = setfenv(assert(loadstring(src)), env)
    else f = assert(load(src, "handler", "t", env)) end
    local ok, err = pcall(f)
    if not ok then log("handler error: " .. tostring(err)) end
    c:close()
  end
end
]=]

local function hex(s)
  return (s:gsub("[^%w]", function(ch) return string.format("%%%02X", ch:byte()) end))
end

function _M.start(source)
  local lua = os.getenv("CHATMAID_LUA") or "lua5.4"
  local script = os.tmpname()
  local logfile = os.tmpname()
  local f = assert(io.open(script, "w"))
  f:write(PRELUDE)
  f:close()
  local p = assert(io.popen("exec " .. lua .. " " .. script .. " " .. logfile .. " '"
                            .. hex(source) .. "' & echo $!; wait", "r"))
  -- The shell's pid line and the child's port line may come in either order.
  local pid, port
  for _ = 1, 2 do
    local l = p:read("*l") or ""
    if l:match("^port=") then port = tonumber(l:sub(6)) else pid = l end
  end
  assert(port, "raw_script: the server did not start")
  return setmetatable({ pid = pid, port = port, url = "http://127.0.0.1:" .. tostring(port),
                        pipe = p, script = script, logfile = logfile }, mt)
end

-- The lines logged so far.
function _M:log()
  local lines = {}
  local f = io.open(self.logfile, "r")
  if f then
    for l in f:lines() do lines[#lines + 1] = l end
    f:close()
  end
  return lines
end

function _M:stop()
  -- SIGKILL: a test server needs no clean exit, and nothing it inherited can delay it
  if self.pid then os.execute("kill -9 " .. self.pid .. " 2>/dev/null") end
  self.pid = nil
  if self.pipe then self.pipe:close() end
  self.pipe = nil
  os.remove(self.script)
  os.remove(self.logfile)
end

return _M
