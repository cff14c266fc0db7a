-- SPDX-License-Identifier: MIT
-- The default transport: a chatmaid.core session (one reused libcurl easy handle, plus a
-- multi handle for batches). Any object with the same request() contract can replace it
-- (chatmaid.new{ transport = ... }), which is how OpenResty gets a non-blocking one.
local core = require "chatmaid.core"

local _M = {}
local mt = { __index = _M }

-- Response headers come from the core as the raw header block and become a table only when
-- something reads res.headers (an error's Retry-After, last_response()): most successful
-- requests never pay for the table.
local function parse_headers(raw)
  local h = {}
  for name, value in raw:gmatch("([^\r\n:]+):[ \t]*([^\r\n]*)") do
    h[name:lower()] = value:match("^(.-)[ \t]*$")
  end
  return h
end

local response_mt = {
  __index = function(res, k)
    if k == "headers" then
      local h = parse_headers(rawget(res, "raw_headers") or "")
      rawset(res, "headers", h)
      return h
    end
  end,
}

-- A response whose headers table is built from raw_headers on first read.
function _M.response(status, body, raw_headers)
  return setmetatable({ status = status, body = body, raw_headers = raw_headers }, response_mt)
end

-- opts: timeout_ms, connect_timeout_ms, user_agent, ca_file, proxy, max_body, http_version
function _M.new(opts)
  local o = { raw_headers = true }
  for k, v in pairs(opts) do o[k] = v end
  return setmetatable({ session = core.session(o) }, mt)
end

-- req = { method, url, headers = { "K: v" }, body, timeout_ms, fresh_connect }; a transport
-- must not modify req or its headers list (the client reuses them).
-- fresh_connect: the request must never be replayed by libcurl on a dead kept-alive
-- connection (a send without an idempotency key), so it gets a new connection.
-- -> { status, body, headers } | nil, kind, message, curlcode
function _M:request(req)
  local status, body, headers, code = self.session:request(req.method, req.url, req.headers,
                                                           req.body, req.timeout_ms,
                                                           req.fresh_connect)
  if not status then return nil, body, headers, code end
  return _M.response(status, body, headers)
end

-- Transfers that run side by side (curl multi): batches and tasks (chatmaid.sched).
-- token: integer chosen by the caller, unique among the transfers in flight.
function _M:add(token, req)
  return self.session:multi_add(token, req.method, req.url, req.headers, req.body,
                                req.timeout_ms, req.fresh_connect)
end

-- Completions: { token, status, body, headers (lazy) } or { token, kind, message, code }.
-- The core gives the ones with a status the lazy response metatable itself.
function _M:poll(wait_ms)
  return self.session:multi_poll(wait_ms, response_mt)
end
function _M:pending() return self.session:multi_pending() end
-- cancel(token): abort a transfer in flight; its completion is never reported.
function _M:cancel(token) return self.session:multi_remove(token) end
-- timeout() -> ms until poll should run again (0: now; -1: only on socket activity).
function _M:timeout() return self.session:multi_timeout() end
-- fds() -> { [fd] = "r" | "w" | "rw" } the sockets the transfers in flight wait on.
function _M:fds() return self.session:multi_fds() end
function _M:stats() return self.session:stats() end
function _M:close() return self.session:close() end

return _M
