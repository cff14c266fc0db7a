-- SPDX-License-Identifier: MIT
-- client:send_batch(items, opts): many sends at once, bounded by `concurrency`, paced by a
-- client-side limiter, each item with a stable idempotency key, retried on its own schedule
-- without blocking the others. Each item is a task of the client's scheduler (chatmaid.sched)
-- running the same send as client:send (base.request: one retry policy), so a batch inside
-- a task does not block, and outside one it is those tasks stepped until done.
local core = require "chatmaid.core"
local base = require "chatmaid.base"
local errors = require "chatmaid.errors"
local validate = require "chatmaid.validate"
local ratelimit = require "chatmaid.ratelimit"
local idempotency = require "chatmaid.idempotency"
local journal_mod = require "chatmaid.journal"
local sched = require "chatmaid.sched"
-- chatmaid.client is required where it is used: it installs these functions when it loads,
-- so requiring it at the top would be a cycle.

local _M = {}

_M.DEFAULT_CONCURRENCY = 8
_M.MAX_CONCURRENCY = 64
_M.DEFAULT_RATE_PER_MINUTE = 100
-- A 429 is flow control, not a failure of the item: it has its own retry budget, apart
-- from max_retries.
_M.RATE_LIMITED_RETRIES = 10
-- With should_stop, waits are cut into slices this long, so a stop request is seen soon.
_M.STOP_SLICE = 0.1

local PATH = "/v1/messages/send"
local OPTS = { concurrency = "number", batch_id = "string", rate_per_minute = "number|boolean",
               rate_limiter = "table", journal = "string", should_stop = "function",
               on_progress = "function", timeout = "number", max_retries = "number",
               max_retry_wait = "number" }
local ITEM = { from = "string", to = true, content = true, media_urls = true,
               idempotency_key = true }

-- keys(batch_id, items) -> the idempotency key of every item (idempotency.keys): its own
-- idempotency_key, else one derived from the batch id, the message (sender, recipient,
-- content, media) and its occurrence among identical items. send_batch{ batch_id } uses
-- exactly these, so a campaign split across processes keeps its keys when each part is sent
-- with its items' keys set from the whole list.
_M.keys = idempotency.keys

local function copy_err(e)
  return errors.new(e.kind, e.message, e)
end

local function check_options(o)
  if o == nil then return {} end
  base.check_table("send_batch", o, OPTS, nil, 4)
  local c = o.concurrency
  if c ~= nil and (c ~= math.floor(c) or c < 1 or c > _M.MAX_CONCURRENCY) then
    error("chatmaid: send_batch: concurrency must be an integer 1.." .. _M.MAX_CONCURRENCY, 3)
  end
  local r = o.rate_per_minute
  if r == true or (type(r) == "number" and (r ~= r or r < 1)) then
    error("chatmaid: send_batch: rate_per_minute must be a number >= 1, or false to "
          .. "disable the limiter", 3)
  end
  if o.batch_id == "" then error("chatmaid: send_batch: batch_id must not be empty", 3) end
  for _, k in ipairs{ "timeout", "max_retry_wait" } do
    if o[k] ~= nil and not (o[k] > 0 or (k == "max_retry_wait" and o[k] == 0)) then
      error("chatmaid: send_batch: " .. k .. " must be a positive number", 3)
    end
  end
  return o
end

-- Does resolving this sender make a request? (It then takes a token from the limiter.)
local function lookup_needed(self, from)
  if from == nil then from = self.default_from end
  if from == nil then return self._auto_from == nil end
  return from:sub(1, 1) == "+" and self._senders[from] == nil
end

