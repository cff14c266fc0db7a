-- SPDX-License-Identifier: MIT
-- Tasks: the one scheduler under every call of a client (client:spawn/step/timeout/fds).
-- A task is a coroutine. Inside a task of this client, a transfer goes to the transport's
-- curl multi and the task yields until it completes; a sleep is a timer. Outside any task,
-- a transfer or sleep is a task of its own stepped until it is done, so sequential calls,
-- batches and tasks share this scheduler, base.request's retry loop and one pacing. When no
-- task is running that task would be the only one, so the call goes straight to
-- transport:request / client.sleep (the same work without the bookkeeping).
-- Never called from a libcurl callback: completions come from transport:poll, which returns
-- only after libcurl has.
local errors = require "chatmaid.errors"

local _M = {}

local co_create, co_resume, co_yield = coroutine.create, coroutine.resume, coroutine.yield
local co_running, co_status = coroutine.running, coroutine.status
local co_close = coroutine.close          -- 5.4: runs the task's pending <close> variables
local unpack = table.unpack or unpack
local huge, floor, ceil = math.huge, math.floor, math.ceil

-- The most step_timeout() ever says while tasks run (a safety net for sockets fds() cannot
-- report).
_M.MAX_WAIT = 1

local WAIT = {}     -- yielded by the scheduler's own waits; any other yield means "next step"

local Sched = {}
Sched.__index = Sched
local Task = {}
local task_mt = { __index = Task }
function task_mt.__tostring(t)
  return "chatmaid.task (" .. (t.state == "done" and "done" or "running") .. ")"
end

local function pack(...) return { n = select("#", ...), ... } end

-- ---- timers: a binary heap of { at, task } ordered by at ----

local function heap_push(h, e)
  local i = #h + 1
  h[i] = e
  while i > 1 do
    local p = floor(i / 2)
    if h[p].at <= e.at then break end
    h[i], h[p] = h[p], e
    i = p
  end
end

local function heap_pop(h)
  local n = #h
  local top, last = h[1], h[n]
  h[n] = nil
  n = n - 1
  if n > 0 then
    local i = 1
    h[1] = last
    while true do
      local l = i * 2
      if l > n then break end
      local c = (l < n and h[l + 1].at < h[l].at) and l + 1 or l
      if h[c].at >= last.at then break end
      h[i], h[c] = h[c], last
      i = c
    end
  end
  return top
end

-- ---- the scheduler of one client ----

