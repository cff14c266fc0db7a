-- SPDX-License-Identifier: MIT
-- Coroutine scheduler over socket.select: each task yields when it would block, so a slow
-- or delayed exchange never holds up the others.
local socket = require("socket")

local _M = {}
local mt = { __index = _M }

function _M.new(log)
  return setmetatable({
    readers = {}, writers = {},   -- socket -> { co, deadline }
    sleepers = {},                -- co -> deadline
    listeners = {},               -- socket -> function(sock) (readable callback)
    on_error = setmetatable({}, { __mode = "k" }), -- co -> cleanup when the task raises
    log = log or function() end,
    running = true,
  }, mt)
end

local function resume(self, co, ...)
  local ok, kind, a, b = coroutine.resume(co, ...)
  if not ok then
    -- no pcall inside tasks: Lua 5.1 cannot yield across it, so errors land here
    local on_error = self.on_error[co]
    self.on_error[co] = nil
    self.log("task error: " .. tostring(kind))
    if on_error then pcall(on_error, kind) end
    return
  end
  if coroutine.status(co) == "dead" then self.on_error[co] = nil; return end
  if kind == "read" then
    self.readers[a] = { co, b }
  elseif kind == "write" then
    self.writers[a] = { co, b }
  elseif kind == "sleep" then
    self.sleepers[co] = a
  else
    self.log("task yielded unknown request " .. tostring(kind))
  end
end

-- spawn(fn, ...) starts a task now; it runs until its first wait.
function _M:spawn(fn, ...)
  resume(self, coroutine.create(fn), ...)
end

-- spawn_guarded(on_error, fn, ...) is spawn with a cleanup called if the task raises.
function _M:spawn_guarded(on_error, fn, ...)
  local co = coroutine.create(fn)
  self.on_error[co] = on_error
  resume(self, co, ...)
end

-- Inside a task: wait_read(sock, deadline) -> true when readable, false on deadline.
function _M.wait_read(sock, deadline) return coroutine.yield("read", sock, deadline) end
function _M.wait_write(sock, deadline) return coroutine.yield("write", sock, deadline) end

-- Inside a task: sleep(seconds).
function _M.sleep(seconds)
  return coroutine.yield("sleep", socket.gettime() + (seconds or 0))
end

-- listen(sock, fn): call fn(sock) whenever sock is readable (used for the server socket).
function _M:listen(sock, fn)
  self.listeners[sock] = fn
end

-- forget(sock): drop any wait on sock (it is being closed).
function _M:forget(sock)
  self.readers[sock], self.writers[sock], self.listeners[sock] = nil, nil, nil
end

-- step(max_wait): one select round; runs whatever became ready.
function _M:step(max_wait)
  local now = socket.gettime()
  local wait = max_wait or 1
  local rl, wl = {}, {}
  for s in pairs(self.listeners) do rl[#rl + 1] = s end
  for s, w in pairs(self.readers) do
    rl[#rl + 1] = s
    if w[2] and w[2] - now < wait then wait = w[2] - now end
  end
  for s, w in pairs(self.writers) do
    wl[#wl + 1] = s
    if w[2] and w[2] - now < wait then wait = w[2] - now end
  end
  for _, dl in pairs(self.sleepers) do
    if dl - now < wait then wait = dl - now end
  end
  if wait < 0 then wait = 0 end
  local r, w = socket.select(rl, wl, wait)
  for _, s in ipairs(r or {}) do
    local fn = self.listeners[s]
    if fn then
      fn(s)
    else
      local e = self.readers[s]
      if e then self.readers[s] = nil; resume(self, e[1], true) end
    end
  end
  for _, s in ipairs(w or {}) do
    local e = self.writers[s]
    if e then self.writers[s] = nil; resume(self, e[1], true) end
  end
  now = socket.gettime()
  local due = {}
  for co, dl in pairs(self.sleepers) do
    if dl <= now then due[#due + 1] = { dl, co } end
  end
  table.sort(due, function(x, y) return x[1] < y[1] end)
  for _, d in ipairs(due) do
    self.sleepers[d[2]] = nil
    resume(self, d[2], true)
  end
  for _, set in ipairs({ self.readers, self.writers }) do
    local expired = {}
    for s, e in pairs(set) do
      if e[2] and e[2] <= now then expired[#expired + 1] = s end
    end
    for _, s in ipairs(expired) do
      local e = set[s]
      set[s] = nil
      resume(self, e[1], false)
    end
  end
end

return _M