-- client:send_batch(items, { concurrency = 8, batch_id = "...", rate_per_minute = 100,
--                            rate_limiter = <shared limiter: take(n) -> wait s>,
--                            journal = "path", should_stop = fn() -> reason | nil,
--                            on_progress = fn(done, total, result), timeout, max_retries,
--                            max_retry_wait })
--   -> results, summary | nil, err (kind "validation": the journal cannot be used)
-- items: array of send parameter tables (from, to, content, media_urls, idempotency_key).
-- results[i] = { message = msg, idempotency_key = k, replayed = true?, skipped = true? }
--            | { err = err, idempotency_key = k? }
-- in input order; an item with bad values fails alone (err.kind "validation"); a wrong
-- parameter name or type in any item raises before anything is sent.
-- A message returned for an item's key that is another message fails the item with
-- err.kind "idempotency_conflict". results[i].replayed: the API returned a message that
-- existed before this run (createdAt earlier than the start of the batch); .skipped: the
-- journal already held the item's message (no request).
-- summary = { sent (new messages), replayed, skipped, failed, interrupted, requests,
--             rate_limited (429s seen), retries, elapsed }.
-- Interrupts: should_stop() returning a truthy reason, on_progress or a hook raising, or
-- the journal failing to write stop new requests at once (waits are sliced); requests in
-- flight finish; then send_batch raises an error object (errors.is) with kind
-- "interrupted", .reason ("stop" | "callback" | "journal" | "closed": client:close() from a
-- callback, which also aborts the requests in flight), .cause (the reason returned, the
-- value raised, or the write error), .results and .summary (the unsent items have
-- err.kind "interrupted" and count in summary.interrupted).
function _M.send_batch(self, items, o)
  require("chatmaid.client")._check_open(self, "send_batch")
  if type(items) ~= "table" then
    error("chatmaid: send_batch expects an array of send parameter tables (got "
          .. type(items) .. ")", 2)
  end
  local n, not_seq = validate.sequence(items, "items")
  if not n then error("chatmaid: send_batch: " .. not_seq, 2) end
  o = check_options(o)
  for i = 1, n do
    local it = items[i]
    if type(it) ~= "table" then
      error("chatmaid: send_batch: items[" .. i .. "] must be a table of send parameters (got "
            .. type(it) .. ")", 2)
    end
    base.check_table("send_batch: items", it, ITEM, nil, 3, i)
  end

  -- the journal: what earlier runs confirmed, and this run's batch id
  local batch_id = o.batch_id
  local jstate, journal
  if o.journal then
    local problem
    jstate, problem = journal_mod.read(o.journal)
    if jstate then
      batch_id = batch_id or jstate.batch_id or journal_mod.new_batch_id()
      journal, problem = journal_mod.open(o.journal, batch_id, jstate)
    end
    if not journal then
      return base.validation("POST", PATH, "journal: " .. problem)
    end
  end

  local concurrency = o.concurrency or _M.DEFAULT_CONCURRENCY
  local timeout = o.timeout or self.timeout
  local max_retries = o.max_retries or self.max_retries
  local max_retry_wait = o.max_retry_wait or self.max_retry_wait
  local rate = o.rate_per_minute
  if rate == nil then rate = _M.DEFAULT_RATE_PER_MINUTE end
  local limiter = rate and ratelimit.new(rate) or nil
  if o.rate_limiter then limiter = ratelimit.shared(o.rate_limiter) end
  local call = { timeout = timeout, max_retries = max_retries, max_retry_wait = max_retry_wait }
  local results = setmetatable({}, core.array_mt)
  local summary = { sent = 0, replayed = 0, skipped = 0, failed = 0, interrupted = 0,
                    requests = 0, rate_limited = 0, retries = 0 }
  local started = self.now()
  local since = idempotency.iso(core.time())   -- older messages were replayed
  local done = 0
  local keys = batch_id and idempotency.keys(batch_id, items)

  -- ---- stopping: the first cause wins; after it, callbacks run protected and ignored ----
  local stop_reason, stop_cause
  local function stop(reason, cause)
    if not stop_reason then stop_reason, stop_cause = reason, cause end
  end
  local function callback(fn, ...)
    local ok, e = pcall(fn, ...)
    if not ok then stop("callback", e) end
  end
  local should_stop = o.should_stop
  local function check_stop()
    if should_stop and not stop_reason then
      local ok, r = pcall(should_stop)
      if not ok then stop("callback", r) elseif r then stop("stop", r) end
    end
    return stop_reason ~= nil
  end
  -- sleep(s), in slices when a stop can be requested; returns early once stopping
  local function nap(s)
    if not should_stop then
      if s > 0 then sched.sleep(self, s) end
      return
    end
    local deadline = self.now() + s
    while not check_stop() do
      local left = deadline - self.now()
      if left <= 0 then return end
      sched.sleep(self, math.min(left, _M.STOP_SLICE))
    end
  end
  local function record(ok, problem)
    if not ok then stop("journal", problem) end
  end

  local function report(i, result)
    results[i] = result
    done = done + 1
    if result.skipped then summary.skipped = summary.skipped + 1
    elseif result.replayed then summary.replayed = summary.replayed + 1
    elseif result.message then summary.sent = summary.sent + 1
    else summary.failed = summary.failed + 1 end
    if o.on_progress then callback(o.on_progress, done, n, result) end
  end

  local function pace()
    if not limiter then return end
    while not stop_reason do
      local now = self.now()
      local t, lerr = limiter:ready_at(now)
      if not t then return stop("limiter", lerr) end
      if t <= now then return limiter:take(now) end
      nap(t - now)
    end
  end

  local jobs, by_from, senders = {}, {}, {}
  local failures = {}
  local running = {}      -- item task -> job, while it runs
  local bug               -- { value } raised by an item or the scheduler: raised again
  local function run()
    -- 1. values, exactly as client:send checks them; items the journal confirmed
    for i = 1, n do
      local p = items[i]
      local problems = validate.send(p)
      if p.from ~= nil then
        problems[#problems + 1] = p.from:sub(1, 1) == "+" and validate.e164(p.from, "from")
                                  or validate.id(p.from, "from")
      end
      local key = keys and keys[i] or p.idempotency_key
      local known = key and jstate and jstate.confirmed[key]
      if #problems > 0 then
        local _, err = base.validation("POST", PATH, problems)
        err.index = i
        failures[#failures + 1] = { i, err }
      elseif known then
        local from = p.from or self.default_from
        local plus = from and from:sub(1, 1) == "+"
        local err = idempotency.conflict(p, known, key, from and not plus and from or nil,
                                         plus and from or nil, "POST", PATH)
        if err then
          err.index = i
          failures[#failures + 1] = { i, err, key }
        else
          if known.idempotencyKey == nil then known.idempotencyKey = key end
          failures[#failures + 1] = { i, nil, key, known }
        end
      else
        local job = { i = i, p = p, key = key or core.uuid4() }
        jobs[#jobs + 1] = job
        local f = p.from or by_from
        if senders[f] == nil then senders[f] = false end
      end
    end
    -- 2. each distinct sender resolved once (E.164 lookups are cached by the client too)
    for f in pairs(senders) do
      local from = f ~= by_from and f or nil
      if lookup_needed(self, from) then pace(); summary.requests = summary.requests + 1 end
      if stop_reason then break end
      local id, err = self:_sender(from, call)
      senders[f] = id and { id = id, number = self:_sender_number(id) } or { err = err }
    end
    local ready = {}
    for _, job in ipairs(jobs) do
      local s = senders[job.p.from or by_from]
      if not s then
        break                 -- stopped while resolving senders
      elseif s.err then
        local e = copy_err(s.err)
        e.index = job.i
        failures[#failures + 1] = { job.i, e, job.key }
      else
        job.from_id, job.from_number = s.id, s.number
        ready[#ready + 1] = job
      end
    end
    table.sort(failures, function(a, b) return a[1] < b[1] end)
    for _, f in ipairs(failures) do
      if f[4] then report(f[1], { message = f[4], idempotency_key = f[3], skipped = true })
      else report(f[1], { err = f[2], idempotency_key = f[3] }) end
    end

    -- 3. the sends: one task per item (made as places free up, so a large batch holds only
    -- the items in progress), each the same request as client:send (client:_send_from,
    -- base.request: one retry policy), under one gate of `concurrency` requests in flight
    -- and one pacer. Inside a task of this client nothing here blocks; outside one, the
    -- scheduler is stepped until the items are done.
    local sch = sched.of(self)
    local slots = sched.gate(concurrency)
    local pacer = limiter and sched.gate(1)   -- one task at a time asks the limiter
    local hold = -math.huge
    local feed
    local active = 0          -- item tasks started and not in a backoff sleep
    local gate = { rate_limited_retries = _M.RATE_LIMITED_RETRIES }
    function gate.enter(_, c)
      if stop_reason or c.closed then return false end
      slots:enter(c)
      if pacer then pacer:enter(c) end
      while not stop_reason do
        local now = c.now()
        local t, lerr = now, nil
        if limiter then t, lerr = limiter:ready_at(now) end
        if not t then
          stop("limiter", lerr)   -- a shared limiter gave up (Redis down for max_outage)
          break
        end
        if hold > t then t = hold end
        if t <= now then
          if limiter then limiter:take(now) end
          break
        end
        sched.sleep(c, t - now)
      end
      if pacer then pacer:leave(c) end
      if stop_reason then
        slots:leave(c)
        return false
      end
      if journal then
        -- the launch line reaches the file before the request can complete
        record(journal:launch(running[sched.current(c)].key))
        record(journal:flush())
      end
      return true
    end
    function gate.hook(_, fn, arg)
      callback(fn, arg)
      return not stop_reason
    end
    function gate.abort(_, c) slots:leave(c) end
    function gate.leave(_, c)
      summary.requests = summary.requests + 1
      slots:leave(c)
    end
    function gate.rate_limited(_, c, action, wait)
      summary.rate_limited = summary.rate_limited + 1
      if action == "retry" then
        local t = c.now() + wait
        if t > hold then hold = t end   -- everyone waits: the limit is per key
        if limiter and limiter.pause_until then
          limiter:pause_until(hold)       -- a shared limiter holds the other workers too
        end
      end
    end
    function gate.retry(_, c, err)
      if stop_reason then return false end
      summary.retries = summary.retries + 1
      running[sched.current(c)].last_err = err
      active = active - 1
      feed()
      return true
    end
    function gate.resume() active = active + 1 end
    local call_gate = { timeout = timeout, max_retries = max_retries,
                        max_retry_wait = max_retry_wait, gate = gate }

    local function send_item(job)
      local msg, err = self:_send_from(job.p, job.from_id, job.key, call_gate, job.from_number)
      if msg then
        if journal then record(journal:ok(job.key, msg)) end
        report(job.i, { message = msg, idempotency_key = job.key,
                        replayed = idempotency.created_before(msg, since) or nil })
      elseif err then
        err.index = job.i
        if journal then record(journal:fail(job.key, err)) end
        report(job.i, { err = err, idempotency_key = job.key })
      end           -- err == false: stopped before it left (reported as interrupted)
    end

    local next_new = 1
    local ev = sched.event()
    local function finished(t)
      running[t] = nil
      active = active - 1
      if t.raised and not t.cancelled and not bug then bug = { t.results[2] } end
      feed()
      sched.notify(self, ev)
    end
    function feed()
      while active < concurrency and next_new <= #ready and not stop_reason and not bug
            and not self.closed do
        local job = ready[next_new]
        local t = sch:spawn(send_item, job)
        next_new = next_new + 1
        active = active + 1
        running[t] = job
        t.on_finish = finished
      end
    end
    -- stopping: what waits for a place, the pacer or a backoff ends now; the requests in
    -- flight finish (their answers are reported)
    local function halt(all)
      for t in pairs(running) do
        if all or not sched.in_flight(t) then t:cancel() end
      end
    end
    local forget = sched.on_cancel(self, function()   -- the calling task was cancelled
      halt(true)
      if journal then journal:close() end
    end)
    feed()
    -- items left: running, or not started while nothing stops the batch
    local function left()
      return next(running) ~= nil
             or (next_new <= #ready and not stop_reason and not bug and not self.closed)
    end
    while left() do
      if should_stop then check_stop() end
      if bug then halt(true) elseif stop_reason then halt(false) end
      if not left() then break end
      ev = sched.event()
      sched.wait_event(self, ev, should_stop and _M.STOP_SLICE or nil)
    end
    forget()
    -- client:close() from a callback cancelled the items: the batch is interrupted
    if self.closed then stop("closed", "client closed") end
  end

  if sched.in_task(self) then
    run()                 -- no pcall around a task's waits: Lua 5.1 cannot yield through it
  else
    local ok, e = pcall(run)
    if not ok then bug = bug or { e } end
  end
  for t in pairs(running) do t:cancel() end
  if bug then
    if journal then journal:close() end
    error(bug[1], 0)
  end
  if journal then record(journal:close()) end
  summary.elapsed = self.now() - started
  if stop_reason then
    local job_of = {}
    for _, job in ipairs(jobs) do job_of[job.i] = job end
    for i = 1, n do
      if results[i] == nil then
        local job = job_of[i]
        results[i] = { idempotency_key = job and job.key, err = errors.new("interrupted",
          "not sent: the batch was interrupted", { index = i, method = "POST", path = PATH,
            idempotency_key = job and job.key, last = job and job.last_err }) }
        summary.interrupted = summary.interrupted + 1
      end
    end
    local why = stop_reason == "stop" and ("stop requested (" .. tostring(stop_cause) .. ")")
                or stop_reason == "journal" and tostring(stop_cause)
                or stop_reason == "closed" and "the client was closed"
                or stop_reason == "limiter"
                   and ("the rate limiter failed: " .. tostring(stop_cause))
                or ("a callback raised: " .. tostring(stop_cause))
    error(errors.new("interrupted", why .. "; " .. summary.interrupted .. " of " .. n
                     .. " items not sent (err.results, err.summary)",
                     { reason = stop_reason, cause = stop_cause, results = results,
                       summary = summary }), 2)
  end
  return results, summary
end

return _M
