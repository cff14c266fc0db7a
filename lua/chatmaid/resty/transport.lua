-- SPDX-License-Identifier: MIT
-- The OpenResty transport: HTTP/1.1 to the one API host over nginx cosockets
-- (ngx.socket.tcp), with the same request() contract and error kinds as chatmaid.transport
-- (the libcurl core), never blocking the worker. Kept-alive connections go back to a
-- per-worker pool only after a complete, reusable response. add/poll run transfers side by
-- side (one ngx.thread each), so send_batch and tasks keep N requests in flight.
-- In a phase without non-blocking I/O (init, init_worker, set, header/body filter, log,
-- balancer, exit_worker) request() fails with kind "validation": use ngx.timer.at.
local base_transport = require "chatmaid.transport"

local ngx = ngx   -- luacheck: ignore (nginx global)
local tcp = ngx.socket.tcp
local spawn, kill, wait_thread = ngx.thread.spawn, ngx.thread.kill, ngx.thread.wait
local co_running = coroutine.running
local concat, tonumber, find, sub = table.concat, tonumber, string.find, string.sub
local ceil = math.ceil

local _M = {}
local mt = { __index = _M }

-- The libcurl core's caps (csrc/session.c): whole header block, default body limit.
local MAX_HEADER_BYTES = 256 * 1024
local DEFAULT_MAX_BODY = 16 * 1024 * 1024
local MAX_CHUNK_LINE = 1024     -- a chunk-size line with extensions, or one trailer line

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
-- opts: timeout_ms (whole request), connect_timeout_ms, max_body (bytes),
-- keepalive_timeout_ms (idle time in the pool, default 60 s), keepalive_pool (idle
-- connections kept per worker, default 256). ca_file and proxy are libcurl options that
-- cosockets cannot honour: set, they make every request fail with kind "config" (nginx's
-- lua_ssl_trusted_certificate names the CA bundle instead).
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

-- ---- the response reader: every read bounded by the deadline and the caps ----
-- nginx restarts a socket's read timeout whenever bytes arrive, so one long receive would
-- let a server trickling a byte at a time run past the deadline. Every read here is a
-- receiveany (it returns as soon as bytes arrive) armed with the time left, into a buffer
-- of our own: r = { sock, deadline, buf, pos }.

-- ngx.now() is the event loop's clock, updated after every wait: every read below waits,
-- so it is current where it matters (ngx.update_time costs a clock read and formatting).
local function remaining(deadline)
  return ceil((deadline - ngx.now()) * 1000)
end

local function too_large_message(what, cap)
  if what == "response headers" then
    return "the response headers are larger than the " .. cap .. " byte limit"
  end
  return "response body is larger than the " .. cap .. " byte limit (max_body)"
end

-- One receiveany of at most `max` bytes within the time left -> data | nil, kind, message
local function recv(r, max, what)
  local ms = remaining(r.deadline)
  if ms <= 0 then return nil, "timeout", "deadline reached while reading the " .. what end
  local sock = r.sock
  sock:settimeout(ms)
  local data, err = sock:receiveany(max)
  if data then return data end
  if err == "timeout" then return nil, "timeout", "timed out while reading the " .. what end
  if err == "closed" then
    return nil, "transport", "the server closed the connection before the " .. what
                             .. " ended"
  end
  return nil, "transport", "reading the " .. what .. " failed: " .. tostring(err)
end

-- The text up to `sep` (consumed), refusing more than `cap` bytes before it.
-- -> text | nil, kind, message ("too_large": message is nil)
local function read_until(r, sep, cap, what)
  local from = r.pos
  while true do
    local buf = r.buf
    local i = find(buf, sep, from, true)
    if i then
      if i - r.pos > cap then return nil, "too_large" end
      local line = sub(buf, r.pos, i - 1)
      r.pos = i + #sep
      return line
    end
    if #buf - r.pos + 1 > cap then return nil, "too_large" end
    from = #buf - #sep + 2          -- a separator may straddle the next read
    if from < r.pos then from = r.pos end
    local data, kind, msg = recv(r, 65536, what)
    if not data then return nil, kind, msg end
    -- drop what was consumed, so the buffer never holds more than one unread part
    from = from - r.pos + 1
    r.buf, r.pos = sub(buf, r.pos) .. data, 1
  end
end

