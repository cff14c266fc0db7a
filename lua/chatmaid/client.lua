-- SPDX-License-Identifier: MIT

--- The Chatmaid v1 client, as `chatmaid.new` returns it.
-- The Chatmaid v1 client: builds requests, runs them through the transport with the retry
-- policy, and turns responses into `value, err`. Runtime failures are returned; programmer
-- mistakes (wrong argument types, unknown options, use after close) raise.
-- @module chatmaid.client
local core = require "chatmaid.core"
local base = require "chatmaid.base"
local validate = require "chatmaid.validate"
local url = require "chatmaid.url"
local idempotency = require "chatmaid.idempotency"

local _M = base.class{ name = "chatmaid.client" }

_M.VERSION = base.VERSION
_M.DEFAULT_BASE_URL = "https://developers-api.chatmaid.net"

--- The base URL a client made with base_url = given talks to.
-- base_url_of(given) -> given, else CHATMAID_BASE_URL (empty counts as unset), else the
-- API's; before validation. The CLI asks it too, to know where a campaign sends before it
-- makes the client.
-- @tparam ?string given the base_url option
-- @treturn string the base URL
function _M.base_url_of(given)
  return given or base.getenv("CHATMAID_BASE_URL") or _M.DEFAULT_BASE_URL
end

local OPTIONS = { default_from = "string" }
_M.NEW_OPTIONS = OPTIONS   -- with base.OPTION_TYPES: what docs/reference/options.md lists
local CALL_OPTIONS = base.CALL_OPTIONS
local check_table = base.check_table
local validation = base.validation
local check_open = _M._check_open

