-- SPDX-License-Identifier: MIT
-- The OpenResty transports: same request() contract as chatmaid.transport, without ever
-- blocking the nginx worker.
--   "thread" (default): the libcurl core in nginx's thread pool (ngx.run_worker_thread,
--            lua-nginx-module >= 0.10.21; needs `thread_pool <name> threads=N;` in nginx.conf)
--   "http":  lua-resty-http on cosockets, when the user has it installed.
-- In a phase without non-blocking I/O (init, init_worker, set, header/body filter, log,
-- balancer, exit_worker) request() fails with kind "validation": use ngx.timer.at.
local base_transport = require "chatmaid.transport"

local ngx = ngx   -- luacheck: ignore (nginx global)

local _M = { DEFAULT_POOL = "chatmaid" }
local mt = { __index = _M }

-- Phases where a request may wait on the network without blocking the event loop.
local IO_PHASES = {
  rewrite = true, server_rewrite = true, access = true, content = true, timer = true,
  ssl_cert = true, ssl_session_fetch = true, ssl_client_hello = true, preread = true,
}
_M.IO_PHASES = IO_PHASES

-- phase_error() -> nil | message for the current phase
function _M.phase_error()
  local phase = ngx.get_phase()
  if IO_PHASES[phase] then return nil end
  return "chatmaid cannot make HTTP requests in nginx's " .. phase .. " phase (no "
         .. "non-blocking I/O there, and a blocking call would stall the worker): run it "
         .. "from ngx.timer.at(0, function() ... end), or from a rewrite/access/content "
         .. "handler"
end

-- new(opts) -> transport
-- opts: backend ("thread" | "http"; default "thread"), thread_pool (default "chatmaid"),
-- timeout_ms, connect_timeout_ms, ca_file, proxy, max_body, http_version (as chatmaid.core),
-- keepalive_timeout_ms / keepalive_pool (http backend).
function _M.new(opts)
  opts = opts or {}
  local backend = opts.backend or "thread"
  if backend ~= "thread" and backend ~= "http" then
    error('chatmaid.resty: backend must be "thread" or "http" (got ' .. tostring(backend)
          .. ")", 2)
  end
  local self = { backend = backend, pool = opts.thread_pool or _M.DEFAULT_POOL,
                 blocking = false, sopts = {} }
  for _, k in ipairs{ "timeout_ms", "connect_timeout_ms", "ca_file", "proxy", "max_body",
                      "http_version" } do
    self.sopts[k] = opts[k]
  end
  self.keepalive_timeout_ms = opts.keepalive_timeout_ms or 60000
  self.keepalive_pool = opts.keepalive_pool or 16
  return setmetatable(self, mt)
end

local function thread_request(self, req)
  -- pcall: run_worker_thread raises on misuse (e.g. an unknown pool in some versions)
  local pok, ok, status, body, headers, code = pcall(ngx.run_worker_thread, self.pool,
    "chatmaid.resty.thread", "request", self.sopts, req.method, req.url, req.headers,
    req.body, req.timeout_ms, req.fresh_connect or false)
  if not pok or not ok then
    local why = tostring(pok and status or ok)
    if not ngx.run_worker_thread then
      -- configuration errors (kind "config") are not retried: they fail the same way again
      return nil, "config", "this nginx has no ngx.run_worker_thread (lua-nginx-module "
                            .. ">= 0.10.21 needed), or use backend \"http\""
    end
    if why:find("thread pool", 1, true) or why:find("not found", 1, true) then
      return nil, "config", "nginx worker thread failed: " .. why .. ": add `thread_pool "
                            .. self.pool .. " threads=16;` to the main (top-level) context "
                            .. "of nginx.conf"
    end
    return nil, "transport", "nginx worker thread failed: " .. why
  end
  -- status..code are the returns of chatmaid.resty.thread.request
  if not status then return nil, body, headers, code end
  return base_transport.response(status, body, headers)
end

-- lua-resty-http's errors are strings; map the ones we can onto the core's kinds.
local function http_kind(err)
  err = tostring(err)
  if err:find("timeout", 1, true) then return "timeout" end
  if err:find("resolve", 1, true) or err:find("no resolver", 1, true) then return "resolve" end
  if err:find("refused", 1, true) or err:find("connect", 1, true) then return "connect" end
  if err:find("handshake", 1, true) or err:find("certificate", 1, true) then return "tls" end
  return "transport"
end

local function http_request(self, req)
  local okm, http = pcall(require, "resty.http")
  if not okm then
    return nil, "config", "backend \"http\" needs lua-resty-http (resty.http): "
                             .. tostring(http)
  end
  local c = http.new()
  local t = req.timeout_ms or self.sopts.timeout_ms or 30000
  c:set_timeouts(self.sopts.connect_timeout_ms or t, t, t)
  local headers = {}
  for _, line in ipairs(req.headers or {}) do
    local k, v = line:match("^([^:]+):%s*(.*)$")
    if k then headers[k] = v end
  end
  local res, err = c:request_uri(req.url, {
    method = req.method, headers = headers, body = req.body,
    ssl_verify = true, keepalive = not req.fresh_connect,
    keepalive_timeout = self.keepalive_timeout_ms, keepalive_pool = self.keepalive_pool,
  })
  if not res then return nil, http_kind(err), tostring(err), nil end
  local max = self.sopts.max_body or 16 * 1024 * 1024
  if res.body and #res.body > max then
    return nil, "too_large", "response body over " .. max .. " bytes", nil
  end
  local h = {}
  for k, v in pairs(res.headers or {}) do
    h[k:lower()] = type(v) == "table" and v[#v] or v
  end
  return { status = res.status, body = res.body or "", headers = h }
end

-- req = { method, url, headers = { "K: v" }, body, timeout_ms, fresh_connect }
-- -> { status, body, headers } | nil, kind, message, code
-- kinds: those of chatmaid.core, plus "validation" in a phase without non-blocking I/O and
-- "config" for a setup that cannot work (no thread pool, no lua-resty-http): not retried.
function _M:request(req)
  local perr = _M.phase_error()
  if perr then return nil, "validation", perr end
  if self.backend == "http" then return http_request(self, req) end
  return thread_request(self, req)
end

function _M.close() return true end

return _M
