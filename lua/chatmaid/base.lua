-- SPDX-License-Identifier: MIT
-- The request machinery shared by the Chatmaid v1 client and the conversations client:
-- options, transport, the attempt/retry loop, hooks, and response -> value | err mapping.
-- An API client is a class made with base.class(); it adds its endpoint methods.
local core = require "chatmaid.core"
local decode_envelope = require("chatmaid.envelope").decode
local errors = require "chatmaid.errors"
local options = require "chatmaid.options"
local retry = require "chatmaid.retry"
local sched = require "chatmaid.sched"
local transport_mod = require "chatmaid.transport"
local json = require("cjson").new()   -- private instance: never changes the user's cjson

local _M = {}

_M.VERSION = core._VERSION

-- Secrets live outside the client table, so dumping or inspecting a client never shows the
-- key. Weak keys: a collected client takes its secret with it.
local secrets = setmetatable({}, { __mode = "k" })

_M.OPTION_TYPES = {
  api_key = "string", base_url = "string", timeout = "number", connect_timeout = "number",
  max_retries = "number", max_retry_wait = "number", user_agent = "string",
  ca_file = "string", proxy = "string|boolean", max_body = "number", http_version = "string",
  transport = "table|userdata", sleep = "function", now = "function", random = "function",
  on_request = "function", on_response = "function",
}

-- Where a client's batches send, for their journal's header (chatmaid.journal.destination:
-- the key's scope and the API's host; never the key). nil for a table that is not a client
-- (a stand-in with a send_batch of its own: where it sends is unknown).
function _M.destination(client)
  local auth = secrets[client]
  if not auth then return nil end
  return require("chatmaid.journal").destination(client.base_url,
                                                 auth:match("^Authorization: Bearer (.*)$"))
end

-- The "Authorization: Bearer ..." header line of a client, for code that builds its own
-- requests (batch sending over curl multi). Never store or log it.
-- The headers of every request: auth, Accept, User-Agent, and Content-Type with a body.
-- User-Agent goes in the list rather than CURLOPT_USERAGENT, which libcurl re-formats on
-- every request (measured: half the cost).
-- The two lists are built once per client: transports only read them.
local header_cache = setmetatable({}, { __mode = "k" })
function _M.request_headers(client, has_body)
  local c = header_cache[client]
  if not c then
    c = { { secrets[client], "Accept: application/json", client._ua_header } }
    c[2] = { c[1][1], c[1][2], c[1][3], "Content-Type: application/json" }
    header_cache[client] = c
  end
  return has_body and c[2] or c[1]
end

local NO_OPTIONS = {}
local transfer, sleep = sched.transfer, sched.sleep

-- Per-call options accepted by every method that takes a parameter table.
_M.CALL_OPTIONS = { timeout = "number", max_retries = "number", max_retry_wait = "number" }

-- os.getenv that reads an empty variable (`CHATMAID_BASE_URL=`) as unset.
function _M.getenv(name)
  local v = os.getenv(name)
  if v == "" then return nil end
  return v
end

-- The known name nearest to an unknown one, or nil (chatmaid.options).
_M.suggest = options.suggest
local check_names, PARAMETERS = options.check_table, options.PARAMETERS

-- Raises at `level` (default: the caller of the public method) naming the bad or unknown
-- parameter (with the nearest known name, if one is close). A spec of `true` accepts any
-- type (the validator reports the value). chatmaid.options words and checks the names.
-- index: t is the item where[index] of a list (named so only in a message).
function _M.check_table(where, t, allowed, extra, level, index)
  level = level or 3
  check_names(PARAMETERS, where, t, allowed, extra, level, index)
  if t.max_retries ~= nil and (t.max_retries < 0 or t.max_retries ~= math.floor(t.max_retries)) then
    error("chatmaid: " .. where .. ": max_retries must be a non-negative integer", level)
  end
end

local function default_random()
  local b1, b2, b3 = core.random_bytes(3):byte(1, 3)
  return (b1 * 65536 + b2 * 256 + b3) / 16777216
end

-- The parameter a validation message is about: by convention every message starts with the
-- parameter's name ("to must be ...", "media_urls[2] must ...", "components[1].type ...").
local function param_of(message)
  return message:match("^([%a_][%w_]*)[%s%[%.:]")
