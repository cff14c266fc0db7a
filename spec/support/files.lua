-- SPDX-License-Identifier: MIT
-- Files for specs: a temporary directory per describe block, a file's mode, whether a path
-- exists.
local _M = {}

-- tmpdir() -> path of a new empty directory
function _M.tmpdir()
  local dir = os.tmpname()
  os.remove(dir)
  assert(os.execute("mkdir -p '" .. dir .. "'"))
  return dir
end

-- block_dir() -> function returning the directory made in setup, removed in teardown
function _M.block_dir()
  local busted = require "busted"
  local dir
  busted.setup(function() dir = _M.tmpdir() end)
  busted.teardown(function() if dir then os.execute("rm -rf '" .. dir .. "'") end end)
  return function() return dir end
end

-- mode(path) -> the permission bits in octal ("600")
function _M.mode(path)
  local p = io.popen("stat -c %a '" .. path .. "'")
  local m = p:read("*l")
  p:close()
  return m
end

function _M.exists(path)
  local f = io.open(path, "rb")
  if f then f:close() end
  return f ~= nil
end

-- uid() -> this process's real uid, from /proc (no child process: specs also run under ASan)
function _M.uid()
  for l in io.lines("/proc/self/status") do
    local u = l:match("^Uid:%s+(%d+)")
    if u then return tonumber(u) end
  end
end

-- uid_of(user) -> the uid /etc/passwd gives user, or nil
function _M.uid_of(user)
  for l in io.lines("/etc/passwd") do
    local name, u = l:match("^([^:]*):[^:]*:(%d+):")
    if name == user then return tonumber(u) end
  end
end

-- client_script(path, url, body) -> path: a Lua script for a child process that finds this
-- checkout's modules, has `F` (spec.support.fixtures) and `c`, a client of the sandbox at
-- url, then runs body. Start it with os.getenv("CHATMAID_LUA") or "lua5.4".
function _M.client_script(path, url, body)
  local f = assert(io.open(path, "w"))
  f:write(("package.path = %q\npackage.cpath = %q\n"):format(package.path, package.cpath),
          'local F = require "spec.support.fixtures"\n',
          ("local c = assert(require('chatmaid').new{ api_key = F.TEST_KEY, base_url = %q,"
           .. " timeout = 5 })\n"):format(url), body)
  f:close()
  return path
end

return _M
