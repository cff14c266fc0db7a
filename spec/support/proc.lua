-- SPDX-License-Identifier: MIT
-- Stopping the daemons the specs start (nginx, redis-server) by pid.
local socket = require "socket"

local _M = {}

-- alive(pid) -> true while the process runs. The daemons are started in the background of a
-- shell that exited: their parent is init, which may reap them a second or more after they
-- exited, so a zombie counts as gone (kill -0 would still succeed on it). The sandbox's own
-- check, which treats its child the same way.
_M.alive = require("chatmaid.sandbox.util").alive

-- pid() -> this process's id (what /proc/self names; Lua has no getpid)
_M.pid = require("chatmaid.sandbox.util").pid

-- state(pid) -> its state letter ("T": stopped by a signal), or nil once it is gone
_M.state = require("chatmaid.sandbox.util").state

-- stop(pid, signal): sends signal ("TERM", "QUIT", ...), waits up to 5 s for the process to
-- go, then KILLs it if it still runs.
function _M.stop(pid, signal)
  os.execute("(kill -" .. signal .. " " .. pid .. ") 2>/dev/null")
  local deadline = socket.gettime() + 5
  while socket.gettime() < deadline and _M.alive(pid) do
    socket.sleep(0.02)
  end
  if _M.alive(pid) then os.execute("(kill -KILL " .. pid .. ") 2>/dev/null") end
end

return _M
