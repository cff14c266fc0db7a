-- SPDX-License-Identifier: MIT

--- lua-chatmaid inside OpenResty / nginx: webhooks, a shared rate limiter, the transport.
-- `require "chatmaid.resty"`: lua-chatmaid inside OpenResty / nginx + lua-nginx-module.
-- Clients made in nginx pick the cosocket transport by themselves (chatmaid.base); this
-- module holds the rest: the webhook receiver, the shared rate limiter, and the transport
-- for explicit use. docs/openresty.md has the nginx.conf to copy.
-- @module chatmaid.resty
local transport = require "chatmaid.resty.transport"
local webhook = require "chatmaid.resty.webhook"
local limiter = require "chatmaid.resty.limiter"

--- Receive one webhook delivery: read, verify, dedupe and answer it
-- (`chatmaid.resty.webhook.receive_webhook`; docs/openresty.md, "Receiving webhooks").
-- @function receive_webhook
-- @tparam table opts secret (required), shared_dict or redis, tolerance (300), dedupe_ttl
--   (86400), max_body (1048576), respond (true), handler
-- @treturn[1] table the event
-- @return[2] nil
-- @treturn[2] string|table "duplicate", "in_progress" or the error
-- @treturn[2] ?table the event (duplicate, in_progress)

--- Make a request-rate limiter that every worker shares (`chatmaid.resty.limiter.new`).
-- @function rate_limiter
-- @tparam table opts shared_dict (or redis), key ("default"), per_minute, burst (1), window (60)
-- @treturn table the limiter: take(n), wait(n), pause_until(t)

--- The cosocket transport, for a client with other pool settings
-- (`chatmaid.new{ transport = resty.transport{ keepalive_pool = 1024 } }`).
-- @function transport
-- @tparam[opt] table opts timeout_ms, connect_timeout_ms, max_body, keepalive_pool (256),
--   keepalive_timeout_ms (60000)
-- @treturn table the transport

--- Whether the current nginx phase can make HTTP requests.
-- @function phase_error
-- @treturn ?string nil in a phase with non-blocking I/O, else what to do instead

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
