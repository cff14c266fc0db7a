-- SPDX-License-Identifier: MIT

--- webhook.seen_set's interface kept in Redis: one memory of handled webhook deliveries for every
--   process and machine.
-- webhook.seen_set's interface (has, add, seen) kept in Redis, so every process and every
-- machine behind a load balancer shares one memory of handled webhook deliveries. seen() is
-- one SET key 1 NX EX ttl: of concurrent identical deliveries, exactly one gets false.
--
-- The two-phase claim (claim, done, release, handle) is what receivers use: a key holds
-- "claim:<token>" with a short lease (PX) while a handler runs, and "1" (done, ttl) once it
-- returned. A claim whose command timed out but that Redis applied later (a stalled
-- server) only blocks redeliveries until its lease ends; then a redelivery takes it over.
-- seen() marks a delivery handled before it is handled, so a stall can eat the event.
-- @module chatmaid.redis.seen
local conn = require "chatmaid.redis.conn"
local options = require "chatmaid.options"
local core = require "chatmaid.core"

-- the lease a claim holds a delivery for: the in-process seen set's (chatmaid.webhook)
local _M = { DEFAULT_TTL = 86400, DEFAULT_PREFIX = "chatmaid:seen:",
             DEFAULT_LEASE = require("chatmaid.webhook").DEFAULT_LEASE }
local mt = { __index = _M }

local OPTS = { url = "string", ttl = "number", prefix = "string", timeout = "number",
               connect_timeout = "number", fail = "string", lease = "number" }

-- KEYS: key. ARGV: token, lease ms -> "claimed" | "busy" (a live claim) | "done"
_M.CLAIM = [[
local v = redis.call("GET", KEYS[1])
if v then
  if string.sub(v, 1, 6) == "claim:" then return "busy" end
  return "done"
end
redis.call("SET", KEYS[1], "claim:" .. ARGV[1], "PX", ARGV[2])
return "claimed"
]]

-- KEYS: key. ARGV: token -> 1 (released) | 0 (not ours: expired, taken over or done)
_M.RELEASE = [[
if redis.call("GET", KEYS[1]) == "claim:" .. ARGV[1] then
  return redis.call("DEL", KEYS[1])
end
return 0
]]

--- Make a set (chatmaid.redis.seen_set).
-- new{ url, ttl = 86400, prefix = "chatmaid:seen:", timeout = 1, fail = "closed",
--      lease = 30 } -> set
-- lease: seconds a claim holds a delivery while its handler runs (claim()).
-- fail = "closed" (default): when Redis is unreachable has/add/seen return nil, err (kind
-- "transport"), and receive_webhook answers 503 so the API delivers again later: nothing is
-- handled twice and nothing is lost while Redis is back within the API's retries.
-- fail = "open": seen/has answer false (not seen) and add does nothing: the delivery is
-- handled, possibly twice. Raises on bad options.
-- @tparam table o url, ttl, prefix, lease, timeout, connect_timeout, fail
-- @treturn table the set
-- @raise on a bad option
function _M.new(o)
  local W = "chatmaid.redis.seen_set"
  options.check(W, o, OPTS, 3)
  if o.url == nil then error(W .. ": url is required (redis://host:port/db)", 3) end
  local ttl = o.ttl or _M.DEFAULT_TTL
  if ttl ~= ttl or ttl < 1 or ttl ~= math.floor(ttl) then
    error(W .. ": ttl must be a whole number of seconds >= 1", 3)
  end
  local failmode = o.fail or "closed"
  if failmode ~= "closed" and failmode ~= "open" then
    error(W .. ": fail must be \"closed\" or \"open\"", 3)
  end
  local lease = o.lease or _M.DEFAULT_LEASE
  if lease ~= lease or lease < 0.01 then error(W .. ": lease must be >= 0.01 seconds", 3) end
  return setmetatable({
    conn = conn.new{ url = o.url, timeout = o.timeout, connect_timeout = o.connect_timeout,
                     where = W, level = 4 },
    ttl = tostring(ttl), prefix = o.prefix or _M.DEFAULT_PREFIX, fail = failmode,
    lease = lease,
    sleep = conn.sleep,   -- handle's waits between tries of done (a task's: its scheduler)
  }, mt)