-- Exactly n bytes (the buffer first, then reads of at most what is still missing, so
-- nothing past them is read).
local function read_n(r, n, what)
  local buf, pos = r.buf, r.pos
  local avail = #buf - pos + 1
  if avail >= n then
    r.pos = pos + n
    return sub(buf, pos, pos + n - 1)
  end
  local parts, got = { sub(buf, pos) }, avail
  r.buf, r.pos = "", 1
  while got < n do
    local want = n - got
    local data, kind, msg = recv(r, want < 65536 and want or 65536, what)
    if not data then return nil, kind, msg end
    parts[#parts + 1] = data
    got = got + #data
  end
  return concat(parts)
end

-- Chunked body (RFC 9112 7.1): sizes checked against max_body before each chunk is read.
local function read_chunked(r, max)
  local parts, total = {}, 0
  while true do
    local line, kind, msg = read_until(r, "\r\n", MAX_CHUNK_LINE, "response body")
    if not line then
      if kind == "too_large" then return nil, "transport", "a chunk-size line is too long" end
      return nil, kind, msg
    end
    local hex = line:match("^(%x+)[ \t]*;") or line:match("^(%x+)[ \t]*$")
    if not hex or #hex > 8 then
      return nil, "transport", "invalid chunk size in the response (\""
                               .. line:sub(1, 16):gsub("%c", "?") .. "\")"
    end
    local size = tonumber(hex, 16)
    if size == 0 then break end
    total = total + size
    if total > max then return nil, "too_large", too_large_message("body", max) end
    local data
    data, kind, msg = read_n(r, size + 2, "response body")
    if not data then return nil, kind, msg end
    if sub(data, -2) ~= "\r\n" then
      return nil, "transport", "a chunk of the response is longer than its chunk size"
    end
    parts[#parts + 1] = sub(data, 1, -3)
  end
  while true do   -- trailers, up to the empty line
    local line, kind, msg = read_until(r, "\r\n", MAX_CHUNK_LINE, "response trailers")
    if not line then
      if kind == "too_large" then return nil, "transport", "a response trailer is too long" end
      return nil, kind, msg
    end
    if line == "" then break end
  end
  return concat(parts)
end

-- A body delimited by the connection's end (no length, not chunked), capped.
local function read_to_close(r, max)
  local parts = { sub(r.buf, r.pos) }
  local n = #parts[1]
  r.buf, r.pos = "", 1
  while n <= max do
    local data, kind, msg = recv(r, 65536, "response body")
    if not data then
      if kind == "transport" and find(msg, "closed the connection", 1, true) then
        return concat(parts)
      end
      return nil, kind, msg
    end
    n = n + #data
    parts[#parts + 1] = data
  end
  return nil, "too_large", too_large_message("body", max)
end

-- The value of the header line starting with `prefix` (lowercase, "\r\nname:") in the
-- lowercased block h, and where it starts. Plain finds: much cheaper than a pattern that
-- is tried at every position.
local function field(h, prefix)
  local at = find(h, prefix, 1, true)
  if not at then return nil end
  return h:match("^[ \t]*([^\r\n]*)", at + #prefix), at
end

-- -> status, body, raw header block, reusable | nil, kind, message
local function read_response(sock, method, max, deadline)
  local r = { sock = sock, deadline = deadline, buf = "", pos = 1 }
  local head, kind, msg, status, minor
  repeat   -- 1xx answers (100 Continue) come before the real one
    head, kind, msg = read_until(r, "\r\n\r\n", MAX_HEADER_BYTES, "response headers")
    if not head then
      if kind == "too_large" then
        msg = too_large_message("response headers", MAX_HEADER_BYTES)
      end
      return nil, kind, msg
    end
    local code
    minor, code = head:match("^HTTP/1%.([01]) (%d%d%d)")
    status = tonumber(code)
    if not status then
      return nil, "transport", "the server did not answer with an HTTP/1.x status line"
    end
  until status >= 200
  local h = head:lower()
  local te = field(h, "\r\ntransfer-encoding:")
  local cl, cl_at = field(h, "\r\ncontent-length:")
  local conn = field(h, "\r\nconnection:")
  local reusable = minor == "1" and not (conn and find(conn, "close", 1, true))
  local body
  if method == "HEAD" or status == 204 or status == 304 then
    body = ""
  elseif te and te:match("chunked[ \t]*$") then
    if cl then reusable = false end   -- both framings: chunked wins, connection not trusted
    body, kind, msg = read_chunked(r, max)
  elseif te and not te:match("^[ \t]*identity[ \t]*$") then
    return nil, "transport", "the response has a transfer coding other than chunked ("
                             .. te:sub(1, 40):gsub("%c", "?") .. ")"
  elseif cl then
    local len = cl:match("^(%d+)[ \t]*$")
    if not len or #len > 15 or find(h, "\r\ncontent-length:", cl_at + 1, true) then
      return nil, "transport", "invalid or repeated Content-Length in the response"
    end
    len = tonumber(len)
    if len > max then return nil, "too_large", too_large_message("body", max) end
    body, kind, msg = read_n(r, len, "response body")
  else
    reusable = false
    body, kind, msg = read_to_close(r, max)
  end
  if not body then return nil, kind, msg end
  -- bytes past the response (a Content-Length shorter than the body): never reused
  if r.pos <= #r.buf then reusable = false end
  -- the raw block, status line first, as the core gives it (parsed only when read)
  return status, body, head, reusable
end

-- ---- one request ----

local function connect(self, o, fresh, deadline)
  local sock = tcp()
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

-- req = { method, url, headers = { "K: v" }, body, timeout_ms, fresh_connect }
-- -> { status, body, headers (lazy) } | nil, kind, message
-- kinds: those of chatmaid.core (timeout, connect, resolve, tls, transport, too_large),
-- "validation" in a phase without non-blocking I/O, "config" for a setup that cannot work.
-- fresh_connect: a connection of its own, closed afterwards. Nothing is ever re-sent.
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

-- ---- transfers side by side (chatmaid.sched): one ngx.thread per transfer ----
-- A client (and so its transport) serves every request and timer of a worker, each with a
-- scheduler of its own (chatmaid.resty.detect) numbering its tokens from 1: the transfers
-- in flight are kept per request (ngx.ctx), as the light threads belong to it anyway.
-- Threads are spawned by poll(), so the coroutine that polls is their parent and reaps them
-- with ngx.thread.wait (a finished thread nobody waits for stays as a zombie until its
-- parent ends: a long batch would pile them up). A semaphore wakes the poller.

local semaphore
local by_request = setmetatable({}, { __mode = "k" })   -- ngx.ctx -> { [transport] = st }

-- The transfers of this transport in the current request: { queue, threads, done, sem }.
local function state(self)
  local ctx = ngx.ctx
  local t = by_request[ctx]
  if not t then
    t = setmetatable({}, { __mode = "k" })
    by_request[ctx] = t
  end
  local st = t[self]
  if not st then
    semaphore = semaphore or require "ngx.semaphore"
    st = { queue = {}, threads = {}, done = {}, sem = semaphore.new() }
    t[self] = st
  end
  return st
end

local function run(self, st, token, req)
  local res, kind, msg = self:request(req)
  if not st.threads[token] then return end   -- cancelled
  local c = res or { kind = kind, message = msg }
  c.token = token
  st.done[#st.done + 1] = c
  if st.sleeping then
    st.sleeping = false
    st.sem:post(1)
  end
end

-- add(token, req) -> true | nil, kind, message
function _M:add(token, req)
  local perr = _M.phase_error()
  if perr then return nil, "validation", perr end
  local st = state(self)
  st.queue[#st.queue + 1] = { token, req }
  st.threads[token] = true    -- the thread comes at the next poll
  return true
end

local function start_queued(self, st)
  local q = st.queue
  if q[1] == nil then return end
  st.queue = {}
  local parent = co_running()
  for i = 1, #q do
    local token, req = q[i][1], q[i][2]
    if st.threads[token] == true then
      local entry = { parent = parent }
      st.threads[token] = entry
      local th, err = spawn(run, self, st, token, req)
      if th then
        entry.th = th
      else
        st.threads[token] = nil
        st.done[#st.done + 1] = { token = token, kind = "transport",
                                  message = "could not start an nginx light thread: "
                                            .. tostring(err) }
      end
    end
  end
end

-- poll(wait_ms) -> completions { token, status, body, headers } | { token, kind, message }
function _M:poll(wait_ms)
  local st = state(self)
  start_queued(self, st)
  if st.done[1] == nil and next(st.threads) ~= nil then
    if wait_ms > 0 then
      st.sleeping = true
      st.sem:wait(wait_ms / 1000)
      st.sleeping = false
    else
      -- a step that must not wait still lets the event loop (and so the threads) run:
      -- a task yielding every step would otherwise spin the worker
      ngx.sleep(0)
    end
  end
  local done = st.done
  if done[1] == nil then return done end
  st.done = {}
  local me, threads = co_running(), st.threads
  for i = 1, #done do
    local e = threads[done[i].token]
    threads[done[i].token] = nil
    -- reaps the finished thread (only its parent may)
    if type(e) == "table" and e.th and e.parent == me then wait_thread(e.th) end
  end
  return done
end

function _M:pending()
  local n = 0
  for _ in pairs(state(self).threads) do n = n + 1 end
  return n
end

-- cancel(token): the transfer's thread is killed (its socket closed), or its result dropped.
function _M:cancel(token)
  local st = state(self)
  local e = st.threads[token]
  if not e then return false end
  st.threads[token] = nil
  if type(e) == "table" and e.th and e.parent == co_running() then kill(e.th) end
  return true
end

function _M.close() return true end

return _M
