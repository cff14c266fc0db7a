-- SPDX-License-Identifier: MIT

--- Drive a client from a libuv loop: chatmaid.loop.luv(client[, uv[, opts]])
--   (docs/games-and-apps.md).
-- chatmaid.loop.luv(client[, uv[, opts]]) -> loop: drives a client's tasks from a libuv event
-- loop (luv; Neovim passes vim.uv or vim.loop). The client's sockets are watched, a timer
-- follows step_timeout(), and client:step(0) runs when either fires; spawn, cancel and close
-- wake it. loop:stop() closes every handle it made (also done by client:close()).
--
-- Sockets come and go inside step(): libcurl closes them and may reuse a number for a new
-- connection in the same step. So every socket is watched again after every step:
--   "epoll" (default on Linux): one poll handle on an epoll descriptor of the C core
--     (core.fdwatch) holding the sockets; a socket's error (a reset, a refused connect) is
--     libcurl's to read, never a poll error that luv prints to stderr as "EBADF".
--   "sockets" (elsewhere): a poll handle per socket, all stopped before step() and started
--     after it, so a closed socket is never watched and a reused number is registered anew.
--     luv itself prints a poll error ("EBADF: bad file descriptor") when a socket fails.
-- When no task runs, no handle is active: uv.run() returns once the work is done; a later
-- spawn starts the timer again (call uv.run() again outside a host that runs it for you).
-- on_done callbacks run inside step(), i.e. inside this loop's callback: in Neovim use
-- vim.schedule() there for UI work. A raise from one reaches opts.on_error(err) when given,
-- otherwise luv's callback error handling, with the loop armed again first.
-- @module chatmaid.loop.luv
local core = require "chatmaid.core"
local sched = require "chatmaid.sched"

local ceil = math.ceil

local Loop = {}
Loop.__index = Loop
Loop.__tostring = function(self)
  return "chatmaid.loop.luv (" .. (self.stopped and "stopped" or self.backend) .. ")"
end

local function close_handle(h)
  if h and not h:is_closing() then h:close() end
end

-- ---- watching the client's sockets ----

-- epoll: one uv poll handle on the fdwatch descriptor, active only while sockets are watched.
local function epoll_before(self)
  self.fw:drain()
end

local function epoll_watch(self, want)
  local fw, watched = self.fw, self.watched
  for fd in pairs(watched) do
    if not want[fd] then
      fw:set(fd, nil)
      watched[fd] = nil
    end
  end
  local any, problem = false, nil
  for fd, ev in pairs(want) do
    local ok, msg = fw:set(fd, ev)
    if ok then
      watched[fd], any = ev, true
    elseif ok == nil then
      problem = msg         -- out of watches: the timer still steps at least once a second
    end
  end
  if any ~= self.poll_on then
    self.poll_on = any
    if any then self.poll:start("r", self.on_event) else self.poll:stop() end
  end
  return problem
end

local function epoll_close(self)
  close_handle(self.poll)   -- uv_close stops watching first, so closing the fd next is safe
  self.fw:close()
end

-- sockets: a uv poll handle per socket. Stopped before anything can close a socket (step,
-- cancel, close), started again after the step for the sockets libcurl still waits on.
local function sockets_before(self)
  for _, h in pairs(self.watched) do h:stop() end
end

local function sockets_watch(self, want)
  local uv, watched = self.uv, self.watched
  for fd, h in pairs(watched) do
    if not want[fd] then
      close_handle(h)
      watched[fd] = nil
    end
  end
  local problem
  for fd, ev in pairs(want) do
    local h = watched[fd]
    if not h then
      local msg
      h, msg = uv.new_socket_poll(fd)
      if h then watched[fd] = h else problem = msg end
    end
    if h then h:start(ev, self.on_event) end
  end
  return problem
end

local function sockets_close(self)
  for fd, h in pairs(self.watched) do
    close_handle(h)
    self.watched[fd] = nil
  end
end

local BACKENDS = {
  epoll = { before = epoll_before, watch = epoll_watch, close = epoll_close },
  sockets = { before = sockets_before, watch = sockets_watch, close = sockets_close },
}

-- ---- driving ----

-- After a step: watch what the client waits on, and time its next step (nil: no work, so
-- no active handle).
local function arm(self)
  local client = self.client
  local problem = self.be.watch(self, client:fds())
  local timer = self.timer
  timer:stop()
  local wait = client:step_timeout()
  if wait then timer:start(ceil(wait * 1000), 0, self.on_event) end
  return problem
end