end

local function check_key(fname, key)
  if type(key) ~= "string" and type(key) ~= "number" then
    error("chatmaid.redis.seen_set:" .. fname .. ": key must be a string or a number (got "
          .. type(key) .. ")", 3)
  end
  return tostring(key)
end

local function check_token(fname, token)
  if type(token) ~= "string" then
    error("chatmaid.redis.seen_set:" .. fname .. ": token must be the string claim() "
          .. "returned (got " .. type(token) .. ")", 3)
  end
end

local function failed(self, err, open_value)
  if self.fail == "open" then return open_value end
  return nil, err
end

--- Whether a delivery was handled.
-- set:has(key) -> true (handled: seen, added or done) | false (unknown, or only claimed
-- by a handler still running) | nil, err
-- @tparam string|number key a dedupe key
-- @treturn boolean true once done (or seen, added); false if unknown or only claimed
-- @return[2] nil
-- @treturn[2] table err (docs/reference/errors.md): kind "transport" (err.reason)
function _M:has(key)
  key = check_key("has", key)
  local r, err = self.conn:call{ "GET", self.prefix .. key }
  if r == nil then return failed(self, err, false) end
  return type(r) == "string" and r:sub(1, 6) ~= "claim:"
end

--- Mark a delivery handled (for ttl seconds).
-- set:add(key) -> set | nil, err. Re-adding refreshes the key's age.
-- @tparam string|number key a dedupe key
-- @treturn table the set
-- @return[2] nil
-- @treturn[2] table err (docs/reference/errors.md): kind "transport" (err.reason)
function _M:add(key)
  key = check_key("add", key)
  local r, err = self.conn:call{ "SET", self.prefix .. key, "1", "EX", self.ttl }
  if r == nil then return failed(self, err, self) end
  return self
end

--- The one-phase check: SET NX (marks the delivery handled before it is; prefer claim).
-- set:seen(key) -> true if already seen; otherwise records it and returns false; nil, err.
-- Atomic across processes and machines.
-- @tparam string|number key a dedupe key
-- @treturn boolean true if seen before; otherwise records it and returns false
-- @return[2] nil
-- @treturn[2] table err (docs/reference/errors.md): kind "transport" (err.reason)
function _M:seen(key)
  key = check_key("seen", key)
  local r, err = self.conn:call{ "SET", self.prefix .. key, "1", "NX", "EX", self.ttl }
  if r == nil then return failed(self, err, false) end
  return r == false
end

--- Forget a delivery, so a redelivery goes through.
-- set:forget(key) -> true | nil, err: the handler failed, let a redelivery through.
-- @tparam string|number key a dedupe key
-- @treturn boolean true
-- @return[2] nil
-- @treturn[2] table err (docs/reference/errors.md): kind "transport" (err.reason)
function _M:forget(key)
  key = check_key("forget", key)
  local r, err = self.conn:call{ "DEL", self.prefix .. key }
  if r == nil then return failed(self, err, true) end
  return true
end