end

-- Validation failure: nothing was sent. problems: a message, or a list of messages and
-- { param = name, message = text } entries (for a message that does not start with the
-- parameter's name). err.messages lists the texts; err.fields the { param, message } pairs
-- (param: the top-level parameter, as passed: "to", "media_urls", "from", "api_key", ...).
function _M.validation(method, path, problems)
  if type(problems) ~= "table" then problems = { problems } end
  local messages, fields = {}, {}
  for i, p in ipairs(problems) do
    if type(p) == "table" then
      messages[i] = p.message
      fields[i] = { param = p.param, message = p.message }
    else
      messages[i] = p
      fields[i] = { param = param_of(p), message = p }
    end
  end
  return nil, errors.new("validation", table.concat(messages, "; "),
                         { messages = messages, fields = fields, method = method, path = path })
end

-- no_route(err) -> whether a 404 is the server's "no such route" (Express, which the API and
-- the sandbox run on, answers "Cannot GET /path") rather than the API's "no such resource":
-- then the base URL or the path is wrong, not an id.
function _M.no_route(err)
  local m = type(err) == "table" and err.status == 404 and type(err.messages) == "table"
            and err.messages[1]
  return type(m) == "string" and m:find("^Cannot %u+ /") ~= nil
end

-- Says what a not_found error was about (err.resource: "message", "phone_number",
-- "sender_phone", "contact", "conversation"; err.resource_id: the id or number asked for).
-- Returns nil, err for a tail return.
function _M.not_found(err, resource, id)
  if err and err.kind == "not_found" then err.resource, err.resource_id = resource, id end
  return nil, err
end

