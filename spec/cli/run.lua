-- SPDX-License-Identifier: MIT
-- Runs bin/chatmaid as a child process for the CLI specs: env on the command line, stdin
-- from a file, stdout/stderr captured, exit code returned.
local _M = {}

local root = debug.getinfo(1, "S").source:match("^@(.*)spec/cli/run%.lua$") or "./"
if root == "" then root = "./" end
_M.root = root
_M.LUA = os.getenv("CHATMAID_LUA") or "lua5.4"
_M.BIN = root .. "bin/chatmaid"
_M.KEY = "sk_test_sandbox_0000000000000001"
_M.LIVE = "sk_live_sandbox_0000000000000001"

function _M.quote(s)
  return "'" .. tostring(s):gsub("'", "'\\''") .. "'"
end
local q = _M.quote

function _M.read(path)
  local f = io.open(path, "rb")
  if not f then return nil end
  local s = f:read("*a")
  f:close()
  return s
end

function _M.write(path, s)
  local f = assert(io.open(path, "wb"))
  f:write(s)
  f:close()
  return path
end

-- env_prefix(env) -> "env K=V ..." (env: table; false values unset the variable)
function _M.env_prefix(env)
  local unset, set = {}, {}
  for k, v in pairs(env or {}) do
    if v == false then unset[#unset + 1] = "-u " .. k
    else set[#set + 1] = k .. "=" .. q(v) end
  end
  return "env " .. table.concat(unset, " ") .. " " .. table.concat(set, " ")
end

-- command(args, env) -> the shell command line that runs the CLI
function _M.command(args, env)
  local a = {}
  for i, v in ipairs(args) do a[i] = q(v) end
  return _M.env_prefix(env) .. " " .. q(_M.LUA) .. " " .. q(_M.BIN) .. " " .. table.concat(a, " ")
end

-- run(args, { env = {...}, stdin = "..." }) -> stdout, stderr, exit code
function _M.run(args, o)
  o = o or {}
  local out, err = os.tmpname(), os.tmpname()
  local stdin = "/dev/null"
  if o.stdin then stdin = _M.write(os.tmpname(), o.stdin) end
  local h = io.popen(_M.command(args, o.env) .. " <" .. q(stdin) .. " >" .. q(out) .. " 2>"
                     .. q(err) .. "; echo $?")
  local code = tonumber(h:read("*a"):match("(%d+)%s*$"))
  h:close()
  local so, se = _M.read(out), _M.read(err)
  os.remove(out); os.remove(err)
  if o.stdin then os.remove(stdin) end
  return so, se, code
end

-- spawn(args, env, stderr_path) -> pid, wait: the CLI in the background (its stderr to
-- stderr_path); wait() waits for its exit and returns the exit code (on every Lua: the shell
-- prints it, since io.popen's close gives no status on 5.1).
function _M.spawn(args, env, stderr_path)
  local cmd = _M.command(args, env) .. " 2>" .. q(stderr_path)
  -- the inner shell prints its pid (the CLI's, after exec) before the CLI prints anything
  local inner = "sh -c " .. q("echo $$; exec " .. cmd)
  local h = io.popen("sh -c " .. q(inner .. " & wait $!; echo \"=$?\""))
  local pid = assert(tonumber(h:read("*l")))
  return pid, function()
    local rest = h:read("*a")
    h:close()
    return tonumber(rest:match("=(%d+)"))
  end
end

-- pty(args, env) -> everything written to the terminal (stdout and stderr), exit code.
-- util-linux script(1) gives the child a pseudo-terminal.
function _M.pty(args, env)
  local inner = _M.command(args, env)
  local h = io.popen("script -qec " .. q(inner) .. " /dev/null </dev/null; echo \"=$?\"")
  local s = h:read("*a")
  h:close()
  local body, code = s:match("^(.*)=(%d+)%s*$")
  return body, tonumber(code)
end

-- env for a sandbox
function _M.env(sb, key)
  return { CHATMAID_API_KEY = key or _M.KEY, CHATMAID_BASE_URL = sb.url }
end

-- json_lines(s) -> the decoded JSON value of each line
function _M.json_lines(s)
  local out = {}
  for _, l in ipairs(_M.lines(s)) do out[#out + 1] = require("cjson").decode(l) end
  return out
end

-- lines(s) -> array of lines (without the newline)
function _M.lines(s)
  local t = {}
  for l in (s or ""):gmatch("([^\n]*)\n") do t[#t + 1] = l end
  return t
end

-- kv(text) -> map of the "key   value" lines printed for one object
function _M.kv(s)
  local t = {}
  for _, l in ipairs(_M.lines(s)) do
    local k, v = l:match("^(%S+)%s+(.-)$")
    if k then t[k] = v else t[l] = "" end
  end
  return t
end

return _M
