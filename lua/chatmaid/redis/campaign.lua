-- SPDX-License-Identifier: MIT

--- Shared campaigns: workers on many machines send one list together, each item once.
-- Shared campaigns: several processes on several machines work through one list of sends
-- together, each item sent once, with the idempotency keys a single-machine
-- send_batch(items, { batch_id = id }) would use. Redis holds a queue of item numbers:
--   pending (list)  numbers not yet claimed
--   leased  (zset)  numbers a worker is sending, scored with the lease's expiry (server time)
--   done    (hash)  number -> outcome ("sent <message id>" | "failed <kind> <message>")
-- A worker claims a few numbers at a time (a script: pop from pending, lease them), sends
-- them with client:send_batch, marks each done as its result arrives and renews the leases
-- of the rest while it makes progress. A worker that dies stops renewing: once its leases
-- expire, the next claim puts its unfinished numbers back at the front of pending and
-- another worker sends them with the same keys. The API answers a key it already has with
-- the message it created, so an item the dead worker had sent is not sent twice.
--   meta    (hash)  n, fp (the keys' fingerprint), epoch (made when the state was built)
-- Redis may lose all or part of this (restart without persistence, FLUSHDB, failover,
-- eviction): every script checks the epoch and that pending + leased + done hold n items,
-- and the worker returns err.kind "state_lost" instead of finishing (DESIGN.md).
-- @module chatmaid.redis.campaign
local conn = require "chatmaid.redis.conn"
local options = require "chatmaid.options"
local errors = require "chatmaid.errors"
local batch = require "chatmaid.batch"
local core = require "chatmaid.core"

local _M = { DEFAULT_LEASE = 30, DEFAULT_POLL = 0.5 }
local mt = { __index = _M }

local function fmt(x) return string.format("%.6f", x) end

local function now_of()
  return [[
local t = redis.call("TIME")
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
]]
end

-- The campaign's identity: meta holds n (item count), fp (fingerprint of the keys) and
-- epoch (a random id made when the state was created). Every later script names the epoch
-- it works in: a missing meta or another epoch means Redis lost the state the worker was
-- working in (restart without persistence, FLUSHDB, failover to a lagging replica, an
-- evicted key), which is reported, never read as "nothing left to do".
local CHECK_EPOCH = [[
local ep = redis.call("HGET", KEYS[1], "epoch")
if ep ~= ARGV[1] then return "lost " .. tostring(ep or "none") end
]]

-- KEYS: meta, pending, leased, done, owner. ARGV: n, fingerprint, epoch known to the
-- worker ("" = none), "resume" | "", new epoch, destination (chatmaid.journal.destination).
-- -> "created <epoch>" | "joined <epoch>" | "mismatch <n> <fingerprint>" | "lost"
--    | "elsewhere <destination>"
-- A worker that knew an epoch and finds no meta gets "lost" unless it asks to resume; a
-- resume also rebuilds a state whose pending, leased and done no longer add up to n. The
-- outcomes are those of one destination (key mode and API host): a worker sending elsewhere
-- (the campaign tried with a test key, then run live under the same id) is refused, not
-- told "done" for items never sent there. A meta without "to" (older, or made by a
-- stand-in client whose destination is unknown: "") is not checked, nor is such a worker.
_M.INIT = [[
local meta = redis.call("HMGET", KEYS[1], "n", "fp", "epoch", "to")
if meta[1] then
  if meta[4] and ARGV[6] ~= "" and meta[4] ~= ARGV[6] then return "elsewhere " .. meta[4] end
  if meta[1] ~= ARGV[1] or meta[2] ~= ARGV[2] then
    return "mismatch " .. meta[1] .. " " .. meta[2]
  end
  local held = redis.call("LLEN", KEYS[2]) + redis.call("ZCARD", KEYS[3])
               + redis.call("HLEN", KEYS[4])
  if ARGV[4] ~= "resume" or held == tonumber(meta[1]) then
    return "joined " .. tostring(meta[3])
  end
elseif ARGV[3] ~= "" and ARGV[4] ~= "resume" then
  return "lost"
end
redis.call("DEL", KEYS[2], KEYS[3], KEYS[4], KEYS[5])
redis.call("HSET", KEYS[1], "n", ARGV[1], "fp", ARGV[2], "epoch", ARGV[5])
if ARGV[6] ~= "" then redis.call("HSET", KEYS[1], "to", ARGV[6]) end
local n, chunk = tonumber(ARGV[1]), {}
for i = 1, n do
  chunk[#chunk + 1] = i
  if #chunk == 1000 or i == n then
    redis.call("RPUSH", KEYS[2], unpack(chunk))
    chunk = {}
  end
end
return "created " .. ARGV[5]
]]

-- KEYS: meta, pending, leased, done, owner. ARGV: epoch, count, lease seconds, worker.
-- -> { {claimed numbers}, returned (expired leases put back), pending, leased, done,
--      "seconds until the next lease expires" | "", n } | "lost <epoch>"
-- Every item is in exactly one of pending, leased and done: when the three do not add up
-- to n a key was lost (evicted, or a partial copy), and the campaign is not finished.
_M.CLAIM = CHECK_EPOCH .. now_of() .. [[
local back = redis.call("ZRANGEBYSCORE", KEYS[3], "-inf", now)
for _, i in ipairs(back) do
  redis.call("ZREM", KEYS[3], i)
  if redis.call("HEXISTS", KEYS[4], i) == 0 then redis.call("LPUSH", KEYS[2], i) end
end
local n = tonumber(redis.call("HGET", KEYS[1], "n"))
local p, l, d = redis.call("LLEN", KEYS[2]), redis.call("ZCARD", KEYS[3]),
                redis.call("HLEN", KEYS[4])
if p + l + d ~= n then return "lost " .. ARGV[1] .. " " .. (p + l + d) .. "/" .. n end
local got, lease = {}, tonumber(ARGV[3])
for _ = 1, tonumber(ARGV[2]) do
  local i = redis.call("LPOP", KEYS[2])
  if not i then break end
  redis.call("ZADD", KEYS[3], now + lease, i)
  redis.call("HSET", KEYS[5], i, ARGV[4])
  got[#got + 1] = i
end
local nxt = redis.call("ZRANGE", KEYS[3], 0, 0, "WITHSCORES")
return { got, #back, redis.call("LLEN", KEYS[2]), redis.call("ZCARD", KEYS[3]),
         redis.call("HLEN", KEYS[4]),
         nxt[2] and string.format("%.3f", tonumber(nxt[2]) - now) or "", n }
]]

-- KEYS: meta, leased, owner. ARGV: epoch, lease seconds, worker, numbers...
-- -> renewed count | "lost <epoch>"
-- Only leases still held by this worker are extended (an expired one may be another's now).
_M.RENEW = CHECK_EPOCH .. now_of() .. [[
local n = 0
for k = 4, #ARGV do
  local i = ARGV[k]
  if redis.call("HGET", KEYS[3], i) == ARGV[3] and redis.call("ZSCORE", KEYS[2], i) then
    redis.call("ZADD", KEYS[2], now + tonumber(ARGV[2]), i)
    n = n + 1
  end
end
return n
]]

-- KEYS: meta, leased, done. ARGV: epoch, number, outcome
-- -> 1 (first outcome) | 0 (already done) | "lost <epoch>" (nothing written: an outcome
-- must never land in a state rebuilt without this item's claim)
_M.DONE = CHECK_EPOCH .. [[
redis.call("ZREM", KEYS[2], ARGV[2])
return redis.call("HSETNX", KEYS[3], ARGV[2], ARGV[3])
]]

-- KEYS: done, pending. ARGV: none -> numbers put back. Failed items get another go.
_M.RETRY_FAILED = [[
local all = redis.call("HGETALL", KEYS[1])
local n = 0
for k = 1, #all, 2 do
  if string.sub(all[k + 1], 1, 7) == "failed " then
    redis.call("HDEL", KEYS[1], all[k])
    redis.call("RPUSH", KEYS[2], all[k])
    n = n + 1
  end
end
return n
]]

local OPTS = { url = "string", id = "string", lease = "number", timeout = "number",
               connect_timeout = "number", poll = "number", worker = "string",
               sleep = "function" }

--- Make a campaign (chatmaid.redis.campaign).
-- new{ url, id, lease = 30, poll = 0.5, timeout = 1, worker = "<host>:<random>" }
-- id names the campaign (and is the batch id of its keys): every worker passes the same
-- id and the same items. Raises on bad options.
-- @tparam table o url, id (required), lease, poll, timeout, connect_timeout, worker, sleep
-- @treturn table the campaign
-- @raise on a bad option
function _M.new(o)
  local W = "chatmaid.redis.campaign"
  options.check(W, o, OPTS, 3)
  if o.url == nil then error(W .. ": url is required (redis://host:port/db)", 3) end
  if o.id == nil or o.id == "" then error(W .. ": id is required (the campaign's name)", 3) end
  local lease = o.lease or _M.DEFAULT_LEASE
  if lease ~= lease or lease < 1 then error(W .. ": lease must be >= 1 second", 3) end
  local poll = o.poll or _M.DEFAULT_POLL
  if poll ~= poll or poll <= 0 then error(W .. ": poll must be a positive number", 3) end
  local base = "chatmaid:camp:{" .. o.id .. "}:"
  return setmetatable({
    conn = conn.new{ url = o.url, timeout = o.timeout, connect_timeout = o.connect_timeout,
                     where = W, level = 4 },
    id = o.id, lease = lease, poll = poll,
    worker = o.worker or ((os.getenv("HOSTNAME") or "worker") .. ":" .. core.uuid4():sub(1, 8)),
    sleep = o.sleep or conn.sleep,   -- through the scheduler inside a task
    k = { meta = base .. "meta", pending = base .. "pending", leased = base .. "leased",
          done = base .. "done", owner = base .. "owner" },
  }, mt)
end

--- The idempotency key of every item.
-- campaign.keys(id, items) -> the idempotency key of every item: the keys a single-machine
-- client:send_batch(items, { batch_id = id }) uses (chatmaid.batch.keys when present).
-- @tparam string id the campaign id (the batch id)
-- @tparam table items the send parameter tables
-- @treturn table the keys, in item order
function _M.keys(id, items)
  if type(batch.keys) == "function" then return batch.keys(id, items) end
  local out = {}
  for i, it in ipairs(items) do
    out[i] = it.idempotency_key or batch.derived_key(id, i, it.to)
  end
  return out
end

local function split_outcome(v)
  local what, rest = v:match("^(%S+) ?(.*)$")
  if what == "sent" then return { sent = true, id = rest } end
  local kind, msg = rest:match("^(%S+) ?(.*)$")
  return { failed = true, kind = kind, message = msg }
end

--- Counts across all workers.
-- campaign:status() -> { total, pending, leased, done, sent, failed } | nil, err
-- @treturn table { total, pending, leased, done, sent, failed }
-- @return[2] nil
-- @treturn[2] table err (docs/reference/errors.md): kind "transport" (err.reason)
function _M:status()
  local k = self.k
  local r, err = self.conn:call{ "HGET", k.meta, "n" }
  if r == nil then return nil, err end
  local st = { total = tonumber(r) or 0 }
  local p, l, d
  p, err = self.conn:call{ "LLEN", k.pending }
  if p == nil then return nil, err end
  l, err = self.conn:call{ "ZCARD", k.leased }
  if l == nil then return nil, err end
  d, err = self.conn:call{ "HVALS", k.done }
  if d == nil then return nil, err end
  st.pending, st.leased, st.done, st.sent, st.failed = p, l, #d, 0, 0
  for _, v in ipairs(d) do
    if v:sub(1, 5) == "sent " then st.sent = st.sent + 1 else st.failed = st.failed + 1 end
  end
  return st
end

--- The outcome of every item done, by any worker.
-- campaign:outcomes() -> { [i] = { sent = true, id = "msg_..." } | { failed = true, kind,
-- message } } for every item done, by any worker | nil, err
-- @treturn table { [i] = { sent = true, id } or { failed = true, kind, message } }
-- @return[2] nil
-- @treturn[2] table err (docs/reference/errors.md): kind "transport" (err.reason)
function _M:outcomes()
  local all, err = self.conn:call{ "HGETALL", self.k.done }
  if all == nil then return nil, err end
  local out = {}
  for j = 1, #all, 2 do out[tonumber(all[j])] = split_outcome(all[j + 1]) end
  return out
end

--- Put the failed items back in the queue (run again).
-- campaign:retry_failed() -> count | nil, err: failed items go back to pending (run again).
-- @treturn number how many
-- @return[2] nil
-- @treturn[2] table err (docs/reference/errors.md): kind "transport" (err.reason)
function _M:retry_failed()
  return self.conn:script(_M.RETRY_FAILED, { self.k.done, self.k.pending }, {})
end

--- Forget the campaign in Redis (not the messages).
-- campaign:reset() -> true | nil, err: forgets the campaign in Redis (not the messages).
-- @treturn boolean true
-- @return[2] nil
-- @treturn[2] table err (docs/reference/errors.md): kind "transport" (err.reason)
function _M:reset()
  local k = self.k
  local r, err = self.conn:call{ "DEL", k.meta, k.pending, k.leased, k.done, k.owner }
  if r == nil then return nil, err end
  self.epoch = nil   -- forgotten on purpose: the next run starts the campaign afresh
  return true
end

local RUN_OPTS = { concurrency = "number", rate_per_minute = "number|boolean",
                   rate_limiter = "table", timeout = "number", max_retries = "number",
                   max_retry_wait = "number", on_progress = "function", chunk = "number",
                   ttl = "number", resume = "boolean" }

-- The state_lost error: the campaign is not finished, and what to do about it.
local function lost_error(self, why, results, sum)
  return nil, errors.new("state_lost", "Redis lost the state of campaign '" .. self.id
    .. "' (" .. why .. "; restarted without persistence? FLUSHDB, a failover to a replica "
    .. "that lagged or an evicted key do the same): it is NOT finished and items may be "
    .. "unsent. Run it again with { resume = true } to rebuild it from the item list (items "
    .. "the API already has come back as replays), and give Redis AOF persistence "
    .. "(appendonly yes, appendfsync everysec) and maxmemory-policy noeviction",
    { campaign = self.id, results = results, summary = sum })
end

--- Work through the campaign with the other workers until every item is done.
-- campaign:run(client, items, opts) -> results, summary | nil, err
-- Works through the campaign with the other workers until every item is done. items: the
-- same array of send parameters on every worker (checked: a worker with another list gets
-- err.kind "validation"; one whose client sends elsewhere, e.g. a live key where the
-- first worker had a test key, the same with err.reason "destination"). opts: send_batch's
-- concurrency, rate_per_minute, rate_limiter, timeout, max_retries, max_retry_wait; chunk
-- (items claimed at a time, default concurrency); on_progress(result, i) per item this
-- worker finished; ttl (seconds the campaign's state stays in Redis after the last change,
-- default 7 days).
-- results[i] for the items this worker sent (send_batch's result shape); summary =
-- { sent (new messages), replayed (the API had the key: sent before, e.g. by a worker that
--   died), failed, claimed, taken_over (expired leases this worker put back), requests,
--   rate_limited, retries, elapsed, total, done }. err.kind "transport": Redis failed;
-- "interrupted": send_batch stopped (err.reason; "limiter": the shared rate limiter gave up
-- on its Redis after max_outage). err.results holds what was sent; leased items go back to
-- the others after the lease.
-- err.kind "state_lost": Redis lost the campaign's state under this worker (DESIGN.md,
-- "Shared campaigns"): run again with opts.resume = true to rebuild it from `items`
-- (every item not known done is sent again with its key: the API replays those it has).
-- A campaign object that never saw the state (a new process) rebuilds it without asking.
-- @tparam table client a chatmaid client
-- @tparam table items the same array of send parameter tables on every worker
-- @tparam[opt] table opts concurrency, rate_per_minute, rate_limiter, timeout, max_retries,
--   max_retry_wait, chunk, on_progress, ttl, resume
-- @treturn table results for the items this worker sent (send_batch's shape)
-- @treturn table summary { sent, replayed, failed, claimed, taken_over, requests, rate_limited,
--   retries, elapsed, total, done }
-- @return[2] nil
-- @treturn[2] table err: kind "transport", "validation", "interrupted" or "state_lost" (run again
--   with { resume = true }); err.results, err.summary
-- @raise when client or items are not what they must be, or on a bad option
function _M:run(client, items, opts)
  local W = "chatmaid.redis.campaign:run"
  if type(client) ~= "table" or type(client.send_batch) ~= "function" then
    error(W .. ": client must be a chatmaid client", 2)
  end
  if type(items) ~= "table" or #items == 0 then
    error(W .. ": items must be a non-empty array of send parameter tables", 2)
  end
  opts = opts or {}
  options.check(W, opts, RUN_OPTS, 2)
  local keys = _M.keys(self.id, items)
  local dest = require("chatmaid.base").destination(client) or ""
  local fp = core.webhook_sign(table.concat(keys, "\n"), "chatmaid.campaign", 0):sub(1, 32)
  local k, c = self.k, self.conn
  local t0 = core.monotime()
  local results = setmetatable({}, core.array_mt)
  local sum = { sent = 0, replayed = 0, failed = 0, claimed = 0, taken_over = 0, requests = 0,
                rate_limited = 0, retries = 0, total = #items }
  local function fail(err)
    err.results, err.summary = results, sum
    return nil, err
  end

  local r, err = c:script(_M.INIT, { k.meta, k.pending, k.leased, k.done, k.owner },
                         { tostring(#items), fp, self.epoch or "",
                           opts.resume and "resume" or "", core.uuid4(), dest })
  if r == nil then return fail(err) end
  if type(r) ~= "string" then
    return fail(select(2, conn.fail("protocol", "unexpected INIT reply " .. tostring(r))))
  end
  if r == "lost" then
    return lost_error(self, "its record of " .. #items .. " items is gone", results, sum)
  end
  local there = r:match("^elsewhere (.*)$")
  if there then
    return nil, errors.new("validation", "campaign '" .. self.id .. "' was started by workers"
      .. " that send with " .. there .. "; this client sends with " .. dest .. ", where its"
      .. " items were never sent: use another campaign id for this destination (the API"
      .. " scopes idempotency keys per account, test and live alike)",
      { campaign = self.id, reason = "destination" })
  end
  if r:sub(1, 8) == "mismatch" then
    local n = r:match("^mismatch (%d+)")
    return nil, errors.new("validation", "campaign '" .. self.id .. "' was started with "
      .. "another item list (" .. n .. " items, different keys): every worker must pass the "
      .. "same items in the same order, or use a new id", { campaign = self.id })
  end
  local ttl = tostring(math.floor(opts.ttl or 7 * 86400))
  local send_opts = { concurrency = opts.concurrency, rate_per_minute = opts.rate_per_minute,
                      rate_limiter = opts.rate_limiter, timeout = opts.timeout,
                      max_retries = opts.max_retries, max_retry_wait = opts.max_retry_wait }
  local chunk = opts.chunk or opts.concurrency or batch.DEFAULT_CONCURRENCY
  local lease = fmt(self.lease)
  self.epoch = r:match("^%a+ (%S+)$") or self.epoch
  local epoch = self.epoch
  local lost    -- why, once a script answered "lost": the rest of the chunk is not recorded
  local function lost_in(reply)
    if type(reply) == "string" and reply:sub(1, 5) == "lost " then
      local ep, count = reply:match("^lost (%S+) ?(%S*)$")
      lost = lost or (count ~= "" and ("it holds " .. count .. " of the items")
                      or ep == "none" and "its record is gone"
                      or "it was rebuilt by another worker")
      return true
    end
    return false
  end

  while true do
    local rep
    rep, err = c:script(_M.CLAIM, { k.meta, k.pending, k.leased, k.done, k.owner },
                        { epoch, tostring(chunk), lease, self.worker })
    if rep == nil then return fail(err) end
    if lost_in(rep) then return lost_error(self, lost, results, sum) end
    -- { {item...}, taken_over, pending, leased, done, next_expiry }: anything else is not
    -- our script's answer (a lying server), never indexed blindly
    if type(rep) ~= "table" or type(rep[1]) ~= "table" or type(rep[2]) ~= "number"
       or type(rep[3]) ~= "number" or type(rep[4]) ~= "number" or type(rep[5]) ~= "number" then
      return fail(select(2, conn.fail("protocol", "unexpected CLAIM reply " .. tostring(rep))))
    end
    local got = rep[1]
    sum.taken_over = sum.taken_over + rep[2]
    sum.done = rep[5]
    if #got == 0 then
      if rep[3] == 0 and rep[4] == 0 then break end   -- nothing pending, nobody working
      -- others hold leases: wait for them to finish or expire
      local nxt = tonumber(rep[6]) or self.poll
      self.sleep(math.max(0.01, math.min(self.poll, nxt + 0.01)))
    else
      sum.claimed = sum.claimed + #got
      local sub, idx, by_key, open = {}, {}, {}, {}
      for j, s in ipairs(got) do
        local i = tonumber(s)
        local it = {}
        for f, v in pairs(items[i]) do it[f] = v end
        it.idempotency_key = keys[i]
        sub[j], idx[j] = it, i
        by_key[keys[i]] = i
        open[i] = true
      end
      local last_renew = core.monotime()
      local function record(i, res)
        if not open[i] then return end
        open[i] = nil
        results[i] = res
        local outcome = res.message and ("sent " .. tostring(res.message.id))
                        or ("failed " .. tostring(res.err and res.err.kind or "transport") .. " "
                            .. tostring(res.err and res.err.message or "no result"))
        -- a failure to record is safe: the lease expires and the item is sent again with
        -- its key (the API returns the original message)
        if not lost then
          lost_in(c:script(_M.DONE, { k.meta, k.leased, k.done }, { epoch, tostring(i), outcome }))
        end
        if opts.on_progress then opts.on_progress(res, i) end
      end
      send_opts.on_progress = function(_, _, res)
        local i = res.idempotency_key and by_key[res.idempotency_key]
        if i then record(i, res) end
        local now = core.monotime()
        if now - last_renew > self.lease / 3 then
          last_renew = now
          local args = { epoch, lease, self.worker }
          for j in pairs(open) do args[#args + 1] = tostring(j) end
          if #args > 3 and not lost then
            lost_in(c:script(_M.RENEW, { k.meta, k.leased, k.owner }, args))
          end
        end
      end
      local res, s = client:send_batch(sub, send_opts)
      if not res then
        -- stopped (a callback raised, client:close(), the shared limiter gave up): the items
        -- it answered are recorded; the unsent ones go back to the others when their lease
        -- expires
        for j, i in ipairs(idx) do
          local e = s.results[j]
          if e and not (e.err and e.err.kind == "interrupted") then record(i, e) end
        end
        for _, f in ipairs{ "sent", "replayed", "failed", "requests", "rate_limited",
                            "retries" } do
          sum[f] = sum[f] + ((s.summary or {})[f] or 0)
        end
        return fail(s)
      end
      for j, i in ipairs(idx) do record(i, res[j]) end
      for _, f in ipairs{ "sent", "replayed", "failed", "requests", "rate_limited",
                          "retries" } do
        sum[f] = sum[f] + (s[f] or 0)
      end
      if lost then return lost_error(self, lost, results, sum) end
      for _, key in pairs(k) do c:call{ "EXPIRE", key, ttl } end
    end
  end
  sum.elapsed = core.monotime() - t0
  return results, sum
end

return _M