-- Makes a client class. spec.name: for messages ("chatmaid.client");
-- spec.bare_json_ok: a 2xx JSON object without `success` is a valid answer (conversations).
function _M.class(spec)
  local cls = {}
  local mt = { __index = cls }
  cls._mt = mt

  function mt.__tostring(c)
    return spec.name .. " (" .. (c.environment and (c.environment .. ", ") or "") .. c.base_url
           .. (c.closed and ", closed)" or ")")
  end

  -- Checks options common to every client and fills self. Raises on programmer mistakes
  -- (level 3: the caller of new). Returns the client (not yet validated for key/base_url).
  function cls._init(self, opts, key, base)
    for _, name in ipairs{ "timeout", "connect_timeout", "max_retry_wait", "max_body" } do
      local v = opts[name]
      if v ~= nil and not (v > 0 or (name == "max_retry_wait" and v == 0)) then
        error("chatmaid: new: " .. name .. " must be a positive number", 3)
      end
    end
    if opts.http_version and opts.http_version ~= "1.1" and opts.http_version ~= "2" then
      error('chatmaid: new: http_version must be "1.1" or "2"', 3)
    end
    if opts.proxy == true then error("chatmaid: new: proxy must be a URL string or false", 3) end
    if opts.transport and type(opts.transport.request) ~= "function" then
      error("chatmaid: new: transport must have a request method", 3)
    end
    if opts.user_agent and opts.user_agent:find("%c") then
      error("chatmaid: new: user_agent must not contain control characters", 3)
    end
    self.base_url = base
    self.timeout = opts.timeout or 30
    self.max_retries = opts.max_retries or 2
    self.max_retry_wait = opts.max_retry_wait or 60
    self.sleep = opts.sleep or core.sleep
    self.now = opts.now or core.monotime
    self.random = opts.random or default_random
    self.on_request = opts.on_request
    self.on_response = opts.on_response
    local ua = "lua-chatmaid/" .. _M.VERSION .. " " .. core.curl_version .. " " .. _VERSION
    if opts.user_agent then ua = ua .. " " .. opts.user_agent end
    self._ua_header = "User-Agent: " .. ua
    -- HTTP/1.1 by default: on one sequential kept-alive connection it measured faster than
    -- HTTP/2 over TLS (bench/RESULTS.md); http_version = "2" opts in.
    -- OpenResty (issue 7): inside an nginx worker libcurl would block every other request,
    -- so chatmaid.resty.detect fills in what the caller left unset: a non-blocking transport,
    -- ngx.sleep, ngx.now. Outside nginx (no ngx.get_phase) this costs one rawget.
    local ngx = rawget(_G, "ngx")
    if ngx and ngx.get_phase then require("chatmaid.resty.detect").apply(self, opts) end
    self.transport = opts.transport or self.transport or transport_mod.new{
      timeout_ms = math.ceil(self.timeout * 1000),
      connect_timeout_ms = math.ceil((opts.connect_timeout or 10) * 1000),
      ca_file = opts.ca_file, proxy = opts.proxy,
      max_body = opts.max_body, http_version = opts.http_version or "1.1",
    }
    secrets[self] = "Authorization: Bearer " .. key
    return setmetatable(self, mt)
  end

  function cls._check_open(self, where)
    if getmetatable(self) ~= mt then
      error("chatmaid: " .. where .. " must be called as client:" .. where .. "(...)", 3)
    end
    if self.closed then error("chatmaid: attempt to use a closed client (" .. where .. ")", 3) end
  end

  -- Idempotent; also __close (Lua 5.4 `local c <close>`). The transport's session frees its
  -- libcurl handles on __gc too, so a forgotten client leaks nothing.
  function cls.close(self)
    if getmetatable(self) ~= mt then
      error("chatmaid: close must be called as client:close()", 2)
    end
    if not self.closed then
      self.closed = true
      local s = sched.get(self)
      if s then s:close("client closed") end
      if self.transport.close then self.transport:close() end
    end
    return true
  end
  mt.__close = cls.close

  -- ---- tasks (chatmaid.sched): non-blocking use from a game or app main loop ----

  -- client:spawn(fn, ...) -> task. fn(...) runs inside client:step(); every call on this
  -- client made inside it waits without blocking (a transfer on the curl multi, a timer).
  function cls.spawn(self, fn, ...)
    cls._check_open(self, "spawn")
    if type(fn) ~= "function" then
      error("chatmaid: spawn expects a function (got " .. type(fn) .. ")", 2)
    end
    return sched.of(self):spawn(fn, ...)
  end

  -- client:step([timeout]) -> number of tasks still running. Does the work that is ready,
  -- waiting at most `timeout` seconds (default 0) for I/O or a timer.
  function cls.step(self, timeout)
    cls._check_open(self, "step")
    if timeout ~= nil and (type(timeout) ~= "number" or timeout ~= timeout or timeout < 0) then
      error("chatmaid: step expects a timeout in seconds >= 0 (got " .. tostring(timeout) .. ")", 2)
    end
    local s = sched.get(self)
    if not s then return 0 end
    return s:step(timeout)
  end

  -- client:step_timeout() -> seconds until step() should next be called (0: now), or nil when
  -- no task is running. At most sched.MAX_WAIT while tasks run.
  function cls.step_timeout(self)
    cls._check_open(self, "step_timeout")
    local s = sched.get(self)
    if not s then return nil end
    return s:timeout()
  end

  -- client:fds() -> { [fd] = "r" | "w" | "rw" }: the sockets to watch for step().
  function cls.fds(self)
    cls._check_open(self, "fds")
    local s = sched.get(self)
    if not s then return {} end
    return s:fds()
  end

  -- The last HTTP exchange: method, path, attempt, elapsed, status, headers (for debugging).
  function cls.last_response(self)
    cls._check_open(self, "last_response")
    local l = self._last
    if not l then return nil end
    local res = l.res
    return { method = l.method, path = l.path, attempt = l.attempt, elapsed = l.elapsed,
             status = res and res.status, headers = res and res.headers }
  end

  cls._request = _M.request
  cls._interpret = _M.interpret
  cls._bare_json_ok = spec.bare_json_ok or false
  return cls
end

local TRANSPORT_MESSAGES = {
  connect = "could not connect to the API",
  resolve = "could not resolve the API host name",
  tls = "TLS failed (certificate not trusted, or handshake error); set ca_file for a "
        .. "private CA: verification cannot be switched off",
  too_large = "response refused",
  config = "the transport is not configured",
  nomem = "out of memory",
  transport = "the connection failed",
}

