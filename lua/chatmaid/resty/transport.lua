-- SPDX-License-Identifier: MIT

--- The cosocket transport: the client's HTTP transport inside nginx.
-- The OpenResty transport: HTTP/1.1 to the one API host over nginx cosockets
-- (ngx.socket.tcp), with the same request() contract and error kinds as chatmaid.transport
-- (the libcurl core), never blocking the worker. Kept-alive connections go back to a
-- per-worker pool only after a complete, reusable response. add/poll run transfers side by
-- side (one ngx.thread each), so send_batch and tasks keep N requests in flight.
-- In a phase without non-blocking I/O (init, init_worker, set, header/body filter, log,
-- balancer, exit_worker) request() fails with kind "validation": use ngx.timer.at.
-- @module chatmaid.resty.transport
local base_transport = require "chatmaid.transport"
local response = require "chatmaid.resty.response"
local threads = require "chatmaid.resty.threads"

local ngx = ngx   -- luacheck: ignore (nginx global; only used inside nginx)
local concat, tonumber, find = table.concat, tonumber, string.find
local read_response, remaining = response.read, response.remaining

local _M = {}
local mt = { __index = _M }

-- The libcurl core's default body limit (csrc/session.c).
local DEFAULT_MAX_BODY = 16 * 1024 * 1024

-- Phases where a request may wait on the network without blocking the event loop.
local IO_PHASES = {
  rewrite = true, server_rewrite = true, access = true, content = true, timer = true,
  ssl_cert = true, ssl_session_fetch = true, ssl_client_hello = true, preread = true,
}
_M.IO_PHASES = IO_PHASES

--- Whether the current nginx phase can make HTTP requests.
-- phase_error() -> nil | message for the current phase
-- @treturn ?string nil in a phase with non-blocking I/O, else a message saying to use ngx.timer.at
function _M.phase_error()
  local phase = ngx.get_phase()
  if IO_PHASES[phase] then return nil end
  return "chatmaid cannot make HTTP requests in nginx's " .. phase .. " phase (no "
         .. "non-blocking I/O there, and a blocking call would stall the worker): run it "
         .. "from ngx.timer.at(0, function() ... end), or from a rewrite/access/content "
         .. "handler"
end

--- Make a cosocket transport (chatmaid.resty.transport).
-- new(opts) -> transport
-- opts: timeout_ms (whole request), connect_timeout_ms, max_body (bytes),
-- keepalive_timeout_ms (idle time in the pool, default 60 s), keepalive_pool (idle
-- connections kept per worker, default 256). ca_file and proxy are libcurl options that
-- cosockets cannot honour: set, they make every request fail with kind "config" (nginx's
-- lua_ssl_trusted_certificate names the CA bundle instead).
-- @tparam[opt] table opts timeout_ms (30000, whole request), connect_timeout_ms (10000),
--   max_body (16 MiB), keepalive_pool (256), keepalive_timeout_ms (60000); ca_file and
--   proxy make every request fail with kind "config"
-- @treturn table the transport
function _M.new(opts)
  opts = opts or {}
  local self = {
    backend = "cosocket",
    timeout_ms = opts.timeout_ms or 30000,
    connect_timeout_ms = opts.connect_timeout_ms or 10000,
    max_body = opts.max_body or DEFAULT_MAX_BODY,
    keepalive_timeout_ms = opts.keepalive_timeout_ms or 60000,
    keepalive_pool = opts.keepalive_pool or 256,
    hosts = {},                       -- url prefix -> parsed origin (a handful at most)
    urls = {}, n_urls = 0,            -- url -> { origin, path }
  }
  if opts.ca_file then
    self.config_error = "ca_file cannot be used inside nginx: name the CA bundle in "
      .. "nginx.conf instead (lua_ssl_trusted_certificate /path/ca.pem; and "
      .. "lua_ssl_verify_depth 5;)"
  elseif opts.proxy then
    self.config_error = "proxy is not supported inside nginx (cosockets connect to the "
      .. "API host directly)"
  end
  return setmetatable(self, mt)
end

-- "https://host:port/path?q" -> origin { tls, host, port, host_header, opts }, path.
-- Parsed once per URL (a client sends to the same few), at most URL_CACHE of them kept.
local URL_CACHE = 64
local function parse(self, url)
  local scheme, authority, path = url:match("^(https?)://([^/?#]+)(.*)$")
  if not scheme then return nil end
  local prefix = scheme .. "://" .. authority
  local o = self.hosts[prefix]
  if not o then
    local host, port = authority:match("^%[([^%]]+)%]:?(%d*)$")   -- [::1]:8080
    if not host then host, port = authority:match("^([^:]+):?(%d*)$") end
    if not host then return nil end
    local tls = scheme == "https"
    port = tonumber(port) or (tls and 443 or 80)
    local pool = "chatmaid|" .. prefix
    o = { tls = tls, host = host, port = port, host_header = "Host: " .. authority .. "\r\n",
          opts = { pool = pool, pool_size = self.keepalive_pool },
          -- fresh_connect: a pool that is never fed, so always a connection of its own
          fresh_opts = { pool = pool .. "|fresh", pool_size = 1 } }
    self.hosts[prefix] = o
  end
  if path == "" then path = "/" end
  return { o, path }
end

local function origin(self, url)
  local e = self.urls[url]
  if not e then
    e = parse(self, url)
    if not e then return nil end
    if self.n_urls >= URL_CACHE then self.urls, self.n_urls = {}, 0 end
    self.urls[url] = e
    self.n_urls = self.n_urls + 1
  end
  return e[1], e[2]