--- Make a client (this is `chatmaid.new`).
-- chatmaid.new(opts) -> client | nil, err (kind "validation": bad key or base URL)
-- Raises on unknown options and wrong option types.
-- @tparam[opt] table opts options (docs/reference/options.md); api_key and base_url default to
--   CHATMAID_API_KEY and CHATMAID_BASE_URL
-- @treturn ?table the client, or nil
-- @treturn ?table err (docs/reference/errors.md) when the first value is nil (kind "validation")
-- @raise on an unknown option or an option of the wrong type
function _M.new(opts)
  if opts == nil then opts = {} end
  check_table("new", opts, base.OPTION_TYPES, OPTIONS)
  -- an empty variable (CHATMAID_BASE_URL=) counts as unset
  local key = opts.api_key or base.getenv("CHATMAID_API_KEY")
  local problem = validate.api_key(key)
  if problem then return validation(nil, nil, { { param = "api_key", message = problem } }) end
  local base_url, why = validate.base_url(_M.base_url_of(opts.base_url))
  if not base_url then return validation(nil, nil, why) end
  -- Every path of this API starts with /v1, so a base URL ending in /v1 (as in the docs' full
  -- URLs, or other SDKs' habit of putting the version there) can only mean the same root:
  -- taken as such, and reported as such by tostring(client) and client.base_url.
  base_url = base_url:gsub("/v1$", "")
  if opts.default_from then
    local from = opts.default_from
    local p = from:sub(1, 1) == "+" and validate.e164(from, "default_from")
              or validate.id(from, "default_from")
    if p then return validation(nil, nil, p) end
  end
  local self = {
    environment = key:sub(1, 8) == "sk_live_" and "live" or "test",
    default_from = opts.default_from,
    _senders = {},          -- E.164 sender -> phone id, resolved once per client
  }
  self = _M._init(self, opts, key, base_url)   -- not a tail call: _init raises at level 3
  return self
end

-- ---- senders ----

-- what to do about a sender the account does not have
local PHONES_HINT = "; pass from = one of the account's phone ids or numbers: list them with "
                    .. "client:phone_numbers() (CLI: chatmaid phones)"

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
      self._auto_number = connected[1].phoneNumber
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
  local phone, err = self:_request("GET", "/v1/phone-numbers/" .. url.segment(from), nil, nil, o)
  if not phone then
    if err.kind == "not_found" then
      err.message = "sender " .. from .. " is not a phone number of this account" .. PHONES_HINT
    end
    return base.not_found(err, "sender_phone", from)
  end
  self._senders[from] = phone.id
  return phone.id
end

-- The E.164 number of a resolved sender id, when this client has seen it (nil otherwise):
-- the API's messages name their sender by number.
function _M:_sender_number(id)
  if id == self._auto_from then return self._auto_number end
  for number, sid in pairs(self._senders) do
    if sid == id then return number end
  end
  return nil
end

-- ---- the eight endpoints ----

local SEND_PARAMS = { from = "string", to = true, content = true, media_urls = true,
                      idempotency_key = true }
_M.SEND_PARAMS = SEND_PARAMS

--- Send a WhatsApp message, never twice.
-- client:send{ from, to, content, media_urls, idempotency_key } -> message, err
-- Every send carries an idempotency key (yours, or a UUID v4 made before the first attempt
-- and reused on each retry), so retries never duplicate a message. A message returned for
-- the key that is not this one (another recipient, sender, content or media) is an error,
-- never a success. err.kind: validation, auth, permission, not_found, invalid_request,
-- rate_limited, server, timeout, transport, decode, idempotency_conflict.
-- @tparam table p from, to, content, media_urls, idempotency_key, and the per-call options
-- @treturn ?table the message (id, status, ...), or nil
-- @treturn ?table err (docs/reference/errors.md) when the first value is nil
-- @raise on a wrong argument type, an unknown parameter or a closed client
function _M:send(p)
  check_open(self, "send")
  check_table("send", p, SEND_PARAMS, CALL_OPTIONS)
  local path = "/v1/messages/send"
  local problems = validate.send(p)
  if p.from ~= nil then
    problems[#problems + 1] = p.from:sub(1, 1) == "+" and validate.e164(p.from, "from")
                              or validate.id(p.from, "from")
  end
  if #problems > 0 then return validation("POST", path, problems) end
  local from, err = self:_sender(p.from, p)
  if not from then return nil, err end
  return self:_send_from(p, from, p.idempotency_key or core.uuid4(), p)
end

-- The send once the sender is resolved: one place that builds the request and checks the
-- answer, for client:send and each item of send_batch. o: call options (and o.gate);
-- from_number: the sender's E.164 number when the caller knows it.
function _M:_send_from(p, from, key, o, from_number)
  local path = "/v1/messages/send"
  local body = { fromPhoneId = from, to = p.to, content = p.content,
                 idempotencyKey = key }
  local media = p.media_urls and validate.array_copy(p.media_urls)   -- checked: sent as is
  if media and #media > 0 then body.mediaUrls = media end
  local msg, err = self:_request("POST", path, nil, body, o, key)
  if not msg then   -- a 404 here is the API's "fromPhoneId not found in account"
    -- err is false when a batch stopped the request (base.request's stop protocol)
    if err and err.kind == "not_found" and not base.no_route(err) then
      err.message = "sender " .. from .. " was not found in this account (the API said: "
                    .. tostring(err.message) .. ")" .. PHONES_HINT
    end
    return base.not_found(err, "sender_phone", from)
  end
  -- self._last is this request's: nothing yields between base.request's return and here
  err = idempotency.conflict(p, msg, key, from, from_number or self:_sender_number(from),
                             "POST", path, self._last.res and self._last.res.status)
  if err then
    err.attempts = self._last.attempt
    return nil, err
  end
  if msg.idempotencyKey == nil then msg.idempotencyKey = key end
  return msg
end

local function check_ref(where, v, name)
  if type(v) ~= "string" then
    error("chatmaid: " .. where .. " expects " .. name .. " as a string (got " .. type(v) .. ")", 3)
  end
end

--- Fetch one message.
-- client:message(id) -> message, err
-- @tparam string id the message id (msg_...)
-- @tparam[opt] table o per-call options: timeout, max_retries, max_retry_wait
-- @treturn ?table the message, or nil
-- @treturn ?table err (docs/reference/errors.md) when the first value is nil (not_found:
--   err.resource "message")
-- @raise on a wrong argument type, an unknown parameter or a closed client
function _M:message(id, o)
  check_open(self, "message")
  check_ref("message", id, "a message id")
  if o ~= nil then check_table("message", o, CALL_OPTIONS) end
  local path = "/v1/messages/" .. url.segment(id)
  local problem = validate.id(id, "message id")
  if problem then return validation("GET", path, { { param = "id", message = problem } }) end
  local msg, err = self:_request("GET", path, nil, nil, o)
  if not msg then return base.not_found(err, "message", id) end
  return msg
end

local LIST_PARAMS = { page = true, limit = true, status = true, phone_number_id = true,
                      environment = true }

--- One page of messages.
-- client:list_messages{ page, limit, status, phone_number_id, environment }
--   -> { data = { message... }, pagination = { page, limit, total, totalPages } }, err
-- @tparam[opt] table p page, limit, status, phone_number_id, environment, and the per-call options
-- @treturn ?table { data = {...}, pagination = {...} }, or nil
-- @treturn ?table err (docs/reference/errors.md) when the first value is nil
-- @raise on a wrong argument type, an unknown parameter or a closed client
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

--- The account's phones.
-- client:phone_numbers() -> array of phones, err
-- @tparam[opt] table o per-call options: timeout, max_retries, max_retry_wait
-- @treturn ?table array of phones, or nil
-- @treturn ?table err (docs/reference/errors.md) when the first value is nil
-- @raise on a wrong argument type, an unknown parameter or a closed client
function _M:phone_numbers(o)
  check_open(self, "phone_numbers")
  if o ~= nil then check_table("phone_numbers", o, CALL_OPTIONS) end
  return self:_request("GET", "/v1/phone-numbers", nil, nil, o)
end

local function phone_path(ref, suffix)
  return "/v1/phone-numbers/" .. url.segment(ref) .. (suffix or "")
end

local function check_phone_ref(ref)
  if ref:sub(1, 1) == "+" then return validate.e164(ref, "phone reference") end
  return validate.id(ref, "phone reference")
end

-- GET of one phone resource; `where` names the public method, whose caller gets the raised
-- errors (the public methods call this without a tail call, so that is level 3).
local function phone_get(self, where, ref, suffix, o)
  if type(ref) ~= "string" then
    error("chatmaid: " .. where .. " expects a phone id or E.164 number as a string (got "
          .. type(ref) .. ")", 3)
  end
  if o ~= nil then check_table(where, o, CALL_OPTIONS, nil, 4) end
  local path = phone_path(ref, suffix)
  local problem = check_phone_ref(ref)
  if problem then return validation("GET", path, { { param = "ref", message = problem } }) end
  local v, err = self:_request("GET", path, nil, nil, o)
  if not v then return base.not_found(err, "phone_number", ref) end
  return v
end

--- One phone.
-- client:phone_number(ref) -> phone, err   (ref: phone id or E.164; encoded for you)
-- @tparam string ref the phone id or its E.164 number
-- @tparam[opt] table o per-call options: timeout, max_retries, max_retry_wait
-- @treturn ?table the phone, or nil
-- @treturn ?table err (docs/reference/errors.md) when the first value is nil
-- @raise on a wrong argument type, an unknown parameter or a closed client
function _M:phone_number(ref, o)
  check_open(self, "phone_number")
  local phone, err = phone_get(self, "phone_number", ref, nil, o)
  return phone, err
end

--- A phone's connection status.
-- client:phone_status(ref) -> status, err
-- @tparam string ref the phone id or its E.164 number
-- @tparam[opt] table o per-call options: timeout, max_retries, max_retry_wait
-- @treturn ?table the status, or nil
-- @treturn ?table err (docs/reference/errors.md) when the first value is nil
-- @raise on a wrong argument type, an unknown parameter or a closed client
function _M:phone_status(ref, o)
  check_open(self, "phone_status")
  local status, err = phone_get(self, "phone_status", ref, "/status", o)
  return status, err
end

--- The account.
-- client:account() -> account, err
-- @tparam[opt] table o per-call options: timeout, max_retries, max_retry_wait
-- @treturn ?table the account, or nil
-- @treturn ?table err (docs/reference/errors.md) when the first value is nil
-- @raise on a wrong argument type, an unknown parameter or a closed client
function _M:account(o)
  check_open(self, "account")
  if o ~= nil then check_table("account", o, CALL_OPTIONS) end
  return self:_request("GET", "/v1/account", nil, nil, o)
end

--- Usage counters for a period.
-- client:usage(period) -> usage, err   (period: "day" | "week" | "month", default month)
-- @tparam[opt="month"] string period "day", "week" or "month"
-- @tparam[opt] table o per-call options: timeout, max_retries, max_retry_wait
-- @treturn ?table the usage, or nil
-- @treturn ?table err (docs/reference/errors.md) when the first value is nil
-- @raise on a wrong argument type, an unknown parameter or a closed client
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

-- ---- convenience layer (issue 6): pagination, polling, batch sending ----
-- Installed here so that `client:messages{}` etc. are methods; the code lives in its own
-- modules (paginate.lua, poll.lua, batch.lua).
do
  local paginate = require "chatmaid.paginate"
  local poll = require "chatmaid.poll"
  local batch = require "chatmaid.batch"
  _M.messages = paginate.messages
  _M.message_pages = paginate.message_pages
  _M.collect_messages = paginate.collect_messages
  _M.wait = poll.wait
  _M.send_batch = batch.send_batch
end
-- ---- end of convenience layer ----

--- Send many messages concurrently, paced, resumable (chatmaid.batch; docs/campaigns-and-cli.md).
-- @function client:send_batch
-- @tparam table items send parameters, one table per message
-- @tparam[opt] table opts batch_id, journal, concurrency (8), rate_per_minute (100), rate_limiter,
-- on_progress, should_stop, and the per-call options (docs/reference/options.md)
-- @treturn ?table results, one per item in input order: { message = ... } or { err = ... };
--   nil when the batch stopped early or its journal cannot be used
-- @treturn table summary: sent, replayed, skipped, already_sent, failed, interrupted, requests,
--   elapsed, ...; or, after nil, err: kind "interrupted" (err.reason, err.results,
--   err.summary) or "validation" (the journal: err.reason busy, symlink, ...)
-- @raise a wrong argument type or an unknown parameter in any item

--- Run fn(...) as a task of this client: its calls on the client do not block
--   (docs/games-and-apps.md).
-- @function client:spawn
-- @tparam function fn the task body
-- @param ... its arguments
-- @treturn table the task (task:done(), task:result(), task:cancel(), task:on_done(f))
-- @raise on a closed client

--- Do what is ready for the running tasks.
-- @function client:step
-- @tparam[opt=0] number timeout seconds to wait for I/O or a timer
-- @treturn number the tasks still running
-- @raise when called from inside a task or an on_done function

--- Seconds until step has work.
-- @function client:step_timeout
-- @treturn ?number 0: now; nil when no task runs

--- The sockets the tasks wait on, for an event loop.
-- @function client:fds
-- @treturn table { [fd] = "r" | "w" | "rw" }

--- The last exchange, for debugging.
-- @function client:last_response
-- @treturn ?table { method, path, attempt, status, headers, elapsed }

--- Close the client: cancels its tasks, frees its connections. Idempotent; also on __gc and
--   __close.
-- @function client:close
-- @treturn boolean true

--- Whether the task has finished (returned, raised or was cancelled).
-- @function task:done
-- @treturn boolean

--- What the task returned; if it raised, nil and the raised value.
-- @function task:result
-- @return the task's return values
-- @raise when called before task:done()

--- Cancel the task: aborts its request in flight or its sleep; it ends with nil, err of kind
--   "cancelled".
-- @function task:cancel
-- @treturn boolean true (cancelled) or false (already done)

--- Call f(task) once the task is done, from inside a later client:step().
-- @function task:on_done
-- @tparam function f the callback
-- @treturn table the task

return _M