-- The message of a non-2xx answer that is not an error envelope. ok, data: what
-- core.decode_envelope returned (ok nil: data is why the body is not JSON). A redirect names
-- its target (text from the network: control characters dropped, length capped).
function _M.status_message(status, headers, ok, data)
  if status >= 300 and status < 400 then
    local loc = headers["location"]
    if type(loc) == "string" and loc ~= "" then
      loc = loc:gsub("%c", ""):sub(1, 200)
      return "HTTP " .. status .. " redirect to " .. loc .. " (redirects are not followed)"
    end
    return "HTTP " .. status .. " redirect (redirects are not followed)"
  end
  if ok ~= nil then return "HTTP " .. status .. " with JSON that is not an error envelope" end
  return "HTTP " .. status .. " with " .. tostring(data)
end

-- A transport result -> value | nil, err
function _M.interpret(self, method, path, res, kind, msg, code, timeout)
  local ok, data, enveloped
  if res then
    -- the common answer first, before anything is allocated for an error
    local status = res.status
    ok, data, enveloped = decode_envelope(status, res.body)
    if ok and data ~= nil and (enveloped or self._bare_json_ok) and status >= 200
       and status < 300 then
      return data
    end
  end
  local f = { method = method, path = path }
  if not res then
    f.reason, f.curl_code = kind, code
    if kind == "timeout" then
      return nil, errors.new("timeout", "no complete response within " .. timeout .. " s ("
                             .. tostring(msg) .. ")", f)
    end
    -- a configuration error (ca_file or proxy inside nginx, ...) fails the same way each time
    if kind == "tls" or kind == "too_large" or kind == "nomem" or kind == "config" then
      f.retryable = false
    end
    return nil, errors.new("transport", (TRANSPORT_MESSAGES[kind] or "transport failure")
                           .. ": " .. tostring(msg), f)
  end
  local status = res.status
  f.status = status
  if status >= 200 and status < 300 then
    if ok and (enveloped or self._bare_json_ok) and data ~= nil then return data end
    -- Every error carries the request id, when the answer has one. The docs name no request
    -- id header; X-Request-Id is the common one (proxies add it too). Headers are parsed
    -- lazily, so a success never pays for this.
    f.request_id = res.headers["x-request-id"]
    if ok and data == nil then
      return nil, errors.new("decode", "HTTP " .. status .. " envelope says success but has "
                             .. "no data", f)
    end
    if ok and (enveloped or self._bare_json_ok) then return data end
    if ok then
      return nil, errors.new("decode", "HTTP " .. status .. " with JSON that is not the "
                             .. "Chatmaid envelope (no success field)", f)
    end
    if ok == false then
      f.error, f.messages, f.details = data.error, data.messages, data.details
      f.retryable = false
      return nil, errors.new("server", "HTTP " .. status .. " but the envelope says "
                             .. "success:false: " .. tostring(data.message or "no message"), f)
    end
    return nil, errors.new("decode", "HTTP " .. status .. " with " .. data, f)
  end
  -- Non-2xx: the status decides the kind, whatever the body is (a 502 HTML page from a
  -- proxy is still a server error, and still worth a retry).
  local ekind = errors.kind_for_status(status)
  f.request_id = res.headers["x-request-id"]
  local message
  if ok == false then
    f.error, f.messages, f.details = data.error, data.messages, data.details
    f.retry_after = retry.server_delay(data.retry_after)
    message = data.message
    if message == nil or message == "" then message = "HTTP " .. status end
  else
    f.messages = setmetatable({}, core.array_mt)
    message = _M.status_message(status, res.headers, ok, data)
  end
  if f.retry_after == nil then
    f.retry_after = retry.parse_retry_after(res.headers["retry-after"])
  end
  if status == 404 and _M.no_route(f) then
    -- say what was configured and what to change, not just the server's "Cannot GET ..."
    message = message .. ": the server has no such route; check base_url (" .. self.base_url
              .. "): it must be the API's root URL"
              .. (self.DEFAULT_BASE_URL and (", such as " .. self.DEFAULT_BASE_URL) or "")
  end
  if self.classify then self:classify(f) end   -- API-specific tweaks (conversations)
  -- never a negative, zero or NaN delay from the server: err.retry_after is safe to sleep on
  f.retry_after = retry.server_delay(f.retry_after)
  return nil, errors.new(ekind, message, f)
end