--- Claim a delivery while its handler runs (phase one of two).
-- set:claim(key [, lease]) -> token | false, "done" | false, "busy" | nil, err
-- Phase one: take the delivery for `lease` seconds (default the set's). false, "done": it
-- was handled (answer 200, duplicate); false, "busy": a handler elsewhere holds a live claim
-- (answer 503 with Retry-After: the sender delivers again, and takes over the claim if that
-- handler died). nil, err: Redis failed (answer 503). With fail = "open" a failure gives a
-- token anyway (the delivery is handled, possibly twice).
-- @tparam string|number key a dedupe key
-- @tparam[opt] number lease seconds the claim holds the delivery (default the set's lease, 30)
-- @treturn string|boolean a token (yours: run the handler), or false
-- @treturn[opt] string with false: "done" (answer 200, duplicate) or "busy" (answer 503 with
--   Retry-After)
-- @return[2] nil
-- @treturn[2] table err (docs/reference/errors.md): kind "transport" (err.reason); answer 503
function _M:claim(key, lease)
  key = check_key("claim", key)
  lease = lease or self.lease
  if type(lease) ~= "number" or lease ~= lease or lease < 0.01 then
    error("chatmaid.redis.seen_set:claim: lease must be a number of seconds >= 0.01", 2)
  end
  local token = core.uuid4()
  local r, err = self.conn:script(_M.CLAIM, { self.prefix .. key },
                                  { token, tostring(math.ceil(lease * 1000)) })
  if r == nil then return failed(self, err, "open:" .. token) end
  if r == "claimed" then return token end
  if r == "busy" or r == "done" then return false, r end
  return failed(self, select(2, conn.fail("protocol", "unexpected claim reply "
                                          .. tostring(r))), "open:" .. token)
end

--- The handler returned: remember the delivery as handled for ttl seconds (phase two).
-- set:done(key, token) -> true | nil, err
-- Phase two: the handler returned; the key is remembered as handled for ttl seconds. (Also
-- when the lease ran out meanwhile: the event was handled.) If this fails, the event stays
-- claimed until the lease ends, and a redelivery after that runs the handler again: try
-- again, and log it if it still fails (handle() does both: "handled", err).
-- @tparam string|number key a dedupe key
-- @tparam string token what claim returned
-- @treturn boolean true
-- @return[2] nil
-- @treturn[2] table err (docs/reference/errors.md): kind "transport" (err.reason)
function _M:done(key, token)
  key = check_key("done", key)
  check_token("done", token)
  local r, err = self.conn:call{ "SET", self.prefix .. key, "1", "EX", self.ttl }
  if r == nil then return failed(self, err, true) end
  return true
end

--- The handler failed: drop the claim so a redelivery is handled at once.
-- set:release(key, token) -> true (released) | false (no longer ours) | nil, err
-- The handler failed or the request ends with 503: drop the claim now so a redelivery is
-- handled at once (if this fails, the lease runs out instead).
-- @tparam string|number key a dedupe key
-- @tparam string token what claim returned
-- @treturn boolean true (released) or false (no longer ours: expired, taken over or done)
-- @return[2] nil
-- @treturn[2] table err (docs/reference/errors.md): kind "transport" (err.reason)
function _M:release(key, token)
  key = check_key("release", key)
  check_token("release", token)
  local r, err = self.conn:script(_M.RELEASE, { self.prefix .. key }, { token })
  if r == nil then return failed(self, err, false) end
  return r == 1
end

--- Claim, run fn(...), mark done: webhook.handle_once(set, key, fn, ...).
-- set:handle(key, fn, ...) -> "handled" | "handled", err | "duplicate" | "busy" | nil, err
-- claim, fn(...), done; if fn raises, the claim is released and the error raised again
-- (chatmaid.webhook.handle_once). A done that fails is tried again while the lease lasts;
-- if it still fails: "handled", err (answer 2xx, log err).
-- @tparam string|number key a dedupe key
-- @tparam function fn the handler; if it raises, the claim is released and the error raised again
-- @param ... arguments for fn
-- @treturn string "handled", "duplicate" or "busy"
-- @treturn ?table with "handled": err when the delivery could not be marked done (log it)
-- @return[2] nil
-- @treturn[2] table err (docs/reference/errors.md): kind "transport" (err.reason)
function _M:handle(key, fn, ...)
  local r, err = require("chatmaid.webhook").handle_once(self, key, fn, ...)
  return r, err
end

--- Drop the connection (reopened on next use).
-- @treturn boolean true
function _M:close() return self.conn:close() end

return _M
