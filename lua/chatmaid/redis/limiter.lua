-- SPDX-License-Identifier: MIT

--- A request-rate limiter shared through Redis by every process on every machine.
-- A request-rate limiter shared through Redis by every process on every machine that uses
-- one API key. Same interface as chatmaid.resty's limiter (take(n) -> seconds to wait,
-- wait(n), pause_until(t)), so send_batch{ rate_limiter = ... } uses it unchanged.
--
-- One server-side script per take (one round trip, atomic) combines the two local limiters:
--   * the promise of chatmaid.ratelimit: a log of the last `limit` start times; a start is
--     allowed only `window + margin` seconds after the start `limit` places before it, so no
--     window ever holds more than `limit` starts, counted the way the API counts them;
--   * the pacing of chatmaid.resty's limiter (GCRA, `burst`): starts are spread one every
--     window/limit seconds after `burst` back-to-back ones.
-- Times are Redis server time (TIME inside the script), never the callers' clocks: machines
-- whose clocks disagree still share one timeline. take() returns a relative wait.
--
-- A slot is a moment, not a delay (DESIGN.md, "Limiter slots"): the script answers the
-- slot's absolute start and its own time, both Redis TIME in ms. reserve() turns them into
-- moments on this process's clock, bracketing the unknown offset by the round trip: start
-- no earlier than (answer received + wait), stale after (request sent + wait + slot_grace).
-- An answer that came back too late for its slot, or a worker that wakes after the stale
-- moment (it was paused, or descheduled), takes a new slot: the old one stays booked and
-- unused, which costs capacity, never the limit.
-- @module chatmaid.redis.limiter
local conn = require "chatmaid.redis.conn"
local options = require "chatmaid.options"
local ratelimit = require "chatmaid.ratelimit"

local _M = { WINDOW = 60, MARGIN = ratelimit.MARGIN, MAX_RETRY_WAIT = 5, MAX_OUTAGE = 30,
             MAX_STALE = 5 }
local mt = { __index = _M }

-- KEYS: state hash (tat, hold), log list. ARGV: op, n|delay, limit, window, margin,
-- interval, tau, now ("" = TIME). Numbers travel as strings (a Lua number in a reply would
-- be truncated to an integer).
_M.SCRIPT = [[
local now
if ARGV[8] ~= "" then
  now = tonumber(ARGV[8])
else
  local t = redis.call("TIME")
  now = tonumber(t[1]) + tonumber(t[2]) / 1000000
end
local size, window, margin = tonumber(ARGV[3]), tonumber(ARGV[4]), tonumber(ARGV[5])
local interval, tau = tonumber(ARGV[6]), tonumber(ARGV[7])
local st = redis.call("HMGET", KEYS[1], "tat", "hold")
local tat, hold = tonumber(st[1]) or 0, tonumber(st[2]) or 0
local function fmt(x) return string.format("%.6f", x) end
local function expire(last)
  local ms = math.ceil((last - now + window + margin) * 1000) + 1000
  redis.call("PEXPIRE", KEYS[1], ms)
  redis.call("PEXPIRE", KEYS[2], ms)
end
if ARGV[1] == "pause" then
  local t = now + tonumber(ARGV[2])
  if t > hold then
    hold = t
    redis.call("HSET", KEYS[1], "hold", fmt(hold))
    expire(math.max(hold, tat))
  end
  return fmt(hold - now)
end
local n = tonumber(ARGV[2])
local t = now
if tat - tau > t then t = tat - tau end
if hold > t then t = hold end
local count = redis.call("LLEN", KEYS[2])
if count + n > size then
  local back = tonumber(redis.call("LINDEX", KEYS[2], count + n - size - 1)) + window + margin
  if back > t then t = back end
end
if now > tat then tat = now end
if t > tat then tat = t end
tat = tat + n * interval
redis.call("HSET", KEYS[1], "tat", fmt(tat))
for _ = 1, n do redis.call("RPUSH", KEYS[2], fmt(t)) end
redis.call("LTRIM", KEYS[2], -size, -1)
expire(math.max(tat, hold, t))
return string.format("%.3f %.3f", t * 1000, now * 1000)
]]