-- may_have_reached(res, kind) -> false only when this attempt provably created nothing: no
-- connection was made (connect, resolve, tls, config), or the server refused the request
-- with a 4xx. A timeout, a broken connection, a 5xx or an unreadable 2xx may hide a message.
local NEVER_LEFT = { connect = true, resolve = true, tls = true, config = true }
function _M.may_have_reached(res, kind)
  if res then return not (res.status >= 400 and res.status < 500) end
  return not NEVER_LEFT[kind]
end

-- The one request pipeline: hooks, attempts, retries, last_response. Every request of the
-- library goes through here (sequential calls, tasks and each item of send_batch).
-- o: per-call options (timeout, max_retries, max_retry_wait, and o.no_replay for a request
-- that must never reach the server twice); idem: the idempotency key.
-- o.gate (send_batch): gate:enter(client) before each attempt waits for a place and the
-- pacer, false when the batch is stopping (then -> nil, false: nothing sent);
-- gate:hook(fn, arg) calls on_request/on_response (protected); gate:abort(client) when the
-- attempt does not leave after all, gate:leave(client) after the transfer;
-- gate:rate_limited(client, action, wait) after a 429, which has its own budget of
-- gate.rate_limited_retries; gate:retry(client, err) before a backoff (false: stopping, the
-- error is final) and gate:resume(client) after it.
function _M.request(self, method, path, query, body, o, idem)
  o = o or NO_OPTIONS
  local timeout = o.timeout or self.timeout
  local max_retries = o.max_retries or self.max_retries
  local max_retry_wait = o.max_retry_wait or self.max_retry_wait
  local gate = o.gate
  local headers = _M.request_headers(self, body ~= nil)
  local payload = body and json.encode(body)
  local full_path = path .. (query or "")
  local req = { method = method, url = self.base_url .. full_path, headers = headers,
                body = payload, timeout_ms = math.ceil(timeout * 1000),
                fresh_connect = o.no_replay }
  req.idempotency_key = idem     -- sched: a task cancelled with this in flight says so
  local attempt, fails, limited = 0, 0, 0
  local maybe = false           -- may an attempt have reached the server (and made the message)?
  while true do
    attempt = attempt + 1
    if gate and not gate:enter(self) then return nil, false end
    if self.on_request then
      local info = { method = method, path = full_path, attempt = attempt,
                     idempotency_key = idem }
      if gate then
        if not gate:hook(self.on_request, info) then
          gate:abort(self)            -- it raised: this attempt does not leave either
          return nil, false
        end
      else
        self.on_request(info)
      end
    end
    local t0 = self.now()
    local res, kind, msg, code = transfer(self, req)
    if gate then gate:leave(self) end
    local elapsed = self.now() - t0
    local value, err = self:_interpret(method, full_path, res, kind, msg, code, timeout)
    -- one record per client, updated in place (last_response() copies it out)
    local last = self._last
    if last then
      last.method, last.path, last.attempt, last.elapsed, last.res =
        method, full_path, attempt, elapsed, res
    else
      self._last = { method = method, path = full_path, attempt = attempt, elapsed = elapsed,
                     res = res }
    end
    if self.on_response then
      local info = { method = method, path = full_path, attempt = attempt,
                     status = res and res.status, elapsed = elapsed,
                     idempotency_key = idem, kind = err and err.kind }
      if gate then gate:hook(self.on_response, info) else self.on_response(info) end
    end
    if not err then return value end
    err.attempts, err.idempotency_key = attempt, idem
    if idem then
      maybe = maybe or _M.may_have_reached(res, kind)
      err.maybe_sent = maybe
    end
    local action, wait
    if gate and err.status == 429 then
      -- flow control, not a failure of this request: its own budget, and the gate holds
      -- every request of the batch (the limit is per key)
      limited = limited + 1
      action, wait = retry.decide(err, limited, gate.rate_limited_retries, max_retry_wait,
                                  self.random)
      gate:rate_limited(self, action, wait)
    else
      fails = fails + 1
      action, wait = retry.decide(err, fails, max_retries, max_retry_wait, self.random)
    end
    if action ~= "retry" or (gate and not gate:retry(self, err)) then return nil, err end
    sleep(self, wait)
    if gate then gate:resume(self) end
  end
end

return _M
