-- SPDX-License-Identifier: MIT
-- The Chatmaid v1 client: builds requests, runs them through the transport with the retry
-- policy, and turns responses into `value, err`. Runtime failures are returned; programmer
-- mistakes (wrong argument types, unknown options, use after close) raise.
local core = require "chatmaid.core"
local errors = require "chatmaid.errors"
local validate = require "chatmaid.validate"
local retry = require "chatmaid.retry"
local url = require "chatmaid.url"
local transport_mod = require "chatmaid.transport"
local json = require("cjson").new()   -- private instance: never changes the user's cjson

local _M = {}
local mt = { __index = _M }

_M.VERSION = core._VERSION
_M.DEFAULT_BASE_URL = "https://developers-api.chatmaid.net"

-- Secrets live outside the client table, so dumping or inspecting a client never shows the
-- key. Weak keys: a collected client takes its secret with it.
local secrets = setmetatable({}, { __mode = "k" })

local OPTION_TYPES = {
  api_key = "string", base_url = "string", timeout = "number", connect_timeout = "number",
  max_retries = "number", max_retry_wait = "number", user_agent = "string",
  ca_file = "string", proxy = "string|boolean", max_body = "number", http_version = "string",
  transport = "table|userdata", sleep = "function", now = "function", random = "function",
  on_request = "function", on_response = "function", default_from = "string",
}

-- Per-call options accepted by every method that takes a parameter table.
local CALL_OPTIONS = { timeout = "number", max_retries = "number", max_retry_wait = "number" }

local function type_ok(v, spec)
  local t = type(v)
  for want in spec:gmatch("[^|]+") do
    if t == want then return true end
  end
  return false
end

-- Raises (level 3: the caller of the public method) naming the bad or unknown option.
local function check_table(where, t, allowed, extra)
  if type(t) ~= "table" then
    error("chatmaid: " .. where .. " expects a table of parameters (got " .. type(t) .. ")", 3)
  end
  for k, v in pairs(t) do
    local spec = allowed[k] or (extra and extra[k])
    if not spec then
      error("chatmaid: " .. where .. ": unknown parameter '" .. tostring(k) .. "'", 3)
    end
    if spec ~= true and not type_ok(v, spec) then
      error("chatmaid: " .. where .. ": parameter '" .. k .. "' must be a " .. spec
            .. " (got " .. type(v) .. ")", 3)
    end
  end
end

local function default_random()
  local b1, b2, b3 = core.random_bytes(3):byte(1, 3)
  return (b1 * 65536 + b2 * 256 + b3) / 16777216
end

local function check_nonneg_integer(where, name, v)
  if v ~= nil and (v < 0 or v ~= math.floor(v)) then
    error("chatmaid: " .. where .. ": " .. name .. " must be a non-negative integer", 3)
  end
end

-- chatmaid.new(opts) -> client | nil, err(kind "validation")
function _M.new(opts)
  if opts == nil then opts = {} end
  check_table("new", opts, OPTION_TYPES)
  for _, name in ipairs{ "timeout", "connect_timeout", "max_retry_wait", "max_body" } do
    local v = opts[name]
    if v ~= nil and not (v > 0 or (name == "max_retry_wait" and v == 0)) then
      error("chatmaid: new: " .. name .. " must be a positive number", 2)
    end
  end
  check_nonneg_integer("new", "max_retries", opts.max_retries)
  if opts.http_version and opts.http_version ~= "1.1" and opts.http_version ~= "2" then
    error('chatmaid: new: http_version must be "1.1" or "2"', 2)
  end
  if opts.proxy == true then error("chatmaid: new: proxy must be a URL string or false", 2) end

  local key = opts.api_key or os.getenv("CHATMAID_API_KEY")
  local problem = validate.api_key(key)
  if problem then return nil, errors.new("validation", problem) end
  local base, why = validate.base_url(opts.base_url or os.getenv("CHATMAID_BASE_URL")
                                      or _M.DEFAULT_BASE_URL)
  if not base then return nil, errors.new("validation", why) end
  if opts.default_from then
    local p = opts.default_from:sub(1, 1) == "+" and validate.e164(opts.default_from, "default_from")
              or validate.id(opts.default_from, "default_from")
    if p then return nil, errors.new("validation", p) end
  end

  local self = {
    environment = key:sub(1, 8) == "sk_live_" and "live" or "test",
    base_url = base,
    timeout = opts.timeout or 30,
    max_retries = opts.max_retries or 2,
    max_retry_wait = opts.max_retry_wait or 60,
    default_from = opts.default_from,
    sleep = opts.sleep or core.sleep,
    now = opts.now or core.monotime,
    random = opts.random or default_random,
    on_request = opts.on_request,
    on_response = opts.on_response,
    _senders = {},          -- E.164 sender -> phone id, resolved once per client
  }
  local ua = "lua-chatmaid/" .. _M.VERSION .. " " .. core.curl_version .. " " .. _VERSION
  if opts.user_agent then ua = ua .. " " .. opts.user_agent end
  self.transport = opts.transport or transport_mod.new{
    timeout_ms = math.ceil(self.timeout * 1000),
    connect_timeout_ms = math.ceil((opts.connect_timeout or 10) * 1000),
    user_agent = ua, ca_file = opts.ca_file, proxy = opts.proxy,
    max_body = opts.max_body, http_version = opts.http_version,
  }
  secrets[self] = "Authorization: Bearer " .. key
  return setmetatable(self, mt)
