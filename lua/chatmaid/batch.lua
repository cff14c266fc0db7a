-- SPDX-License-Identifier: MIT
-- client:send_batch(items, opts): many sends at once, bounded by `concurrency`, paced by a
-- client-side limiter, each item with a stable idempotency key, retried on its own schedule
-- without blocking the others. Each item is a task of the client's scheduler (chatmaid.sched)
-- running the same send as client:send (base.request: one retry policy), so a batch inside
-- a task does not block, and outside one it is those tasks stepped until done.
local base = require "chatmaid.base"
local idempotency = require "chatmaid.idempotency"
local ratelimit = require "chatmaid.ratelimit"
local sched = require "chatmaid.sched"
local plan = require "chatmaid.batch.plan"
local run = require "chatmaid.batch.run"
local result = require "chatmaid.batch.result"
-- chatmaid.client is required where it is used: it installs these functions when it loads,
-- so requiring it at the top would be a cycle.

local _M = {}

_M.DEFAULT_CONCURRENCY = 8
_M.MAX_CONCURRENCY = plan.MAX_CONCURRENCY
_M.DEFAULT_RATE_PER_MINUTE = 100
-- A 429 is flow control, not a failure of the item: it has its own retry budget, apart
-- from max_retries.
_M.RATE_LIMITED_RETRIES = 10
_M.STOP_SLICE = run.STOP_SLICE

-- keys(batch_id, items) -> the idempotency key of every item (idempotency.keys): its own
-- idempotency_key, else one derived from the batch id, the message (sender, recipient,
-- content, media) and its occurrence among identical items. send_batch{ batch_id } uses
-- exactly these, so a campaign split across processes keeps its keys when each part is sent
-- with its items' keys set from the whole list.
_M.keys = idempotency.keys

local function limiter_of(o)
  if o.rate_limiter then return ratelimit.shared(o.rate_limiter) end
  local rate = o.rate_per_minute
  if rate == nil then rate = _M.DEFAULT_RATE_PER_MINUTE end
  return rate and ratelimit.new(rate) or nil
end

-- The run inside a task; outside one, protected (Lua 5.1 cannot yield through a pcall, so
-- a task's waits are not wrapped).
local function drive(r, jobs, early, senders)
  local ready, failed = run.senders(r, jobs, senders, plan.BY_DEFAULT)
  for _, f in ipairs(failed) do early[#early + 1] = f end
  r.acc:early(early)
  r:sends(ready)
end

-- client:send_batch(items, { concurrency = 8, batch_id = "...", rate_per_minute = 100,
--                            rate_limiter = <shared limiter: take(n) -> wait s>,
--                            journal = "path", should_stop = fn() -> reason | nil,
--                            on_progress = fn(done, total, result), timeout, max_retries,
--                            max_retry_wait })
--   -> results, summary | nil, err (kind "validation": the journal cannot be used, err.reason
--      its problem: "busy" another writer holds it, "symlink", "not_regular", "not_owner",
--      "open", "io", "not_journal", "destination" its last run sent to another API or with
--      a key of another mode; kind "interrupted": the batch stopped, see below)
-- items: array of send parameter tables (from, to, content, media_urls, idempotency_key).
-- results[i] = { message = msg, idempotency_key = k, replayed = true?, skipped = true? }
--            | { err = err, idempotency_key = k? }
-- in input order; an item with bad values fails alone (err.kind "validation"); a wrong
-- parameter name or type in any item raises before anything is sent.
-- A message returned for an item's key that is another message fails the item with
-- err.kind "idempotency_conflict". results[i].replayed: the API returned a message that
-- existed before this run (createdAt earlier than the start of the batch); .skipped: the
-- journal already held the item's message (no request); with .other_key, under another key
-- of this batch (the sender written another way: an id one run, its number the next), and
-- .idempotency_key is that key.
-- summary = { sent (new messages), replayed, skipped, failed, interrupted, requests,
--             rate_limited (429s seen), retries, elapsed, already_sent (skipped + replayed:
--             the items an earlier run had sent) }.
-- Identity: the keys come from batch_id; without it, from the journal's batch id (a new
-- random one the first time, recorded in the journal); without either, every item gets a
-- random key, so only this run is protected from duplicates. journal: a path (taken here:
-- its lock before it is read, released at the end) or a journal from
-- chatmaid.journal.acquire (the caller's to close).
-- Interrupts: should_stop() returning a truthy reason, on_progress or a hook raising, or
-- the journal failing to write stop new requests at once (waits are sliced); requests in
-- flight finish; then send_batch raises an error object (errors.is) with kind
-- "interrupted", .reason ("stop" | "callback" | "journal" | "closed": client:close() from a
-- callback, which also aborts the requests in flight; "limiter": a shared rate_limiter gave
-- up, e.g. chatmaid.redis's after max_outage), .cause (the reason returned, the
-- value raised, or the write error), .results and .summary (the unsent items have
-- err.kind "interrupted", err.maybe_sent (an earlier attempt may have reached the server),
-- and count in summary.interrupted). Only programmer errors raise (bad arguments, or an
-- error raised by an item's send).
function _M.send_batch(self, items, o)
  require("chatmaid.client")._check_open(self, "send_batch")
  local n = plan.items(items)
  o = plan.options(o)
  local journal, batch_id = plan.journal(o, o.journal ~= nil and base.destination(self))
  if not journal and journal ~= false then return nil, batch_id end   -- batch_id: the err
  local stop = run.stopper(self, o.should_stop)
  local acc = result.new(n, o.on_progress, stop)
  local call = { timeout = o.timeout or self.timeout,
                 max_retries = o.max_retries or self.max_retries,
                 max_retry_wait = o.max_retry_wait or self.max_retry_wait }
  local r = run.new(self, { stop = stop, acc = acc, journal = journal, call = call,
                            limiter = limiter_of(o), rate_limited_retries =
                            _M.RATE_LIMITED_RETRIES,
                            concurrency = o.concurrency or _M.DEFAULT_CONCURRENCY })
  local started = self.now()
  local keys = batch_id and idempotency.keys(batch_id, items)
  local jobs, early, senders = plan.sort(self, items, n, keys,
    journal and journal.state.confirmed,
    journal and plan.orphans(journal.state, batch_id, keys, n))
  r.own_journal = journal and journal ~= o.journal  -- a path: acquired here, closed here
  if sched.in_task(self) then
    drive(r, jobs, early, senders)
  else
    local ok, e = pcall(drive, r, jobs, early, senders)
    if not ok then r.bug = r.bug or { e } end
  end
  for t in pairs(r.running) do t:cancel() end
  local own = r.own_journal
  if r.bug then
    if own then journal:close() end
    error(r.bug[1], 0)
  end
  if own then stop.record(journal:close())
  elseif journal then stop.record(journal:flush()) end
  return acc:finish(jobs, self.now() - started)
end

return _M