local function drive(self)
  if self.stopped then return end
  self.woken = false
  self.be.before(self)
  self.in_step = true
  local ok, err = pcall(self.client.step, self.client, 0)
  self.in_step = false
  -- not after a close or stop() from inside the step (an on_done callback)
  if not self.stopped then
    local problem = arm(self)
    if ok and problem then
      ok, err = false, "chatmaid.loop.luv: " .. tostring(problem)
    end
  end
  if not ok then
    if self.on_error then self.on_error(err) else error(err, 0) end
  end
end

-- spawn / cancel / close from outside the loop's step.
local function wake(self, why)
  if self.stopped then return end
  if why == "close" then return self:stop() end
  if self.in_step then return end          -- arm() runs right after the step
  if why == "cancel" then self.be.before(self) end   -- libcurl closes the task's socket now
  if not self.woken then
    self.woken = true
    self.timer:stop()
    self.timer:start(0, 0, self.on_event)
  end
end

--- Stop driving the client: closes every handle the adapter made. Idempotent.
-- stop() -> true. Idempotent. Closes the timer and poll handles (they are gone after the
-- loop's next iteration, as libuv closes handles); the client stays open and usable.
-- @treturn boolean true
function Loop:stop()
  if self.stopped then return true end
  self.stopped = true
  sched.on_wake(self.client, nil)
  close_handle(self.timer)
  self.be.close(self)
  return true
end

local OPTS = { watch = true, on_error = true }

local function start(client, uv, opts)
  if type(client) ~= "table" or type(client.spawn) ~= "function"
     or type(client.step_timeout) ~= "function" then
    error("chatmaid.loop.luv expects a chatmaid client (got " .. type(client) .. ")", 3)
  end
  if client.closed then error("chatmaid.loop.luv: the client is closed", 3) end
  opts = opts or {}
  if type(opts) ~= "table" then
    error("chatmaid.loop.luv expects opts as a table (got " .. type(opts) .. ")", 3)
  end
  for k in pairs(opts) do
    if not OPTS[k] then
      error("chatmaid.loop.luv: unknown option '" .. tostring(k) .. "' (watch, on_error)", 3)
    end
  end
  local backend = opts.watch or (core.fdwatch and "epoll" or "sockets")
  if not BACKENDS[backend] or (backend == "epoll" and not core.fdwatch) then
    error("chatmaid.loop.luv: watch must be \"sockets\"" .. (core.fdwatch and " or \"epoll\"" or
          " (no epoll here)") .. " (got " .. tostring(backend) .. ")", 3)
  end
  if opts.on_error ~= nil and type(opts.on_error) ~= "function" then
    error("chatmaid.loop.luv: on_error must be a function", 3)
  end
  if uv == nil then
    -- optional: only this adapter needs luv, and Neovim passes its own (vim.uv)
    local ok, m = pcall(require, "luv")
    if not ok then
      error("chatmaid.loop.luv: luv is not installed (Debian: lua-luv; LuaRocks: luv); "
            .. "pass the uv module as the second argument (Neovim: vim.uv)", 3)
    end
    uv = m
  end
  local s = sched.of(client)
  if s.wake then
    error("chatmaid.loop.luv: this client is already driven by an event loop "
          .. "(stop that one first)", 3)
  end
  local self = setmetatable({ client = client, uv = uv, backend = backend,
                              be = BACKENDS[backend], on_error = opts.on_error,
                              watched = {}, poll_on = false, woken = false,
                              in_step = false, stopped = false }, Loop)
  if backend == "epoll" then
    local fw, msg = core.fdwatch()
    if not fw then return nil, "chatmaid.loop.luv: " .. msg end
    local poll, why = uv.new_poll(fw:fd())
    if not poll then
      fw:close()
      return nil, "chatmaid.loop.luv: " .. tostring(why)
    end
    self.fw, self.poll = fw, poll
  end
  self.timer = uv.new_timer()
  self.on_event = function() return drive(self) end
  sched.on_wake(client, function(why) return wake(self, why) end)
  arm(self)          -- tasks spawned before the loop was made run at its first iteration
  return self
end

--- Start driving a client from a libuv loop (the module is called as a function).
-- @function chatmaid.loop.luv
-- @tparam table client a chatmaid client
-- @tparam[opt] table uv the luv module (default: luv, loaded if installed; Neovim: vim.uv or
--   vim.loop)
-- @tparam[opt] table opts on_error (function(err): what an on_done callback raised), watch ("epoll"
--   on Linux, else "sockets")
-- @treturn ?table the loop (loop:stop()), or nil
-- @treturn ?string the message when the kernel refuses an epoll descriptor
-- @raise for a closed client, bad options, or a client another loop already drives

-- A module table called like a function: chatmaid.loop.luv(client, uv). Not a tail call, so
-- start's errors at level 3 name the caller on every Lua (5.1 drops a tail call's position).
return setmetatable({}, {
  __call = function(_, client, uv, opts)
    local loop, err = start(client, uv, opts)
    return loop, err
  end,
})
