-- Run by chatmaid_host (spec/host/redis_fork_spec.lua): a process that used a Redis-backed
-- seen set forks; parent and child then use it at the same time. Each must get the answers
-- to its own commands: the child opens its own connection instead of sharing the parent's.
-- arg[1]: redis URL, arg[2]: commands per process.
local redis = require "chatmaid.redis"
local host = rawget(_G, "host")   -- set by chatmaid_host
local url, n = arg[1], tonumber(arg[2])
local set = redis.seen_set{ url = url, prefix = "fork:" .. host.getpid() .. ":" }
assert(set:seen("before") == false)

local function loop(who)
  for i = 1, n do
    local k = who .. ":" .. i
    local first, err = set:seen(k)
    if first ~= false then error(who .. ": seen(" .. k .. ") = " .. tostring(first) .. " "
                                 .. tostring(err), 0) end
    if set:seen(k) ~= true then error(who .. ": second seen(" .. k .. ") not true", 0) end
    if set:has(who .. ":never") ~= false then error(who .. ": has(never) not false", 0) end
  end
end

local pid = host.fork()
if pid == 0 then
  local ok, err = pcall(loop, "child")
  if not ok then io.stderr:write(tostring(err), "\n") host.exit(3) end
  io.write("child ok\n")
  io.stdout:flush()
  host.exit(0)
end
loop("parent")
local status = host.wait(pid)
assert(status == 0, "the child failed (exit " .. status .. ")")
loop("parent after the child")
assert(set:seen("before") == true)
io.write("parent ok\n")
