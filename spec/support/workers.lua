-- SPDX-License-Identifier: MIT
-- Worker processes for the many-machines specs: each runs a Lua chunk in its own
-- interpreter (the one the suite runs on) with this repo's lua/ and the suite's build on
-- its paths. local w = workers.spawn(code, { "arg1", ... }); w.pid; w:wait() -> output
local _M = {}
local mt = { __index = _M }

local function shq(s) return "'" .. tostring(s):gsub("'", "'\\''") .. "'" end

-- spawn(code, args) -> worker. The chunk sees its arguments in `arg` / `...`.
function _M.spawn(code, args)
  local lua = os.getenv("CHATMAID_LUA") or "lua5.4"
  local script = os.tmpname()
  local f = assert(io.open(script, "w"))
  f:write("package.path = ", string.format("%q", package.path), "\n",
          "package.cpath = ", string.format("%q", package.cpath), "\n", code)
  f:close()
  local parts = {}
  for i, a in ipairs(args or {}) do parts[i] = shq(a) end
  -- The shell prints its pid, then execs the worker under that same pid: the pid line
  -- always comes first. ("... & echo $!" raced with the worker's own first line: a worker
  -- printing its port first swapped the two, and the spec hung killing the wrong pid.)
  local p = assert(io.popen("echo $$; exec " .. lua .. " " .. script .. " "
                            .. table.concat(parts, " ") .. " 2>&1", "r"))
  local pid = tonumber(p:read("*l"))
  return setmetatable({ pid = pid, pipe = p, script = script }, mt)
end

-- wait() -> everything the worker printed (stdout and stderr), once it has exited
function _M:wait()
  if not self.pipe then return self.out end
  self.out = self.pipe:read("*a")
  self.pipe:close()
  self.pipe = nil
  os.remove(self.script)
  return self.out
end

-- kill9(): SIGKILL, as a machine that dies mid-way
function _M:kill9()
  os.execute("kill -9 " .. self.pid .. " 2>/dev/null")
end

-- reap(): after kill9, waits for the shell without reading the output to its end (a process
-- that inherited the pipe could keep it open)
function _M:reap()
  if self.pipe then self.pipe:close() end
  self.pipe = nil
  os.remove(self.script)
end

return _M
