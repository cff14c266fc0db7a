-- SPDX-License-Identifier: MIT
-- webhook.seen_set's interface (has, add, seen) kept in Redis, so every process and every
-- machine behind a load balancer shares one memory of handled webhook deliveries. seen() is
-- one SET key 1 NX EX ttl: of concurrent identical deliveries, exactly one gets false.
local conn = require "chatmaid.redis.conn"
local options = require "chatmaid.options"

local _M = { DEFAULT_TTL = 86400, DEFAULT_PREFIX = "chatmaid:seen:" }
local mt = { __index = _M }

local OPTS = { url = "string", ttl = "number", prefix = "string", timeout = "number",
               connect_timeout = "number", fail = "string" }

-- new{ url, ttl = 86400, prefix = "chatmaid:seen:", timeout = 1, fail = "closed" } -> set
-- fail = "closed" (default): when Redis is unreachable has/add/seen return nil, err (kind
-- "transport"), and receive_webhook answers 503 so the API delivers again later: nothing is
-- handled twice and nothing is lost while Redis is back within the API's retries.
-- fail = "open": seen/has answer false (not seen) and add does nothing: the delivery is
-- handled, possibly twice. Raises on bad options.
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
  return setmetatable({
    conn = conn.new{ url = o.url, timeout = o.timeout, connect_timeout = o.connect_timeout,
                     where = W, level = 4 },
    ttl = tostring(ttl), prefix = o.prefix or _M.DEFAULT_PREFIX, fail = failmode,
  }, mt)
end

local function check_key(fname, key)
  if type(key) ~= "string" and type(key) ~= "number" then
    error("chatmaid.redis.seen_set:" .. fname .. ": key must be a string or a number (got "
          .. type(key) .. ")", 3)
  end
  return tostring(key)
end

local function failed(self, err, open_value)
  if self.fail == "open" then return open_value end
  return nil, err
end

-- set:has(key) -> true | false | nil, err
function _M:has(key)
  key = check_key("has", key)
  local r, err = self.conn:call{ "EXISTS", self.prefix .. key }
  if r == nil then return failed(self, err, false) end
  return r == 1
end

-- set:add(key) -> set | nil, err. Re-adding refreshes the key's age.
function _M:add(key)
  key = check_key("add", key)
  local r, err = self.conn:call{ "SET", self.prefix .. key, "1", "EX", self.ttl }
  if r == nil then return failed(self, err, self) end
  return self
end

-- set:seen(key) -> true if already seen; otherwise records it and returns false; nil, err.
-- Atomic across processes and machines.
function _M:seen(key)
  key = check_key("seen", key)
  local r, err = self.conn:call{ "SET", self.prefix .. key, "1", "NX", "EX", self.ttl }
  if r == nil then return failed(self, err, false) end
  return r == false
end

-- set:forget(key) -> true | nil, err: the handler failed, let a redelivery through.
function _M:forget(key)
  key = check_key("forget", key)
  local r, err = self.conn:call{ "DEL", self.prefix .. key }
  if r == nil then return failed(self, err, true) end
  return true
end

function _M:close() return self.conn:close() end

return _M
