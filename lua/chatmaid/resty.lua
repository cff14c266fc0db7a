-- SPDX-License-Identifier: MIT
--- lua-chatmaid inside OpenResty / nginx: webhooks, a shared rate limiter, the transport.
-- `require "chatmaid.resty"`: lua-chatmaid inside OpenResty / nginx + lua-nginx-module.
-- Clients made in nginx pick the cosocket transport by themselves (chatmaid.base); this
-- module holds the rest: the webhook receiver, the shared rate limiter, and the transport
-- for explicit use. docs/openresty.md has the nginx.conf to copy.
--
-- - `receive_webhook(opts)`: `chatmaid.resty.webhook.receive_webhook`
-- - `rate_limiter(opts)`: `chatmaid.resty.limiter.new`
-- - `transport(opts)`: `chatmaid.resty.transport.new`
-- - `phase_error()`: `chatmaid.resty.transport.phase_error`
-- @module chatmaid.resty
local transport = require "chatmaid.resty.transport"
local webhook = require "chatmaid.resty.webhook"
local limiter = require "chatmaid.resty.limiter"

local _M = {
  -- receive_webhook{ secret, shared_dict | redis, tolerance, dedupe_ttl, max_body, respond }
  receive_webhook = webhook.receive_webhook,
  -- rate_limiter{ shared_dict | redis, key, per_minute, burst, window }
  --   -> limiter:take(n) -> wait
  rate_limiter = limiter.new,
  -- transport{ timeout_ms, connect_timeout_ms, max_body, keepalive_pool,
  --            keepalive_timeout_ms }: the cosocket transport (chatmaid.resty.transport)
  transport = transport.new,
  -- phase_error() -> nil in a phase with non-blocking I/O, else the reason
  phase_error = transport.phase_error,
}

return _M
