-- SPDX-License-Identifier: MIT
-- `require "chatmaid.redis"`: one account, many machines. A rate limiter, a webhook
-- dedupe set and shared campaigns kept in Redis (the user's own), through libhiredis in
-- chatmaid.core, or lua-nginx-redis's cosockets inside nginx. README "Running on many
-- machines" shows the three pieces.
local _M = {}

-- rate_limiter{ url, key, per_minute, burst = 1, window = 60, ... } -> limiter
-- (take(n) -> wait s, wait(n), pause_until(t)): chatmaid.redis.limiter
function _M.rate_limiter(opts) return require("chatmaid.redis.limiter").new(opts) end

-- seen_set{ url, ttl = 86400, prefix = "chatmaid:seen:", fail = "closed" } -> set
-- (has, add, seen): chatmaid.redis.seen
function _M.seen_set(opts) return require("chatmaid.redis.seen").new(opts) end

-- campaign{ url, id, lease = 30, ... } -> campaign (run(client, items, opts)):
-- chatmaid.redis.campaign
function _M.campaign(opts) return require("chatmaid.redis.campaign").new(opts) end

-- parse_url(url) -> { host, port, db, username, password } (raises on a malformed URL)
function _M.parse_url(url) return require("chatmaid.redis.conn").parse_url(url) end

return _M