local OPTS = { url = "string", key = "string|number", per_minute = "number", limit = "number",
               burst = "number", window = "number", margin = "number", timeout = "number",
               connect_timeout = "number", fail = "string", on_error = "function",
               sleep = "function", now = "function", time = "function",
               max_outage = "number", slot_grace = "number" }

local function check(o)
  local W = "chatmaid.redis.rate_limiter"
  options.check(W, o, OPTS, 4)
  if o.url == nil then error(W .. ": url is required (redis://host:port/db)", 4) end
  if o.per_minute ~= nil and o.limit ~= nil then
    error(W .. ": give per_minute or limit, not both (they are the same number)", 4)
  end
  local limit = o.limit or o.per_minute
  if type(limit) ~= "number" or limit < 1 or limit ~= math.floor(limit) then
    error(W .. ": per_minute (starts per window) must be an integer >= 1", 4)
  end
  local burst = o.burst or 1
  if burst < 1 or burst ~= math.floor(burst) or burst > limit then
    error(W .. ": burst must be an integer from 1 to per_minute", 4)
  end
  local window = o.window or _M.WINDOW
  if window ~= window or window <= 0 then
    error(W .. ": window must be a positive number of seconds", 4)
  end
  local margin = o.margin or _M.MARGIN
  if margin ~= margin or margin < 0 then
    error(W .. ": margin must be a number of seconds >= 0", 4)
  end
  local failmode = o.fail or "closed"
  if failmode ~= "closed" and failmode ~= "open" then
    error(W .. ": fail must be \"closed\" (wait for Redis) or \"open\" (pace locally)", 4)
  end
  local outage = o.max_outage or _M.MAX_OUTAGE
  if outage ~= outage or outage <= 0 then
    error(W .. ": max_outage must be a positive number of seconds", 4)
  end
  local grace = o.slot_grace or math.max(0.01, math.min(0.25, margin / 2))
  if grace ~= grace or grace <= 0 then
    error(W .. ": slot_grace must be a positive number of seconds", 4)
  end
  return limit, burst, window, margin, failmode, outage, grace
end

