-- SPDX-License-Identifier: MIT
-- A throwaway redis-server for specs: a free 127.0.0.1 port, its own data dir, no
-- persistence, never the system service. local r = redis_helper.start(); r.url; r:stop()
local socket = require "socket"
local proc = require "spec.support.proc"

local _M = {}
local mt = { __index = _M }

local function sh(cmd)
  local p = io.popen(cmd .. " 2>&1")
  local out = p:read("*a")
  p:close()
  return out
end

function _M.free_port()
  local s = assert(socket.bind("127.0.0.1", 0))
  local _, port = s:getsockname()
  s:close()
  return tonumber(port)
end

-- binary() -> path of redis-server or nil
function _M.binary()
  local bin = sh("command -v redis-server || ls /usr/bin/redis-server")
  bin = bin:match("([^\n]+)")
  if bin and bin ~= "" and sh("test -x '" .. bin .. "' && echo yes"):find("yes") then
    return bin
  end
  return nil
end

-- start{ password = nil, port = nil (a free one), args = "more redis-server options" }
--   -> server { port, url, dir, pid, stop(), cli(...) }
local function launch(self, opts)
  opts = opts or {}
  local bin = assert(_M.binary(), "redis-server is not installed (apt-get install redis-server)")
  local dir = sh("mktemp -d /tmp/chatmaid-redis.XXXXXX"):match("([^\n]+)")
  assert(dir and dir ~= "", "mktemp failed")
  local port = opts.port or _M.free_port()
  local args = "--port " .. port .. " --bind 127.0.0.1 --dir " .. dir .. " --save ''"
               .. " --appendonly no --daemonize no --logfile " .. dir .. "/redis.log"
  if opts.password then args = args .. " --requirepass " .. opts.password end
  if opts.args then args = args .. " " .. opts.args end     -- e.g. "--cluster-enabled yes"
  local p = assert(io.popen("exec " .. bin .. " " .. args .. " >/dev/null 2>&1 & echo $!"))
  local pid = tonumber(p:read("*l"))
  p:close()
  self.port, self.dir, self.pid, self.password = port, dir, pid, opts.password
  self.url = "redis://" .. (opts.password and (":" .. opts.password .. "@") or "")
             .. "127.0.0.1:" .. port .. "/0"
  local deadline = socket.gettime() + 10
  while socket.gettime() < deadline do
    local c = socket.connect("127.0.0.1", port)
    if c then
      c:settimeout(2)
      c:send((opts.password and ("AUTH " .. opts.password .. "\r\n") or "") .. "PING\r\n")
      local line = c:receive("*l")
      if opts.password and line then line = c:receive("*l") end
      c:close()
      if line == "+PONG" then return self end
    end
    socket.sleep(0.02)
  end
  self:stop()
  error("redis-server did not start on port " .. port)
end

function _M.start(opts) return launch(setmetatable({}, mt), opts) end

-- serve(opts) inside a describe block: the block's redis-server (start's options), started
-- in its setup and stopped in its teardown. -> the server (its fields are there once the
-- setup ran).
function _M.serve(opts)
  local busted = require "busted"
  local self = setmetatable({}, mt)
  busted.setup(function() launch(self, opts) end)
  busted.teardown(function() self:stop() end)
  return self
end

-- cli(...) -> the raw reply line(s) of one command through redis-cli (for assertions)
function _M:cli(...)
  local parts = {}
  for i = 1, select("#", ...) do
    parts[i] = "'" .. tostring((select(i, ...))):gsub("'", "'\\''") .. "'"
  end
  return (sh("redis-cli -h 127.0.0.1 -p " .. self.port
             .. (self.password and (" -a " .. self.password .. " --no-auth-warning") or "")
             .. " " .. table.concat(parts, " ")):gsub("\n$", ""))
end

-- silent() -> { port, stop() }: a child process that accepts connections, reads what comes
-- and never answers (a Redis that hangs).
function _M.silent()
  local workers = require "spec.support.workers"
  local w = workers.spawn([[
    local socket = require "socket"
    local s = assert(socket.bind("127.0.0.1", 0))
    local _, port = s:getsockname()
    io.write(port, "\n") io.stdout:flush()
    local held = {}
    while true do
      local c = s:accept()
      if c then held[#held + 1] = c; c:settimeout(0); c:receive(4096) end
    end
  ]])
  local port = tonumber(w.pipe:read("*l"))
  return { port = port, stop = function() w:kill9() w:reap() end }
end

-- restart(): Redis dies (kill -9: no save, as a crash or SHUTDOWN NOSAVE) and a new
-- redis-server without persistence starts on the same port: everything it held is gone.
function _M:restart()
  local port, password = self.port, self.password
  proc.stop(self.pid, "KILL")
  self.pid = nil
  if self.dir then os.execute("rm -rf '" .. self.dir .. "'") end
  return launch(self, { port = port, password = password })
end

local state = proc.state

-- pause() / resume(): SIGSTOP / SIGCONT the server (a Redis that stalls: connections stay
-- open, nothing is answered, commands queue and run when it wakes). pause() returns once the
-- kernel shows the server stopped, and raises if it does not stop: a spec never runs against
-- a server it only believes stopped.
function _M:pause()
  os.execute("kill -STOP " .. self.pid)
  local deadline = socket.gettime() + 2
  while state(self.pid) ~= "T" do
    if socket.gettime() > deadline then
      error("redis-server (pid " .. self.pid .. ") did not stop on SIGSTOP: state "
            .. tostring(state(self.pid)))
    end
    socket.sleep(0.002)
  end
end
function _M:resume() os.execute("kill -CONT " .. self.pid) end

-- stopped() -> true while the server is stopped. A spec that needs it stopped for a whole
-- test checks this at the end: a SIGCONT from outside the spec (another process's kill of
-- the wrong pid or of every redis-server, a job-control signal) makes Redis answer, and the
-- test's failure would otherwise read as the product's.
function _M:stopped() return state(self.pid) == "T" end

-- stop(): TERM the server by pid, wait, remove its dir.
function _M:stop()
  if self.pid then
    os.execute("kill -CONT " .. self.pid .. " 2>/dev/null")   -- a paused one must see TERM
    proc.stop(self.pid, "TERM")   -- a zombie left for init to reap counts as gone
    self.pid = nil
  end
  if self.dir then os.execute("rm -rf '" .. self.dir .. "'") end
  self.dir = nil
end

return _M