end

-- ---- one request ----

local function connect(self, o, fresh, deadline)
  local sock = ngx.socket.tcp()
  local left = remaining(deadline)
  if left <= 0 then return nil, "timeout", "deadline reached before connecting" end
  local ct = self.connect_timeout_ms < left and self.connect_timeout_ms or left
  sock:settimeouts(ct, left, left)
  local ok, err = sock:connect(o.host, o.port, fresh and o.fresh_opts or o.opts)
  if not ok then
    err = tostring(err)
    if err == "timeout" then
      return nil, "timeout", "timed out connecting to " .. o.host .. ":" .. o.port
    end
    if find(err, "resolve", 1, true) or find(err, "resolver", 1, true) then
      local hint = find(err, "no resolver", 1, true)
        and " (add a `resolver` line to nginx.conf, e.g. `resolver 127.0.0.53 ipv6=off;`:"
            .. " nginx does not read /etc/hosts or resolv.conf)" or ""
      return nil, "resolve", "could not resolve " .. o.host .. ": " .. err .. hint
    end
    return nil, "connect", "could not connect to " .. o.host .. ":" .. o.port .. ": " .. err
  end
  local reused = sock:getreusedtimes() > 0
  if o.tls and not reused then
    -- chain and host name checked by nginx against lua_ssl_trusted_certificate
    local sok, serr = sock:sslhandshake(false, o.host, true)
    if not sok then
      sock:close()
      return nil, "tls", "TLS handshake with " .. o.host .. " failed: " .. tostring(serr)
             .. " (nginx.conf must name a CA bundle that signs the API's certificate: "
             .. "lua_ssl_trusted_certificate /etc/ssl/certs/ca-certificates.crt; "
             .. "lua_ssl_verify_depth 5;)"
    end
  end
  return sock, reused
end

-- The client's header lists are read-only and reused for every request (the transport
-- contract), so each becomes its block of "Name: value\r\n" lines once.
local header_blocks = setmetatable({}, { __mode = "k" })
local function header_block(headers)
  local b = header_blocks[headers]
  if not b then
    b = headers[1] and concat(headers, "\r\n") .. "\r\n" or ""
    header_blocks[headers] = b
  end
  return b
end

-- The request bytes: request line, Host, the client's header lines, Content-Length, body.
-- A table: cosocket send() writes its parts without concatenating them.
local function request_parts(o, req, path)
  local body, method = req.body, req.method
  local length = ""
  if body or method == "POST" or method == "PUT" or method == "PATCH" then
    length = "Content-Length: " .. (body and #body or 0) .. "\r\n"
  end
  return { method, " ", path, " HTTP/1.1\r\n", o.host_header, header_block(req.headers),
           length, "\r\n", body or "" }
end

local REPLAY_REFUSED = "the reused connection closed before the response arrived; the "
  .. "request was not sent again (the server may have received it)"

--- Make one HTTP request; never re-sent.
-- req = { method, url, headers = { "K: v" }, body, timeout_ms, fresh_connect }
-- -> { status, body, headers (lazy) } | nil, kind, message
-- kinds: those of chatmaid.core (timeout, connect, resolve, tls, transport, too_large),
-- "validation" in a phase without non-blocking I/O, "config" for a setup that cannot work.
-- fresh_connect: a connection of its own, closed afterwards. Nothing is ever re-sent.
-- @tparam table req method, url, headers (array of "Name: value"), body, timeout_ms,
--   fresh_connect
-- @treturn[1] table { status, body, headers }
-- @return[2] nil
-- @treturn[2] string kind: timeout, connect, resolve, tls, transport, too_large, config or
--   validation (a phase without non-blocking I/O)
-- @treturn[2] string message
function _M:request(req)
  local perr = _M.phase_error()
  if perr then return nil, "validation", perr end
  if self.config_error then return nil, "config", self.config_error end
  local o, path = origin(self, req.url)
  if not o then return nil, "transport", "unsupported URL (http:// or https:// only)" end
  local deadline = ngx.now() + (req.timeout_ms or self.timeout_ms) / 1000
  local sock, reused, msg = connect(self, o, req.fresh_connect, deadline)
  if not sock then return nil, reused, msg end
  local left = remaining(deadline)
  if left <= 0 then
    sock:close()
    return nil, "timeout", "deadline reached before the request was sent"
  end
  sock:settimeout(left)
  local ok, err = sock:send(request_parts(o, req, path))
  if not ok then
    sock:close()
    if err == "timeout" then return nil, "timeout", "timed out sending the request" end
    if reused then return nil, "transport", REPLAY_REFUSED end
    return nil, "transport", "sending the request failed: " .. tostring(err)
  end
  local status, body, head, reusable = read_response(sock, req.method, self.max_body,
                                                     deadline)
  if not status then
    sock:close()
    -- a kept-alive connection the server had closed: the core's words (nothing re-sent)
    if reused and body == "transport" and find(head, "response headers", 1, true) then
      return nil, "transport", REPLAY_REFUSED
    end
    return nil, body, head
  end
  if reusable and not req.fresh_connect then
    -- fails (and closes) with unread bytes left: a body longer than its Content-Length
    if not sock:setkeepalive(self.keepalive_timeout_ms, self.keepalive_pool) then
      sock:close()
    end
  else
    sock:close()
  end
  return base_transport.response(status, body, head)
end

threads.install(_M)

--- Close the transport: nothing to do (the pool belongs to the worker).
-- @treturn boolean true
function _M.close() return true end

return _M