end

function mt.__tostring(c)
  return "chatmaid.client (" .. c.environment .. ", " .. c.base_url
         .. (c.closed and ", closed)" or ")")
end

local function check_open(self, where)
  if getmetatable(self) ~= mt then
    error("chatmaid: " .. where .. " must be called as client:" .. where .. "(...)", 3)
  end
  if self.closed then error("chatmaid: attempt to use a closed client (" .. where .. ")", 3) end
end
_M._check_open = check_open

-- Idempotent; also __close (Lua 5.4 `local c <close>`). The transport's session frees its
-- libcurl handles on __gc too, so a forgotten client leaks nothing.
function _M:close()
  if getmetatable(self) ~= mt then error("chatmaid: close must be called as client:close()", 2) end
  if not self.closed then
    self.closed = true
    if self.transport.close then self.transport:close() end
  end
  return true
end
mt.__close = _M.close

function _M:last_response()
  check_open(self, "last_response")
  return self._last
end

local TRANSPORT_MESSAGES = {
  connect = "could not connect to the API",
  resolve = "could not resolve the API host name",
  tls = "TLS failed (certificate not trusted, or handshake error); set ca_file for a "
        .. "private CA: verification cannot be switched off",
  too_large = "response refused",
  nomem = "out of memory",
  transport = "the connection failed",
}

-- transport result -> value | nil, err
function _M:_interpret(method, path, res, kind, msg, code, timeout)
  local f = { method = method, path = path }
  if not res then
    f.reason, f.curl_code = kind, code
    if kind == "timeout" then
      return nil, errors.new("timeout", "no complete response within " .. timeout .. " s ("
                             .. tostring(msg) .. ")", f)
    end
    if kind == "tls" or kind == "too_large" or kind == "nomem" then f.retryable = false end
    return nil, errors.new("transport", (TRANSPORT_MESSAGES[kind] or "transport failure")
                           .. ": " .. tostring(msg), f)
  end
  local status = res.status
  f.status = status
  f.request_id = res.headers["x-request-id"]
  local ok, data, enveloped = core.decode_envelope(status, res.body)
  if status >= 200 and status < 300 then
    if ok and enveloped then return data end
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
  local message
  if ok == false then
    f.error, f.messages, f.details = data.error, data.messages, data.details
    f.retry_after = data.retry_after
    message = data.message
    if message == nil or message == "" then message = "HTTP " .. status end
  else
    f.messages = setmetatable({}, core.array_mt)
    message = "HTTP " .. status .. " with " .. tostring(data)
  end
  if f.retry_after == nil then
    f.retry_after = retry.parse_retry_after(res.headers["retry-after"])
  end
  return nil, errors.new(ekind, message, f)
end

