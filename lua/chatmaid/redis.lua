-- SPDX-License-Identifier: MIT

--- One account, many machines: a rate limiter, a webhook dedupe set and campaigns in Redis
--   (docs/many-machines.md).
-- `require "chatmaid.redis"`: one account, many machines. A rate limiter, a webhook
-- dedupe set and shared campaigns kept in Redis (the user's own), through libhiredis in
-- chatmaid.core, or lua-nginx-redis's cosockets inside nginx. README "Running on many
-- machines" shows the three pieces.
-- @module chatmaid.redis
local _M = {}

--- A rate limiter shared through Redis (chatmaid.redis.limiter).
-- rate_limiter{ url, key, per_minute, burst = 1, window = 60, max_outage = 30, ... }
-- -> limiter (take(n) -> wait s, reserve(n), wait(n), pause_until(t)):
-- chatmaid.redis.limiter
-- (no tail calls here: option errors are raised at the caller's line)
-- @tparam table opts url (required), key, per_minute or limit, burst (1), window (60), margin (1),
--   timeout (1), connect_timeout, fail ("closed"), on_error, max_outage (30), slot_grace, sleep,
--   now (docs/reference/options.md)
-- @treturn table the limiter (take, try_take, reserve, wait, pause_until, close)
-- @raise on a bad option (no I/O until the first take)
function _M.rate_limiter(opts)
  local lim = require("chatmaid.redis.limiter").new(opts)
  return lim
end

--- A webhook dedupe set kept in Redis, with the two-phase claim (chatmaid.redis.seen).
-- seen_set{ url, ttl = 86400, prefix = "chatmaid:seen:", fail = "closed", lease = 30 }
-- -> set (claim, done, release, handle: the two-phase claim; has, add, seen, forget):
-- chatmaid.redis.seen
-- @tparam table opts url (required), ttl (86400), prefix ("chatmaid:seen:"), lease (30), timeout
--   (1), connect_timeout, fail ("closed")
-- @treturn table the set (claim, done, release, handle; has, add, seen, forget; close)
-- @raise on a bad option
function _M.seen_set(opts)
  local set = require("chatmaid.redis.seen").new(opts)
  return set
end

--- A campaign shared by workers on many machines (chatmaid.redis.campaign).
-- campaign{ url, id, lease = 30, ... } -> campaign (run(client, items, opts), status,
-- outcomes, retry_failed, reset): chatmaid.redis.campaign
-- @tparam table opts url and id (required), lease (30), poll (0.5), timeout (1), connect_timeout,
--   worker, sleep
-- @treturn table the campaign (run, status, outcomes, retry_failed, reset)
-- @raise on a bad option
function _M.campaign(opts)
  local c = require("chatmaid.redis.campaign").new(opts)
  return c
end

--- A limiter key naming an API key without storing it.
-- key_id(api_key) -> "key:<24 hex>": a limiter key naming an API key without storing it
-- (HMAC-SHA256), the one `chatmaid batch --redis` uses: pass it as `key` to share its budget.
-- @tparam string api_key the API key
-- @treturn string "key:<24 hex>" (HMAC-SHA256), the key `chatmaid batch --redis` uses
-- @raise when api_key is not a string
function _M.key_id(api_key)
  if type(api_key) ~= "string" then
    error("chatmaid.redis.key_id: api_key must be a string (got " .. type(api_key) .. ")", 2)
  end
  return "key:" .. require("chatmaid.core").webhook_sign(api_key, "chatmaid.redis.key", 0)
                                            :sub(1, 24)
end

--- Parse a Redis URL.
-- parse_url(url) -> { host, port, db, username, password } (raises on a malformed URL)
-- @tparam string url redis://[[user]:password@]host[:port][/db] or unix:///path?db=n
-- @treturn table { host, port, db, username, password }
-- @raise on a malformed URL
function _M.parse_url(url)
  local u = require("chatmaid.redis.conn").parse_url(url, "chatmaid.redis.parse_url", 3)
  return u
end

return _M
