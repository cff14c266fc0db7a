-- SPDX-License-Identifier: MIT
-- Runs a script in the embedding host (spec/host/chatmaid_host.c) built for the Lua runtime
-- under test, with lua/ and the core of that build on its paths.
--   local out, code = host.run("spec/host/threads.lua", { url, 20 }, 8)
local _M = {}

-- The build directory: CHATMAID_HOST_BUILD (make tsan), else the one of the core busted
-- was given (--cpath='build/asan/?.so').
function _M.build_dir()
  return os.getenv("CHATMAID_HOST_BUILD") or package.cpath:match("^([^;]-)/%?%.so") or "build"
end

local function quote(s)
  return "'" .. tostring(s):gsub("'", "'\\''") .. "'"
end

-- run(script, args, threads, env) -> combined output, exit code. env: extra variables.
function _M.run(script, args, threads, env)
  local build = _M.build_dir()
  local cmd = {}
  for k, v in pairs(env or {}) do cmd[#cmd + 1] = k .. "=" .. quote(v) end
  cmd[#cmd + 1] = "CHATMAID_HOST_PATH=" .. quote("lua/?.lua;lua/?/init.lua;./?.lua")
  cmd[#cmd + 1] = "CHATMAID_HOST_CPATH=" .. quote(build .. "/?.so")
  cmd[#cmd + 1] = quote(build .. "/chatmaid_host")
  if threads then cmd[#cmd + 1] = "-t " .. threads end
  cmd[#cmd + 1] = quote(script)
  for _, a in ipairs(args or {}) do cmd[#cmd + 1] = quote(a) end
  local p = assert(io.popen(table.concat(cmd, " ") .. " 2>&1; echo \"exit:$?\""))
  local out = p:read("*a")
  p:close()
  local code = tonumber(out:match("exit:(%d+)%s*$"))
  return out:gsub("exit:%d+%s*$", ""), code
end

return _M
