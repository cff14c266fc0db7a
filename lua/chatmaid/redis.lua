-- SPDX-License-Identifier: MIT
-- `require "chatmaid.redis"`: one account, many machines. A rate limiter, a webhook
-- dedupe set and shared campaigns kept in Redis (the user's own), through libhiredis in
-- chatmaid.core, or lua-nginx-redis's cosockets inside nginx. README "Running on many
-- machines" shows the three pieces.
local _M = {}

-- rate_limiter{ url, key, per_minute, burst = 1, window = 60, max_outage = 30, ... }
-- -> limiter (take(n) -> wait s, reserve(n), wait(n), pause_until(t)):
-- chatmaid.redis.limiter
-- (no tail calls here: option errors are raised at the caller's line)
function _M.rate_limiter(opts)
  local lim = require("chatmaid.redis.limiter").new(opts)
  return lim
end

-- seen_set{ url, ttl = 86400, prefix = "chatmaid:seen:", fail = "closed", lease = 30 }
-- -> set (claim, done, release, handle: the two-phase claim; has, add, seen, forget):
-- chatmaid.redis.seen
function _M.seen_set(opts)
  local set = require("chatmaid.redis.seen").new(opts)
  return set
end

-- campaign{ url, id, lease = 30, ... } -> campaign (run(client, items, opts), status,
-- outcomes, retry_failed, reset): chatmaid.redis.campaign
function _M.campaign(opts)
  local c = require("chatmaid.redis.campaign").new(opts)
  return c
end

-- key_id(api_key) -> "key:<24 hex>": a limiter key naming an API key without storing it
-- (HMAC-SHA256), the one `chatmaid batch --redis` uses: pass it as `key` to share its budget.
function _M.key_id(api_key)
  if type(api_key) ~= "string" then
    error("chatmaid.redis.key_id: api_key must be a string (got " .. type(api_key) .. ")", 2)
  end
  return "key:" .. require("chatmaid.core").webhook_sign(api_key, "chatmaid.redis.key", 0)
                                            :sub(1, 24)
end

-- parse_url(url) -> { host, port, db, username, password } (raises on a malformed URL)
function _M.parse_url(url)
  local u = require("chatmaid.redis.conn").parse_url(url, "chatmaid.redis.parse_url", 3)
  return u
end

return _M
