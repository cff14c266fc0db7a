-- SPDX-License-Identifier: MIT
-- send_batch, part 2: the run. The stop state, the senders resolved once each, and the
-- sends: one task per item of the client's scheduler (chatmaid.sched), each the same
-- request as client:send (client:_send_from, base.request: one retry policy), under one
-- gate of `concurrency` requests in flight and one pacer. Inside a task of this client
-- nothing here blocks; outside one, the scheduler is stepped until the items are done.
local errors = require "chatmaid.errors"
local idempotency = require "chatmaid.idempotency"
local sched = require "chatmaid.sched"

local _M = {}

-- With should_stop, waits are cut into slices this long, so a stop request is seen soon.
_M.STOP_SLICE = 0.1

-- stopper(client, should_stop) -> the stop state: the first cause wins; after it, callbacks
-- run protected and are ignored. stop(reason, cause); callback(fn, ...); check() -> stopping?;
-- nap(s): sleep, in slices when a stop can be requested, returning early once stopping;
-- record(ok, problem): a journal write that failed stops the batch.
function _M.stopper(client, should_stop)
  local st = { should_stop = should_stop }
  function st.stop(reason, cause)
    if not st.reason then st.reason, st.cause = reason, cause end
  end
  function st.callback(fn, ...)
    local ok, e = pcall(fn, ...)
    if not ok then st.stop("callback", e) end
  end
  function st.check()
    if should_stop and not st.reason then
      local ok, r = pcall(should_stop)
      if not ok then st.stop("callback", r) elseif r then st.stop("stop", r) end
    end
    return st.reason ~= nil
  end
  function st.nap(s)
    if not should_stop then
      if s > 0 then sched.sleep(client, s) end
      return
    end
    local deadline = client.now() + s
    while not st.check() do
      local left = deadline - client.now()
      if left <= 0 then return end
      sched.sleep(client, math.min(left, _M.STOP_SLICE))
    end
  end
  function st.record(ok, problem)
    if not ok then st.stop("journal", problem) end
  end
  return st
end

-- Does resolving this sender make a request? (It then takes a token from the limiter.)
local function lookup_needed(self, from)
  if from == nil then from = self.default_from end
  if from == nil then return self._auto_from == nil end
  return from:sub(1, 1) == "+" and self._senders[from] == nil
end

