-- SPDX-License-Identifier: MIT
-- The default transport: a chatmaid.core session (one reused libcurl easy handle, plus a
-- multi handle for batches). Any object with the same request() contract can replace it
-- (chatmaid.new{ transport = ... }), which is how OpenResty gets a non-blocking one.
local core = require "chatmaid.core"

local _M = {}
local mt = { __index = _M }

-- opts: timeout_ms, connect_timeout_ms, user_agent, ca_file, proxy, max_body, http_version
function _M.new(opts)
  return setmetatable({ session = core.session(opts), blocking = true }, mt)
end

-- req = { method, url, headers = { "K: v" }, body, timeout_ms, fresh_connect }
-- fresh_connect: the request must never be replayed by libcurl on a dead kept-alive
-- connection (a send without an idempotency key), so it gets a new connection.
-- -> { status, body, headers } | nil, kind, message, curlcode
function _M:request(req)
  local status, body, headers, code = self.session:request(req.method, req.url, req.headers,
                                                           req.body, req.timeout_ms,
                                                           req.fresh_connect)
  if not status then return nil, body, headers, code end
  return { status = status, body = body, headers = headers }
end

-- Batch transfers (curl multi). token: integer chosen by the caller.
function _M:add(token, req)
  return self.session:multi_add(token, req.method, req.url, req.headers, req.body,
                                req.timeout_ms)
end

function _M:poll(wait_ms) return self.session:multi_poll(wait_ms) end
function _M:pending() return self.session:multi_pending() end
function _M:stats() return self.session:stats() end
function _M:close() return self.session:close() end

return _M