-- The one request pipeline: hooks, attempts, retries, last_response.
-- o: per-call options (timeout, max_retries, max_retry_wait). idem: the idempotency key.
function _M:_request(method, path, query, body, o, idem)
  o = o or {}
  local timeout = o.timeout or self.timeout
  local max_retries = o.max_retries or self.max_retries
  local max_retry_wait = o.max_retry_wait or self.max_retry_wait
  local headers = { secrets[self], "Accept: application/json" }
  local payload
  if body then
    payload = json.encode(body)
    headers[3] = "Content-Type: application/json"
  end
  local req = { method = method, url = self.base_url .. path .. (query or ""),
                headers = headers, body = payload, timeout_ms = math.ceil(timeout * 1000) }
  local full_path = path .. (query or "")
  local attempt = 0
  while true do
    attempt = attempt + 1
    if self.on_request then
      self.on_request{ method = method, path = full_path, attempt = attempt,
                       idempotency_key = idem }
    end
    local t0 = self.now()
    local res, kind, msg, code = self.transport:request(req)
    local elapsed = self.now() - t0
    local value, err = self:_interpret(method, full_path, res, kind, msg, code, timeout)
    self._last = { method = method, path = full_path, attempt = attempt, elapsed = elapsed,
                   status = res and res.status, headers = res and res.headers }
    if self.on_response then
      self.on_response{ method = method, path = full_path, attempt = attempt,
                        status = res and res.status, elapsed = elapsed,
                        idempotency_key = idem, kind = err and err.kind }
    end
    if not err then return value end
    err.attempts, err.idempotency_key = attempt, idem
    local action, wait = retry.decide(err, attempt, max_retries, max_retry_wait, self.random)
    if action ~= "retry" then return nil, err end
    self.sleep(wait)
  end
end

local function validation(method, path, problems)
  if type(problems) == "string" then problems = { problems } end
  return nil, errors.new("validation", table.concat(problems, "; "),
                         { messages = problems, method = method, path = path })
end

-- ---- senders ----