--- Make a limiter (chatmaid.redis.rate_limiter).
-- new{ url, key = "default", per_minute (or limit) = starts per window, burst = 1,
--      window = 60, margin = 1, timeout = 1, fail = "closed", on_error = fn(err),
--      max_outage = 30 (s Redis may fail before take gives up with nil, err),
--      slot_grace = margin / 2 (0.01 to 0.25 s: how late a slot may still start),
--      now = clock of pause_until's t, time = test clock replacing Redis TIME }
-- Raises on bad options (no I/O until the first take).
-- @tparam table o url, key, per_minute or limit, burst, window, margin, timeout, connect_timeout,
--   fail, on_error, max_outage, slot_grace, sleep, now, time
-- @treturn table the limiter
-- @raise on a bad option
function _M.new(o)
  local limit, burst, window, margin, failmode, outage, grace = check(o)
  local c = conn.new{ url = o.url, timeout = o.timeout, connect_timeout = o.connect_timeout,
                      where = "chatmaid.redis.rate_limiter", level = 4 }
  local key = tostring(o.key or "default")
  local base = "chatmaid:rl:{" .. key .. "}"
  local interval = window / limit
  local ngx = conn.in_nginx()
  local self = setmetatable({
    conn = c, keys = { base, base .. ":log" }, limit = limit, window = window,
    margin = margin, interval = interval, tau = (burst - 1) * interval, fail = failmode,
    on_error = o.on_error, time = o.time, max_outage = outage, grace = grace,
    clock = ngx and function() ngx.update_time() return ngx.now() end
            or require("chatmaid.core").monotime,
    sleep = o.sleep or conn.sleep,   -- through the scheduler inside a task
    now = o.time or o.now or (ngx and ngx.now) or require("chatmaid.core").monotime,
  }, mt)
  return self
end

local function fmt(x) return string.format("%.6f", x) end

-- run(op, arg) -> seconds (pause: the hold left; take: the wait until the slot, Redis
-- time), and for take the local moments the slot starts and goes stale | nil, err
local function run(self, op, arg)
  local sent = self.clock()
  local r, err = self.conn:script(_M.SCRIPT, self.keys, {
    op, fmt(arg), tostring(self.limit), fmt(self.window), fmt(self.margin),
    fmt(self.interval), fmt(self.tau), self.time and fmt(self.time()) or "" })
  if r == nil then return nil, err end
  if op == "pause" then
    -- a finite number of seconds, at most a day: never 1e309 or nan to sleep on
    local n, nerr = conn.expect(r, "number", "the limiter script")
    if not n then return nil, nerr end
    if n < 0 or n > 86400 then
      return conn.fail("protocol", "unexpected script reply " .. tostring(r))
    end
    return n
  end
  local t, now = tostring(r):match("^(%-?[%d.]+) (%-?[%d.]+)$")
  t, now = tonumber(t), tonumber(now)
  if not t or not now or t < now or t - now > 86400e3 then
    return conn.fail("protocol", "unexpected script reply " .. tostring(r))
  end
  local wait = (t - now) / 1000
  return wait, self.clock() + wait, sent + wait + self.grace
end

local function check_n(n)
  if n == nil then return 1 end
  if type(n) ~= "number" or n < 1 or n ~= math.floor(n) then
    error("chatmaid.redis.rate_limiter: take(n): n must be a positive integer", 3)
  end
  return n
end

local function check_limit(self, n)
  if n > self.limit then
    error("chatmaid.redis.rate_limiter: take(n): n is over per_minute (" .. self.limit
          .. "): it could never fit in a window", 3)
  end
end

-- One booking of n starts that is still fresh when the answer arrives: a slot whose answer
-- came back after its stale moment is booked again (at most MAX_STALE times).
-- -> wait, start (local clock), stale (local clock) | nil, err
local function book(self, n)
  for _ = 1, _M.MAX_STALE do
    local w, start, stale = run(self, "take", n)
    if w == nil then return nil, start end
    if self.time or start <= stale then return w, start, stale end
  end
  return conn.fail("timeout", "Redis answered " .. _M.MAX_STALE .. " slots in a row after "
                   .. "they had gone stale (round trip over slot_grace = " .. self.grace
                   .. " s)")
end

--- One attempt to reserve n starts.
-- limiter:try_take(n) -> wait_seconds | nil, err (kind "transport")
-- One attempt: reserves n starts (default 1) at one time; the caller waits wait_seconds.
-- @tparam[opt=1] number n starts
-- @treturn number seconds to wait before starting
-- @return[2] nil
-- @treturn[2] table err (docs/reference/errors.md): kind "transport" (err.reason)
-- @raise when n is not a positive integer or is over per_minute
function _M:try_take(n)
  n = check_n(n)
  check_limit(self, n)
  local w, err = book(self, n)
  return w, err
end

-- The local stand-in used while Redis is unreachable with fail = "open".
local function fallback(self, n)
  if not self.local_lim then
    self.local_lim = ratelimit.new(self.limit, { window = self.window, margin = self.margin })
  end
  local lim, now = self.local_lim, self.now()
  local t = now
  for _ = 1, n do
    t = lim:ready_at(t)
    lim:take(t)
  end
  return t - now
end

-- limiter:reserve(n) -> wait, stale_in | nil, err, retry_in
-- One step, for callers that do their own waiting (send_batch, through its scheduler): n
-- starts at `wait` seconds from the call, to be started before `stale_in` seconds from the
-- call (after that, reserve again). On a Redis failure (fail = "closed") on_error(err) is
-- called and nil, err, retry_in returned: ask again in retry_in seconds; retry_in is nil
-- once Redis has failed for max_outage seconds: give up. With fail = "open" a failure
-- paces locally instead (stale_in nil).
-- step(n) -> wait (Redis time), start, stale, called (local clock) | nil, err, retry_in
local function step(self, n)
  n = check_n(n)
  check_limit(self, n)
  local called = self.clock()
  local w, start, stale = book(self, n)
  if w then
    self.local_lim, self.failing, self.backoff = nil, nil, nil
    return w, start, stale, called
  end
  local err = start
  if self.on_error then self.on_error(err) end
  if self.fail == "open" then return fallback(self, n) end
  local now = self.clock()
  self.failing = self.failing or called
  self.backoff = math.min((self.backoff or 0.025) * 2, _M.MAX_RETRY_WAIT)
  if now - self.failing >= self.max_outage then
    self.failing, self.backoff = nil, nil
    err.message = err.message .. " (the rate limiter gave up after " .. self.max_outage
                  .. " s of Redis failures: max_outage)"
    return nil, err
  end
  return nil, err, math.min(self.backoff, self.max_outage - (now - self.failing))
end

--- One non-blocking step: book n starts as a moment (for callers that do their own waiting).
-- @tparam[opt=1] number n starts
-- @treturn number wait: seconds from the call until the slot starts
-- @treturn ?number stale_in: start before this many seconds from the call, or reserve again (nil
--   with fail = "open" while Redis is down)
-- @return[2] nil
-- @treturn[2] table err (docs/reference/errors.md): kind "transport" (err.reason)
-- @treturn[2] ?number retry_in: ask again after this many seconds; nil once Redis has failed for
--   max_outage seconds (give up)
-- @raise as try_take, or what on_error raises
function _M:reserve(n)
  local w, start, stale, called = step(self, n)
  if not w or not stale or self.time then return w, start, stale end
  return start - called, stale - called
end

--- Reserve n starts, riding out a Redis outage for at most max_outage seconds.
-- limiter:take(n) -> wait_seconds (>= 0) | nil, err. Never blocks by itself, except while
-- Redis is unreachable and fail = "closed" (the default): it then retries (backoff up to
-- 5 s, sleeping with `sleep`) for at most max_outage seconds, calling on_error(err) after
-- each failure (raise there to give up sooner), then returns nil, err. With fail = "open"
-- it paces locally (this process alone at the full rate) until Redis is back.
-- @tparam[opt=1] number n starts
-- @treturn number seconds (>= 0) to wait before starting
-- @return[2] nil
-- @treturn[2] table err after max_outage seconds of Redis failures
-- @raise as try_take, or what on_error raises
function _M:take(n)
  while true do
    local w, err, retry_in = step(self, n)
    if w then return w end
    if not retry_in then return nil, err end
    self.sleep(retry_in)
  end
end

--- take(n), then sleep for it (inside a task, through the client's scheduler).
-- limiter:wait(n) -> waited_seconds | nil, err: take(n), then sleep for it.
-- @tparam[opt=1] number n starts
-- @treturn number the seconds waited
-- @return[2] nil
-- @treturn[2] table err as take
function _M:wait(n)
  local w, err = self:take(n)
  if not w then return nil, err end
  if w > 0 then self.sleep(w) end
  return w
end

--- No start before t on any machine (after a 429).
-- limiter:pause_until(t) -> true | nil, err
-- The API answered 429: no start before t (on the `now` clock: the client's clock by
-- default) on any machine. Sent to Redis as a delay, so clocks need not agree.
-- @tparam number t a time on the limiter's `now` clock
-- @treturn boolean true
-- @return[2] nil
-- @treturn[2] table err (docs/reference/errors.md): kind "transport" (err.reason)
function _M:pause_until(t)
  local delay = t - self.now()
  if delay <= 0 then return true end
  if self.local_lim then self.local_lim:pause_until(t) end
  local r, err = run(self, "pause", delay)
  if not r then
    if self.on_error then self.on_error(err) end
    return nil, err
  end
  return true
end

--- Drop the connection (reopened on next use).
-- limiter:close(): drops the connection (reopened on next use).
-- @treturn boolean true
function _M:close() return self.conn:close() end

return _M