-- senders(r, jobs, senders, by_default) -> ready: each distinct sender resolved once (E.164
-- lookups are cached by the client too); the jobs whose sender failed are reported failed.
function _M.senders(r, jobs, senders, by_default)
  local self, stop, acc = r.client, r.stop, r.acc
  for f in pairs(senders) do
    local from = f ~= by_default and f or nil
    if lookup_needed(self, from) then
      r:pace()
      acc.summary.requests = acc.summary.requests + 1
    end
    if stop.reason then break end
    local id, err = self:_sender(from, r.call)
    senders[f] = id and { id = id, number = self:_sender_number(id) } or { err = err }
  end
  local ready, failed = {}, {}
  for _, job in ipairs(jobs) do
    local s = senders[job.p.from or by_default]
    if not s then
      break                 -- stopped while resolving senders
    elseif s.err then
      local e = errors.new(s.err.kind, s.err.message, s.err)
      e.index = job.i
      failed[#failed + 1] = { job.i, { err = e, idempotency_key = job.key } }
    else
      job.from_id, job.from_number = s.id, s.number
      ready[#ready + 1] = job
    end
  end
  return ready, failed
end

local Run = {}
Run.__index = Run

-- new(client, fields) -> the run. fields: stop (stopper), acc (batch.result), journal (or
-- false), limiter (or nil), concurrency, call (timeout, max_retries, max_retry_wait),
-- rate_limited_retries. The run adds: running (item task -> job), active (item tasks
-- started and not in a backoff sleep), hold (no request before: a 429's retry_after).
function _M.new(client, fields)
  local r = setmetatable(fields, Run)
  r.client, r.running, r.active, r.next_new, r.hold = client, {}, 0, 1, -math.huge
  r.since = idempotency.iso(require("chatmaid.core").time())   -- older messages: replayed
  return r
end

-- pace(): one token from the limiter, waiting for it (outside the item tasks: senders).
function Run:pace()
  local limiter, c = self.limiter, self.client
  if not limiter then return end
  while not self.stop.reason do
    local now = c.now()
    local t, lerr = limiter:ready_at(now)
    if not t then return self.stop.stop("limiter", lerr) end   -- a shared limiter gave up
    if t <= now then return limiter:take(now) end
    self.stop.nap(t - now)
  end
end

-- The gate of base.request (see its comment): a place among `concurrency`, the pacer, the
-- 429 hold, the launch line in the journal before the request leaves.
local Gate = {}
Gate.__index = Gate

local function wait_turn(r, c)
  local limiter = r.limiter
  while not r.stop.reason do
    local now = c.now()
    local t, lerr = now, nil
    if limiter then t, lerr = limiter:ready_at(now) end
    if not t then
      -- a shared limiter gave up (Redis failing for its max_outage): the batch stops
      return r.stop.stop("limiter", lerr)
    end
    if r.hold > t then t = r.hold end
    if t <= now then
      if limiter then limiter:take(now) end
      return
    end
    sched.sleep(c, t - now)
  end
end

function Gate:enter(c)
  local r = self.run
  if r.stop.reason or c.closed then return false end
  r.slots:enter(c)
  if r.pacer then r.pacer:enter(c) end
  wait_turn(r, c)
  if r.pacer then r.pacer:leave(c) end
  if r.stop.reason then
    r.slots:leave(c)
    return false
  end
  local j = r.journal
  if j then
    -- the launch line reaches the file before the request can complete
    r.stop.record(j:launch(r.running[sched.current(c)].key))
    r.stop.record(j:flush())
  end
  return true
end

function Gate:hook(fn, arg)
  self.run.stop.callback(fn, arg)
  return not self.run.stop.reason
end

function Gate:abort(c) self.run.slots:leave(c) end

function Gate:leave(c)
  local s = self.run.acc.summary
  s.requests = s.requests + 1
  self.run.slots:leave(c)
end

function Gate:rate_limited(c, action, wait)
  local r = self.run
  r.acc.summary.rate_limited = r.acc.summary.rate_limited + 1
  if action == "retry" then
    local t = c.now() + wait
    if t > r.hold then r.hold = t end   -- everyone waits: the limit is per key
    if r.limiter and r.limiter.pause_until then
      r.limiter:pause_until(r.hold)     -- a shared limiter holds the other workers too
    end
  end
end

function Gate:retry(c, err)
  local r = self.run
  if r.stop.reason then return false end
  r.acc.summary.retries = r.acc.summary.retries + 1
  r.running[sched.current(c)].last_err = err
  r.active = r.active - 1
  r:feed()
  return true
end

function Gate:resume() self.run.active = self.run.active + 1 end

-- send(job): one item, as client:send sends it; its outcome reported and journaled.
function Run:send(job)
  local msg, err = self.client:_send_from(job.p, job.from_id, job.key, self.call_gate,
                                          job.from_number)
  local j, acc = self.journal, self.acc
  if msg then
    if j then self.stop.record(j:ok(job.key, msg)) end
    acc:report(job.i, { message = msg, idempotency_key = job.key,
                        replayed = idempotency.created_before(msg, self.since) or nil })
  elseif err then
    err.index = job.i
    if j then self.stop.record(j:fail(job.key, err)) end
    acc:report(job.i, { err = err, idempotency_key = job.key })
  end           -- err == false: stopped before it left (reported as interrupted)
end

-- feed(): start item tasks while places are free (a large batch holds only the items in
-- progress).
function Run:feed()
  local ready, c = self.ready, self.client
  while self.active < self.concurrency and self.next_new <= #ready and not self.stop.reason
        and not self.bug and not c.closed do
    local job = ready[self.next_new]
    local t = self.sched:spawn(self.send, self, job)
    self.next_new = self.next_new + 1
    self.active = self.active + 1
    self.running[t] = job
    t.on_finish = self.finished
  end
end

-- halt(all): what waits for a place, the pacer or a backoff ends now; with all, the
-- requests in flight too (else they finish and their answers are reported).
function Run:halt(all)
  for t in pairs(self.running) do
    if all or not sched.in_flight(t) then t:cancel() end
  end
end

-- items left: running, or not started while nothing stops the batch
function Run:left()
  return next(self.running) ~= nil
         or (self.next_new <= #self.ready and not self.stop.reason and not self.bug
             and not self.client.closed)
end

-- sends(ready): every ready job sent (or stopped); self.bug = { value } when an item task
-- raised (a programmer error: send_batch raises it again).
function Run:sends(ready)
  local c = self.client
  self.ready, self.sched = ready, sched.of(c)
  self.slots = sched.gate(self.concurrency)
  self.pacer = self.limiter and sched.gate(1)   -- one task at a time asks the limiter
  local gate = setmetatable({ run = self, rate_limited_retries = self.rate_limited_retries },
                            Gate)
  self.call_gate = { timeout = self.call.timeout, max_retries = self.call.max_retries,
                     max_retry_wait = self.call.max_retry_wait, gate = gate }
  local ev = sched.event()
  self.finished = function(t)
    local job = self.running[t]
    self.running[t] = nil
    if job then job.maybe_sent = t.maybe_sent or false end
    self.active = self.active - 1
    if t.raised and not t.cancelled and not self.bug then self.bug = { t.results[2] } end
    self:feed()
    sched.notify(c, ev)
  end
  local forget = sched.on_cancel(c, function()   -- the calling task was cancelled
    self:halt(true)
    local j = self.journal
    if self.own_journal then j:close() elseif j then j:flush() end
  end)
  self:feed()
  local should_stop = self.stop.should_stop
  while self:left() do
    if should_stop then self.stop.check() end
    if self.bug then self:halt(true) elseif self.stop.reason then self:halt(false) end
    if not self:left() then break end
    ev = sched.event()
    sched.wait_event(c, ev, should_stop and _M.STOP_SLICE or nil)
  end
  forget()
  -- client:close() from a callback cancelled the items: the batch is interrupted
  if c.closed then self.stop.stop("closed", "client closed") end
end

return _M