-- Where a client keeps its scheduler: client._sched, unless the client has a
-- _sched_slot(client[, s]) getter/setter: inside nginx (chatmaid.resty.detect) one client
-- serves every request and timer of a worker, each of which needs a scheduler of its own
-- (their tasks cannot be resumed from another request's handler).
local function get(client)
  local slot = client._sched_slot
  if slot then return slot(client) end
  return client._sched
end
_M.get = get

-- of(client) -> the client's scheduler, made on first use.
function _M.of(client)
  local s = get(client)
  if s then return s end
  local tr = client.transport
  s = setmetatable({
    client = client, tr = tr,
    multi = type(tr.add) == "function" and type(tr.poll) == "function",
    live = {}, n_live = 0,          -- tasks not done
    ready = {}, later = {},         -- to resume in this step / in the next one
    timers = {},
    inflight = {}, n_inflight = 0,  -- token -> task waiting on that transfer
    token = 0,
    current = nil,                  -- the task being resumed
    in_step = false,
    done_q = {}, dq_head = 1, dq_tail = 0,  -- { task, fn } on_done calls not made yet
    pool = {},                      -- idle task coroutines (worker)
    fdw = {}, n_fdw = 0,            -- wait_fd entries of waiting tasks (Redis sockets)
  }, Sched)
  if client._sched_slot then client._sched_slot(client, s) else client._sched = s end
  return s
end

-- A task's coroutine runs this loop: when fn returns it goes back to the scheduler's pool
-- and runs the next task's fn (a coroutine costs as much to make as the rest of a task).
-- A raise ends the coroutine; a cancelled task's coroutine is dropped.
local DONE = {}
local POOL_MAX = 64
local function worker(fn, a)
  while true do
    local r = pack(fn(unpack(a, 1, a.n)))
    fn, a = nil, nil   -- luacheck: ignore (let them go while the coroutine idles)
    fn, a = co_yield(DONE, r)
  end
end

function Sched:spawn(fn, ...)
  self.seq = (self.seq or 0) + 1
  local pool = self.pool
  local co
  local np = #pool
  if np > 0 then
    co = pool[np]
    pool[np] = nil
  else
    co = co_create(worker)
  end
  local t = setmetatable({ sched = self, co = co, state = "ready", fn = fn,
                           args = pack(...), seq = self.seq }, task_mt)
  self.live[t] = true
  self.n_live = self.n_live + 1
  self.ready[#self.ready + 1] = t
  local wake = self.wake
  if wake then wake("spawn") end
  return t
end

-- on_wake(client, fn | nil): fn(why) is called when work changes outside the loop's own
-- step: why = "spawn" (after), "cancel" or "close" (before the transfers are aborted, so an
-- event loop can stop watching sockets libcurl is about to close). One hook per client: the
-- event loop adapter that drives it (chatmaid.loop.luv). -> the previous hook.
function _M.on_wake(client, fn)
  local s = _M.of(client)
  local prev = s.wake
  s.wake = fn
  return prev
end

local function queue_callbacks(self, t)
  local cbs = t.callbacks
  if cbs then
    t.callbacks = nil
    local q = self.done_q
    for i = 1, #cbs do
      self.dq_tail = self.dq_tail + 1
      q[self.dq_tail] = { t, cbs[i] }
    end
  end
  local j = t.joiner
  if j then
    t.joiner = nil
    j.pending = j.pending - 1
    if j.pending == 0 and j.task.wait == j then
      j.task.wait = nil
      self.ready[#self.ready + 1] = j.task
    end
  end
end

local function finish(self, t, ok, ...)
  t.state = "done"
  self.live[t] = nil
  self.n_live = self.n_live - 1
  if ok then t.results = pack(...) else t.results, t.raised = { n = 2, nil, (...) }, true end
  queue_callbacks(self, t)
  local f = t.on_finish     -- internal (send_batch): runs at once, outside the task
  if f then
    t.on_finish = nil
    f(t)
  end
end

-- Internal clean-ups of a cancelled task (send_batch cancels its items with it).
local function run_cleanups(t)
  local cl = t.cleanups
  if cl then
    t.cleanups = nil
    for i = #cl, 1, -1 do cl[i]() end
  end
end

-- Drops whatever the task waits on: its transfer is aborted, its timer forgotten.
local function drop_wait(self, t)
  local w = t.wait
  t.wait = nil
  if type(w) == "number" then
    if self.inflight[w] == t then
      self.inflight[w] = nil
      self.n_inflight = self.n_inflight - 1
      if self.tr.cancel then self.tr:cancel(w) end
    end
  elseif type(w) == "table" and w.gate then
    w.gate:forget(t)
  elseif type(w) == "table" and w.fd then
    if self.fdw[w] then
      self.fdw[w] = nil
      self.n_fdw = self.n_fdw - 1
    end
  end
end

-- The error of a cancelled task. A send it made may have reached the server (its request
-- left, or is done): err.idempotency_key is that send's key (the last one the task made) and
-- err.maybe_sent says so; false only when no request of the task ever left.
local function cancel_error(t, why)
  return errors.new("cancelled", why, { retryable = false, idempotency_key = t.idempotency_key,
                                        maybe_sent = t.maybe_sent or false })
end

local function cancelled(self, t, why)
  t.cancelled = true
  drop_wait(self, t)
  finish(self, t, false, cancel_error(t, why))
  if co_close and co_status(t.co) == "suspended" then co_close(t.co) end
  run_cleanups(t)
end

local function after(self, t, ok, y, r)
  self.current = nil
  if y == DONE and ok then
    if t.state ~= "done" then
      t.state = "done"
      self.live[t] = nil
      self.n_live = self.n_live - 1
      t.results = r
      queue_callbacks(self, t)
      local f = t.on_finish
      if f then
        t.on_finish = nil
        f(t)
      end
    end
    local pool = self.pool
    if #pool < POOL_MAX then pool[#pool + 1] = t.co end
    return
  end
  if co_status(t.co) == "dead" then
    if t.state ~= "done" then finish(self, t, ok, y) end   -- fn raised: y is the error
  elseif t.state == "done" then
    -- cancelled while it ran (by itself, or by close() from inside): end it at this yield
    drop_wait(self, t)
    if co_close then co_close(t.co) end
  elseif y == WAIT then
    t.state = "waiting"
  else
    t.state = "ready"
    self.later[#self.later + 1] = t
  end
end

-- The scheduler whose task runs now, whichever client it belongs to (a task of one client
-- may make a blocking call of another, which steps that one's scheduler meanwhile).
local running_sched

local function resumed(prev, self, t, ok, y, r)
  running_sched = prev
  return after(self, t, ok, y, r)
end

local function resume(self, t, ...)
  self.current = t
  t.state = "running"
  local prev = running_sched
  running_sched = self
  return resumed(prev, self, t, co_resume(t.co, ...))
end

local function run_ready(self)
  while true do
    local q = self.ready
    if q[1] == nil then return end
    self.ready = {}
    for i = 1, #q do
      local t = q[i]
      if t.state == "ready" or (t.state == "waiting" and t.wait == nil) then
        local a = t.args
        if a then
          local fn = t.fn
          t.args, t.fn = nil, nil
          resume(self, t, fn, a)
        else
          resume(self, t)
        end
      end
    end
  end
end

local function run_timers(self, now)
  local h = self.timers
  while h[1] and h[1].at <= now do
    local e = heap_pop(h)
    local t = e.task
    if t and t.wait == e then
      t.wait = nil
      resume(self, t)
    end
  end
end

-- Head and tail indices, never #q: a hole at the queue's front would make #q a wrong
-- border on 5.1/LuaJIT, losing callbacks.
local function run_callbacks(self)
  local q = self.done_q
  while self.dq_head <= self.dq_tail do
    local i = self.dq_head
    local e = q[i]
    q[i] = nil
    self.dq_head = i + 1
    e[2](e[1])
  end
  self.dq_head, self.dq_tail = 1, 0
end

local function deliver(self, comps)
  local inflight = self.inflight
  for i = 1, #comps do
    local c = comps[i]
    local t = inflight[c.token]
    if t then
      inflight[c.token] = nil
      self.n_inflight = self.n_inflight - 1
      t.wait = nil
      if c.status then resume(self, t, c) else resume(self, t, nil, c.kind, c.message, c.code) end
    end
  end
end

-- Tasks wait on sockets of their own (wait_fd): one poll(2) over those and libcurl's
-- sockets, bounded by libcurl's timer, then libcurl does its part without waiting.
local function poll_fds(self, wait)
  local want, fn = {}, nil
  for w in pairs(self.fdw) do
    want[w.fd] = (want[w.fd] and want[w.fd] ~= w.ev) and "rw" or w.ev
    fn = w.poll
  end
  local ms = ceil(wait * 1000)
  if ms > 60000 then ms = 60000 end
  local curl = self.n_inflight > 0
  if curl and ms > 0 then
    local tms = self.tr.timeout and self.tr:timeout() or 0
    if tms >= 0 and tms < ms then ms = tms end
    if ms > 0 and self.tr.fds then
      for fd, ev in pairs(self.tr:fds()) do
        want[fd] = (want[fd] and want[fd] ~= ev) and "rw" or ev
      end
    end
  end
  local ready = fn(want, ms)
  local wake = {}
  for w in pairs(self.fdw) do
    if ready[w.fd] then wake[#wake + 1] = w end
  end
  table.sort(wake, function(a, b) return a.task.seq < b.task.seq end)
  for i = 1, #wake do
    local w = wake[i]
    local t = w.task
    if t.wait == w then
      t.wait = nil
      resume(self, t)
    end
  end
  if curl then deliver(self, self.tr:poll(0)) end
end

local function step(self, timeout)
  local client = self.client
  local later = self.later
  if later[1] then
    self.later = {}
    local r = self.ready
    for i = 1, #later do r[#r + 1] = later[i] end
  end
  local timers = self.timers
  if timers[1] then run_timers(self, client.now()) end
  run_ready(self)
  local wait = 0
  if timeout > 0 and self.later[1] == nil and self.n_live > 0 then
    wait = timeout
    if timers[1] then
      local d = timers[1].at - client.now()
      if d < wait then wait = d > 0 and d or 0 end
    end
  end
  if self.n_fdw > 0 then
    poll_fds(self, wait)
  elseif self.n_inflight > 0 then
    local ms = ceil(wait * 1000)
    if ms > 60000 then ms = 60000 end
    deliver(self, self.tr:poll(ms))
  elseif wait > 0 and timers[1] then
    client.sleep(wait)
  end
  if timers[1] then run_timers(self, client.now()) end
  run_ready(self)
  run_callbacks(self)
end

-- step(timeout) -> number of tasks still running. Raises what an on_done callback raised.
function Sched:step(timeout)
  if self.n_live == 0 and self.done_q[self.dq_head] == nil then return 0 end
  if self.in_step then
    error("chatmaid: step called from inside a task or an on_done callback", 3)
  end
  self.in_step = true
  local ok, e = pcall(step, self, timeout or 0)
  self.in_step = false
  if not ok then error(e, 0) end
  return self.n_live
end

-- Runs fn(...) as a task and steps until it is done: a blocking call while tasks run.
function Sched:block(fn, ...)
  local t = self:spawn(fn, ...)
  while t.state ~= "done" do self:step(huge) end
  local r = t.results
  if t.raised then error(r[2], 0) end
  return unpack(r, 1, r.n)
end

function Sched:timeout()
  if self.n_live == 0 then
    return self.done_q[self.dq_head] and 0 or nil
  end
  if self.ready[1] or self.later[1] then return 0 end
  local best = _M.MAX_WAIT
  local h = self.timers[1]
  if h then
    local d = h.at - self.client.now()
    if d < best then best = d > 0 and d or 0 end
  end
  if self.n_inflight > 0 and self.tr.timeout then
    local ms = self.tr:timeout()
    if ms >= 0 and ms / 1000 < best then best = ms / 1000 end
  end
  return best
end

function Sched:fds()
  local fds = (self.n_inflight > 0 and self.tr.fds) and self.tr:fds() or {}
  if self.n_fdw > 0 then
    for w in pairs(self.fdw) do
      local ev = fds[w.fd]
      fds[w.fd] = (ev and ev ~= w.ev) and "rw" or w.ev
    end
  end
  return fds
end

-- close(why): every running task ends as cancelled; their on_done callbacks run now.
function Sched:close(why)
  if self.wake then self.wake("close") end
  local list = {}
  for t in pairs(self.live) do list[#list + 1] = t end
  table.sort(list, function(a, b) return a.seq < b.seq end)
  for _, t in ipairs(list) do
    if t.state ~= "done" then cancelled(self, t, why) end
  end
  self.in_step = true
  local ok, e = pcall(run_callbacks, self)
  self.in_step = false
  if not ok then error(e, 0) end
end

-- ---- waits, for the client's code (base.request, poll.wait, batch) ----

local function in_task(client)
  local s = get(client)
  if not s then return nil end
  local t = s.current
  if t and t.co == co_running() then return s, t end
  return s, nil
end

-- current(client) -> the task of this client that is running now, or nil.
function _M.current(client)
  local _, t = in_task(client)
  return t
end

-- in_flight(task) -> true while the task waits for a transfer.
function _M.in_flight(t)
  return type(t.wait) == "number"
end

-- in_task(client) -> true when the running code is a task of this client.
function _M.in_task(client)
  local _, t = in_task(client)
  return t ~= nil
end

-- transfer(client, req) -> res | nil, kind, message, code  (the transport contract)
function _M.transfer(client, req)
  local s, t = in_task(client)
  if t then
    if req.idempotency_key then   -- from here the send may reach the server (cancel_error)
      t.idempotency_key, t.maybe_sent = req.idempotency_key, true
    end
    if not s.multi then return s.tr:request(req) end
    local token = s.token + 1
    s.token = token
    local ok, kind, msg = s.tr:add(token, req)
    if not ok then return nil, kind, msg end
    s.inflight[token] = t
    s.n_inflight = s.n_inflight + 1
    t.wait = token
    return co_yield(WAIT)
  end
  if s and s.n_live > 0 and s.multi and not s.in_step then
    return s:block(_M.transfer, client, req)
  end
  return client.transport:request(req)
end

-- running() -> client, task: the task running now, of whichever client; nil outside tasks.
function _M.running()
  local s = running_sched
  if not s then return nil end
  local t = s.current
  if t and t.co == co_running() then return s.client, t end
  return nil
end

-- wait_fd(fd, events, timeout, poll): inside a task (running()), yields until the socket fd
-- is ready for events ("r", "w") or `timeout` seconds passed; the caller checks which.
-- poll(want, ms) -> { [fd] = true }: the poll(2) the scheduler runs over { [fd] = events }
-- (chatmaid.redis.core.poll; the scheduler itself has no C part).
function _M.wait_fd(fd, events, timeout, poll)
  local s, t = running_sched, nil
  if s then t = s.current end
  if not t or t.co ~= co_running() then
    error("chatmaid: wait_fd called outside a task", 2)
  end
  local w = { fd = fd, ev = events, poll = poll, task = t, at = t.sched.client.now() + timeout }
  s.fdw[w] = true
  s.n_fdw = s.n_fdw + 1
  heap_push(s.timers, w)
  t.wait = w
  co_yield(WAIT)
  if s.fdw[w] then
    s.fdw[w] = nil
    s.n_fdw = s.n_fdw - 1
  end
end

-- sleep(client, seconds): a timer inside a task; client.sleep otherwise.
function _M.sleep(client, d)
  local s, t = in_task(client)
  if t then
    local e = { at = client.now() + d, task = t }
    heap_push(s.timers, e)
    t.wait = e
    co_yield(WAIT)
    return
  end
  if s and s.n_live > 0 and not s.in_step then return s:block(_M.sleep, client, d) end
  return client.sleep(d)
end

-- A gate: at most `n` holders at once; waiters enter in the order they asked.
local Gate = {}
Gate.__index = Gate

function _M.gate(n)
  return setmetatable({ free = n, waiters = {}, head = 1, tail = 0 }, Gate)
end

-- enter(client): wait for a place (inside a task; outside one the caller holds it at once).
function Gate:enter(client)
  if self.free > 0 and self.waiters[self.head] == nil then
    self.free = self.free - 1
    return
  end
  local _, t = in_task(client)
  if not t then error("chatmaid: gate entered outside a task", 2) end
  local w = { gate = self, task = t }
  self.tail = self.tail + 1
  self.waiters[self.tail] = w
  t.wait = w
  co_yield(WAIT)
end

function Gate:leave(client)
  local q = self.waiters
  while q[self.head] do
    local w = q[self.head]
    q[self.head] = nil
    self.head = self.head + 1
    if w.task.wait == w then   -- hand the place over
      w.task.wait = nil
      local s = get(client)
      s.ready[#s.ready + 1] = w.task
      return
    end
  end
  self.free = self.free + 1
end

function Gate:forget(t)
  for i = self.head, self.tail do
    local w = self.waiters[i]
    if w and w.task == t then w.task = { } end
  end
end

-- join(client, tasks): wait until every task of the list is done (inside a task: yields;
-- outside: steps).
function _M.join(client, list)
  local s, t = in_task(client)
  if not t then
    s = s or _M.of(client)
    local i = 1
    while list[i] do
      if list[i].state == "done" then i = i + 1 else s:step(huge) end
    end
    return
  end
  local j = { task = t, pending = 0 }
  for _, c in ipairs(list) do
    if c.state ~= "done" then
      if c.joiner then error("chatmaid: a task can be joined by one task at a time", 2) end
      c.joiner = j
      j.pending = j.pending + 1
    end
  end
  if j.pending == 0 then return end
  t.wait = j
  co_yield(WAIT)
end

-- An event a task (or a blocking caller) waits for: wait_event(client, ev) returns after
-- notify(client, ev) inside a task; outside any task it is one step of the scheduler (the
-- caller loops on its own condition).
function _M.event() return {} end

function _M.wait_event(client, ev, timeout)
  local s, t = in_task(client)
  if not t then
    (s or _M.of(client)):step(timeout or huge)
    return
  end
  ev.task = t
  t.wait = ev
  if timeout then           -- the same object in the timer heap: whichever comes first
    ev.at = client.now() + timeout
    heap_push(s.timers, ev)
  end
  co_yield(WAIT)
end

function _M.notify(client, ev)
  local t = ev.task
  if t and t.wait == ev then
    ev.task, t.wait = nil, nil
    local r = get(client).ready
    r[#r + 1] = t
  end
end

-- on_cancel(client, fn) -> remove(): fn() runs if the current task is cancelled (not when
-- it ends otherwise). Outside a task there is nothing to cancel: a no-op.
function _M.on_cancel(client, fn)
  local _, t = in_task(client)
  if not t then return function() end end
  local cl = t.cleanups
  if not cl then cl = {}; t.cleanups = cl end
  cl[#cl + 1] = fn
  return function()
    for i = #cl, 1, -1 do if cl[i] == fn then table.remove(cl, i) end end
  end
end

-- ---- tasks ----

function Task:done()
  return self.state == "done"
end

-- result() -> what fn returned | nil, err (what fn raised, or err.kind "cancelled")
function Task:result()
  if self.state ~= "done" then
    error("chatmaid: task:result() called before the task is done (check task:done())", 2)
  end
  local r = self.results
  return unpack(r, 1, r.n)
end

-- cancel() -> true | false (already done). Aborts the request in flight; the task ends with
-- nil, err{kind = "cancelled"}. From inside the task itself it ends at its next wait.
function Task:cancel()
  if self.state == "done" then return false end
  local s = self.sched
  if s.wake then s.wake("cancel") end
  if self.state == "running" then
    self.cancelled = true
    finish(s, self, false, cancel_error(self, "task cancelled"))
    run_cleanups(self)
  else
    cancelled(s, self, "task cancelled")
  end
  return true
end

-- on_done(fn): fn(task) is called from inside client:step once the task is done (at the
-- next step when it already is). Callbacks run in the order the tasks finished.
function Task:on_done(fn)
  if type(fn) ~= "function" then
    error("chatmaid: task:on_done expects a function (got " .. type(fn) .. ")", 2)
  end
  if self.state == "done" then
    local s = self.sched
    s.dq_tail = s.dq_tail + 1
    s.done_q[s.dq_tail] = { self, fn }
  else
    local cbs = self.callbacks
    if not cbs then cbs = {}; self.callbacks = cbs end
    cbs[#cbs + 1] = fn
  end
  return self
end

return _M