-- Resolves `from` (phone id, E.164 number, or nil) to a phone id. E.164 senders are looked
-- up once per client; with no `from`, default_from or the one connected phone is used.
function _M:_sender(from, o)
  if from == nil then from = self.default_from end
  if from == nil then
    if self._auto_from then return self._auto_from end
    local phones, err = self:_request("GET", "/v1/phone-numbers", nil, nil, o)
    if not phones then return nil, err end
    local connected, all = {}, {}
    for _, p in ipairs(phones) do
      local label = tostring(p.id) .. " (" .. tostring(p.phoneNumber) .. ", "
                    .. tostring(p.connectionStatus) .. ")"
      all[#all + 1] = label
      if p.connectionStatus == "connected" then connected[#connected + 1] = p end
    end
    if #connected == 1 then
      self._auto_from = connected[1].id
      return self._auto_from
    end
    local why = #connected == 0 and "no phone of this account is connected"
                or (#connected .. " phones are connected")
    return validation("POST", "/v1/messages/send", "from is required: " .. why
                      .. "; pass from = <phone id or E.164 number> or default_from. Phones: "
                      .. (#all > 0 and table.concat(all, ", ") or "none"))
  end
  if from:sub(1, 1) ~= "+" then return from end
  local cached = self._senders[from]
  if cached then return cached end
  local phone, err = self:_request("GET", "/v1/phone-numbers/" .. url.encode(from), nil, nil, o)
  if not phone then
    if err.kind == "not_found" then
      err.message = "sender " .. from .. " is not a phone number of this account"
    end
    return nil, err
  end
  self._senders[from] = phone.id
  return phone.id
end

-- ---- the eight endpoints ----

local SEND_PARAMS = { from = "string", to = true, content = true, media_urls = true,
                      idempotency_key = true }

-- client:send{ from, to, content, media_urls, idempotency_key } -> message, err
-- Every send carries an idempotency key (yours, or a UUID v4 made before the first attempt
-- and reused on each retry), so retries never duplicate a message. err.kind: validation,
-- auth, permission, not_found, invalid_request, rate_limited, server, timeout, transport,
-- decode.
function _M:send(p)
  check_open(self, "send")
  check_table("send", p, SEND_PARAMS, CALL_OPTIONS)
  check_nonneg_integer("send", "max_retries", p.max_retries)
  local path = "/v1/messages/send"
  local problems = validate.send(p)
  if p.from ~= nil then
    problems[#problems + 1] = p.from:sub(1, 1) == "+" and validate.e164(p.from, "from")
                              or validate.id(p.from, "from")
  end
  if #problems > 0 then return validation("POST", path, problems) end
  local from, err = self:_sender(p.from, p)
  if not from then return nil, err end
  local key = p.idempotency_key or core.uuid4()
  local body = { fromPhoneId = from, to = p.to, content = p.content,
                 idempotencyKey = key }
  if p.media_urls and #p.media_urls > 0 then body.mediaUrls = p.media_urls end
  local msg
  msg, err = self:_request("POST", path, nil, body, p, key)
  if msg and msg.idempotencyKey == nil then msg.idempotencyKey = key end
  return msg, err
end

local function check_ref(where, v, name)
  if type(v) ~= "string" then
    error("chatmaid: " .. where .. " expects " .. name .. " as a string (got " .. type(v) .. ")", 3)
  end
end

-- client:message(id) -> message, err
function _M:message(id, o)
  check_open(self, "message")
  check_ref("message", id, "a message id")
  if o ~= nil then check_table("message", o, CALL_OPTIONS) end
  local path = "/v1/messages/" .. url.encode(id)
  local problem = validate.id(id, "message id")
  if problem then return validation("GET", path, problem) end
  return self:_request("GET", path, nil, nil, o)
end

local LIST_PARAMS = { page = true, limit = true, status = true, phone_number_id = true,
                      environment = true }

-- client:list_messages{ page, limit, status, phone_number_id, environment }
--   -> { data = { message... }, pagination = { page, limit, total, totalPages } }, err
function _M:list_messages(p)
  check_open(self, "list_messages")
  if p == nil then p = {} end
  check_table("list_messages", p, LIST_PARAMS, CALL_OPTIONS)
  local problems = {}
  local function add(m) if m then problems[#problems + 1] = m end end
  if p.page ~= nil then add(validate.integer_range(p.page, "page", 1)) end
  if p.limit ~= nil then add(validate.integer_range(p.limit, "limit", 1, 100)) end
  if p.status ~= nil then add(validate.one_of(p.status, validate.statuses, "status")) end
  if p.environment ~= nil then
    add(validate.one_of(p.environment, validate.environments, "environment"))
  end
  if p.phone_number_id ~= nil then add(validate.id(p.phone_number_id, "phone_number_id")) end
  local path = "/v1/messages"
  if #problems > 0 then return validation("GET", path, problems) end
  local q = url.query{ { "page", p.page }, { "limit", p.limit }, { "status", p.status },
                       { "phoneNumberId", p.phone_number_id },
                       { "environment", p.environment } }
  return self:_request("GET", path, q, nil, p)
end

-- client:phone_numbers() -> array of phones, err
function _M:phone_numbers(o)
  check_open(self, "phone_numbers")
  if o ~= nil then check_table("phone_numbers", o, CALL_OPTIONS) end
  return self:_request("GET", "/v1/phone-numbers", nil, nil, o)
end

local function phone_path(ref, suffix)
  return "/v1/phone-numbers/" .. url.encode(ref) .. (suffix or "")
end

local function check_phone_ref(ref)
  if ref:sub(1, 1) == "+" then return validate.e164(ref, "phone reference") end
  return validate.id(ref, "phone reference")
end

-- client:phone_number(ref) -> phone, err   (ref: phone id or E.164; encoded for you)
function _M:phone_number(ref, o)
  check_open(self, "phone_number")
  check_ref("phone_number", ref, "a phone id or E.164 number")
  if o ~= nil then check_table("phone_number", o, CALL_OPTIONS) end
  local problem = check_phone_ref(ref)
  if problem then return validation("GET", phone_path(ref), problem) end
  return self:_request("GET", phone_path(ref), nil, nil, o)
end

-- client:phone_status(ref) -> status, err
function _M:phone_status(ref, o)
  check_open(self, "phone_status")
  check_ref("phone_status", ref, "a phone id or E.164 number")
  if o ~= nil then check_table("phone_status", o, CALL_OPTIONS) end
  local problem = check_phone_ref(ref)
  if problem then return validation("GET", phone_path(ref, "/status"), problem) end
  return self:_request("GET", phone_path(ref, "/status"), nil, nil, o)
end

-- client:account() -> account, err
function _M:account(o)
  check_open(self, "account")
  if o ~= nil then check_table("account", o, CALL_OPTIONS) end
  return self:_request("GET", "/v1/account", nil, nil, o)
end

-- client:usage(period) -> usage, err   (period: "day" | "week" | "month", default month)
function _M:usage(period, o)
  check_open(self, "usage")
  if period ~= nil and type(period) ~= "string" then
    error("chatmaid: usage expects period as a string (got " .. type(period) .. ")", 2)
  end
  if o ~= nil then check_table("usage", o, CALL_OPTIONS) end
  period = period or "month"
  local path = "/v1/account/usage"
  local problem = validate.one_of(period, validate.periods, "period")
  if problem then return validation("GET", path, problem) end
  return self:_request("GET", path, url.query{ { "period", period } }, nil, o)
end

_M._mt = mt
_M._check_table = check_table
_M._validation = validation
return _M
