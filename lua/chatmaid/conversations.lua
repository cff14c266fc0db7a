-- SPDX-License-Identifier: MIT

--- The conversations Messages API client (docs/conversations.md).
-- Client for the conversations Messages API (/api/whatsapp/...): typed messages, templates,
-- cursor pagination. Shares transport, retries, hooks, errors and close with the Chatmaid
-- client (chatmaid.base); adds this API's validation, error tweaks and send retry policy.
-- @module chatmaid.conversations
local base = require "chatmaid.base"
local validate = require "chatmaid.validate"
local url = require "chatmaid.url"
local errors = require "chatmaid.errors"
local paginate = require "chatmaid.paginate"

local _M = base.class{ name = "chatmaid.conversations", bare_json_ok = true }

_M.VERSION = base.VERSION
_M.MAX_TEXT = 4096              -- UTF-16 code units, as WhatsApp counts
_M.MAX_PAGE = 100

-- The documented message types; anything else is passed through untouched.
_M.MESSAGE_TYPES = { text = true, image = true, document = true, audio = true, video = true,
                     location = true }
_M.MEDIA_TYPES = { image = true, document = true, audio = true, video = true }

-- WhatsApp Cloud API error codes after which resending the same message cannot succeed.
-- 131047: the 24-hour customer service window is closed; only a template can reopen it.
_M.NON_RETRYABLE_CODES = { [131047] = "reengagement_required" }

local CALL_OPTIONS = base.CALL_OPTIONS
local check_table = base.check_table
local validation = base.validation
local check_open = _M._check_open
local SEND_PATH = "/api/whatsapp/messages/send"
local LIST_PATH = "/api/whatsapp/messages"

local function key_problem(key)
  return validate.token(key, "pass api_key to conversations.new or set "
                        .. "CHATMAID_CONVERSATIONS_API_KEY")
end

--- Make a conversations client.
-- conversations.new(opts) -> client | nil, err (kind "validation": bad key or base URL)
-- opts: base_url (required; or CHATMAID_CONVERSATIONS_BASE_URL), api_key (or
-- CHATMAID_CONVERSATIONS_API_KEY), and the options of chatmaid.new. Raises on unknown
-- options and wrong option types.
-- @tparam table opts base_url (or CHATMAID_CONVERSATIONS_BASE_URL), api_key (or
--   CHATMAID_CONVERSATIONS_API_KEY), and the options of chatmaid.new
-- @treturn ?table the client, or nil
-- @treturn ?table err (docs/reference/errors.md) when the first value is nil (kind "validation")
-- @raise on an unknown option or an option of the wrong type
function _M.new(opts)
  if opts == nil then opts = {} end
  check_table("new", opts, base.OPTION_TYPES)
  -- an empty variable counts as unset
  local key = opts.api_key or base.getenv("CHATMAID_CONVERSATIONS_API_KEY")
  local problem = key_problem(key)
  if problem then return validation(nil, nil, { { param = "api_key", message = problem } }) end
  local raw = opts.base_url or base.getenv("CHATMAID_CONVERSATIONS_BASE_URL")
  if raw == nil or raw == "" then
    return validation(nil, nil, "base_url is required: the conversations API has no default "
                      .. "host (pass base_url or set CHATMAID_CONVERSATIONS_BASE_URL)")
  end
  local base_url, why = validate.base_url(raw)
  if not base_url then return validation(nil, nil, why) end
  local self = _M._init({}, opts, key, base_url)   -- not a tail call: _init raises at level 3
  return self
end

-- ---- errors and the send retry policy ----

local function details_code(d)
  if type(d) ~= "table" then return nil end
  return tonumber(d.code)
end

--- Classify a non-2xx answer (WhatsApp codes that must not be retried).
-- Called by base.interpret for every non-2xx answer, before the error is built.
-- @param _ the client (unused)
-- @tparam table f the error fields; sets f.retryable and f.reason ("reengagement_required")
function _M.classify(_, f)
  if f.status == 429 and f.retry_after == nil then
    -- this API puts the wait in the text: "Rate limit exceeded. Try again in 60 seconds."
    local n = tostring(f.error or f.message or ""):match("[Tt]ry again in (%d+) second")
    if n then f.retry_after = tonumber(n) end
  end
  local code = details_code(f.details)
  local reason = code and _M.NON_RETRYABLE_CODES[code]
  if not reason and type(f.details) == "table" and type(f.details.title) == "string"
     and f.details.title:lower():find("re%-?engagement") then
    reason = "reengagement_required"
  end
  if reason then
    f.retryable, f.reason = false, reason
  end
end

-- A send carries no idempotency key in this API, so it is resent only when the server
-- certainly did not act on it: no connection was made, it refused the request (429, 503
-- with Retry-After), or it said WhatsApp rejected the message (502 with details).
local function resend_safe(err)
  if err.kind == "transport" then return err.reason == "connect" or err.reason == "resolve" end
  if err.kind == "rate_limited" then return true end
  if err.status == 503 and err.retry_after then return true end
  if err.status == 502 and details_code(err.details) then return true end
  return false
end

function _M._interpret(self, method, path, res, kind, msg, code, timeout)
  local value, err = base.interpret(self, method, path, res, kind, msg, code, timeout)
  if err and method == "POST" and err.retryable and not resend_safe(err) then
    err.retryable = false
    err.maybe_sent = true     -- the message may have gone out: do not resend blindly
  end
  return value, err
end

-- ---- validation ----

local function check_number(v, name, min, max)
  if type(v) ~= "number" or v ~= v or v < min or v > max then
    return name .. " must be a number from " .. min .. " to " .. max .. "; got " .. tostring(v)
  end
end

local function check_string(v, name, required)
  if v == nil and not required then return nil end
  if type(v) ~= "string" or v == "" then return name .. " must be a non-empty string" end
  if not validate.utf16_length(v) then return name .. " is not valid UTF-8" end
end

local function check_text(v)
  if type(v) ~= "string" or v == "" then return "text must be a non-empty string" end
  local n, bad = validate.utf16_length(v)
  if not n then return "text is not valid UTF-8 (" .. bad .. ")" end
  if n > _M.MAX_TEXT then
    return "text is " .. n .. " characters long (UTF-16 code units); the limit is "
      .. _M.MAX_TEXT .. ": split it into several messages"
  end
end

-- Template parameters: { type = "text", text = "..." } or another typed parameter that
-- carries a field named after its type ({ type = "currency", currency = {...} }, ...).
local function check_parameter(p, name, add)
  if type(p) ~= "table" then return add(name .. " must be a table") end
  if type(p.type) ~= "string" or p.type == "" then
    return add(name .. ".type must be a non-empty string")
  end
  if p.type == "text" then
    if type(p.text) ~= "string" or p.text == "" then
      add(name .. ".text must be a non-empty string")
    end
  elseif p[p.type] == nil then
    add(name .. " has type " .. p.type .. " but no " .. p.type .. " field")
  end   -- links (p.image.link, ...) are checked by check_links
end

-- Every "link" or "url" anywhere in a component is a media link: public https only.
local function check_links(v, name, add)
  for k, x in next, v do
    local where = name .. (type(k) == "number" and ("[" .. k .. "]") or ("." .. k))
    if type(x) == "table" then
      check_links(x, where, add)
    elseif k == "link" or k == "url" then
      add(validate.https_url(x, where))
    end
  end
end

-- components: a proper array of component tables, each plain JSON (validate.plain: no
-- holes, no mixed or extra non-string keys, no functions, finite numbers), with
-- `parameters` a proper array too. Everything is checked because everything is sent.
local function check_components(cs, add)
  if cs == nil then return end
  local n, why = validate.sequence(cs, "components")
  if not n then
    -- not a list at all (one component passed alone, a string, ...): say what is expected
    return add((type(cs) ~= "table" or rawget(cs, 1) == nil)
               and "components must be an array of component tables" or why)
  end
  for i = 1, n do
    local c = rawget(cs, i)
    local name = "components[" .. i .. "]"
    if type(c) ~= "table" then
      add(name .. " must be a table")
    else
      local bad = validate.plain(c, name)
      if bad then return add(bad) end
      if type(c.type) ~= "string" or c.type == "" then
        add(name .. ".type must be a non-empty string (header, body, button)")
      end
      if c.parameters ~= nil then
        local m, pwhy = validate.sequence(c.parameters, name .. ".parameters")
        if not m then
          add(type(c.parameters) ~= "table" and (name .. ".parameters must be an array") or pwhy)
        else
          for j = 1, m do
            check_parameter(rawget(c.parameters, j), name .. ".parameters[" .. j .. "]", add)
          end
        end
      end
      check_links(c, name, add)
    end
  end
end

-- Deep copy that drops empty arrays (cjson would send them as {}).
local function copy(v)
  if type(v) ~= "table" then return v end
  local t = {}
  for k, x in pairs(v) do
    if not (type(x) == "table" and next(x) == nil) then t[k] = copy(x) end
  end
  return t
end

local function problems_list()
  local problems = {}
  return problems, function(m) if m then problems[#problems + 1] = m end end
end

-- Sends carry no idempotency key in this API, so each goes on a fresh connection: libcurl
-- would otherwise replay it by itself when a kept-alive connection dies before the answer.
-- A 404 here is "Contact not found for the given phone number": err.resource = "contact".
local function post(self, body, o)
  local r, err = self:_request("POST", SEND_PATH, nil, body, {
    timeout = o.timeout, max_retries = o.max_retries, max_retry_wait = o.max_retry_wait,
    no_replay = true,
  })
  if not r then return base.not_found(err, "contact", body.to) end
  return r
end

-- ---- sending ----
-- Each send returns the API's data { vendorMessageId, waMessageId, status, conversationId,
-- contactId }, or nil, err. err.kind: validation (nothing sent), auth, not_found,
-- invalid_request, rate_limited, server (err.details kept; err.reason =
-- "reengagement_required" for WhatsApp code 131047), timeout, transport, decode.
-- err.maybe_sent: the request may have reached the server, so it was not retried.

local TEXT_PARAMS = { to = true, text = true }

--- Send a text message.
-- client:send_text{ to, text } -> result, err
-- @tparam table p to, text, and the per-call options
-- @treturn ?table the result (vendorMessageId, waMessageId, status, conversationId, contactId), or
--   nil
-- @treturn ?table err (docs/reference/errors.md) when the first value is nil
-- @raise on a wrong argument type, an unknown parameter or a closed client
function _M:send_text(p)
  check_open(self, "send_text")
  check_table("send_text", p, TEXT_PARAMS, CALL_OPTIONS)
  local problems, add = problems_list()
  add(validate.e164(p.to, "to"))
  add(check_text(p.text))
  if #problems > 0 then return validation("POST", SEND_PATH, problems) end
  return post(self, { to = p.to, type = "text", text = p.text }, p)
end

local TEMPLATE_PARAMS = { to = true, name = true, language = true, components = true }

--- Send a template message.
-- client:send_template{ to, name, language, components } -> result, err
-- The only message WhatsApp delivers outside the 24-hour customer service window.
-- @tparam table p to, name, language, components, and the per-call options
-- @treturn ?table the result, or nil
-- @treturn ?table err (docs/reference/errors.md) when the first value is nil
-- @raise on a wrong argument type, an unknown parameter or a closed client
function _M:send_template(p)
  check_open(self, "send_template")
  check_table("send_template", p, TEMPLATE_PARAMS, CALL_OPTIONS)
  local problems, add = problems_list()
  add(validate.e164(p.to, "to"))
  add(check_string(p.name, "name", true))
  add(check_string(p.language, "language", true))
  check_components(p.components, add)
  if #problems > 0 then return validation("POST", SEND_PATH, problems) end
  local template = { name = p.name, language = p.language }
  if p.components and #p.components > 0 then template.components = copy(p.components) end
  return post(self, { to = p.to, type = "template", template = template }, p)
end

local MEDIA_PARAMS = { to = true, type = true, url = true, caption = true, filename = true }

--- Send an image, document, audio or video.
-- client:send_media{ to, type = "image"|"document"|"audio"|"video", url, caption, filename }
-- caption: image, video, document; filename: document only.
-- @tparam table p to, type, url, caption, filename, and the per-call options
-- @treturn ?table the result, or nil
-- @treturn ?table err (docs/reference/errors.md) when the first value is nil
-- @raise on a wrong argument type, an unknown parameter or a closed client
function _M:send_media(p)
  check_open(self, "send_media")
  check_table("send_media", p, MEDIA_PARAMS, CALL_OPTIONS)
  local problems, add = problems_list()
  add(validate.e164(p.to, "to"))
  local known = p.type ~= nil and _M.MEDIA_TYPES[p.type]
  if p.type == nil then
    add("type is required: image, document, audio or video")
  elseif not known then
    add(validate.one_of(p.type, _M.MEDIA_TYPES, "type"))
  end
  if p.url == nil then add("url is required: the public https:// URL of the media")
  else add(validate.https_url(p.url, "url")) end
  add(check_string(p.caption, "caption"))
  add(check_string(p.filename, "filename"))
  if p.caption ~= nil and p.type == "audio" then
    add("caption is not supported for audio messages")
  end
  if p.filename ~= nil and known and p.type ~= "document" then
    add("filename is only supported for document messages")
  end
  if #problems > 0 then return validation("POST", SEND_PATH, problems) end
  local media = { url = p.url, caption = p.caption, filename = p.filename }
  return post(self, { to = p.to, type = p.type, [p.type] = media }, p)
end

local LOCATION_PARAMS = { to = true, latitude = true, longitude = true, name = true,
                          address = true }

--- Send a location.
-- client:send_location{ to, latitude, longitude, name, address } -> result, err
-- @tparam table p to, latitude, longitude, name, address, and the per-call options
-- @treturn ?table the result, or nil
-- @treturn ?table err (docs/reference/errors.md) when the first value is nil
-- @raise on a wrong argument type, an unknown parameter or a closed client
function _M:send_location(p)
  check_open(self, "send_location")
  check_table("send_location", p, LOCATION_PARAMS, CALL_OPTIONS)
  local problems, add = problems_list()
  add(validate.e164(p.to, "to"))
  add(check_number(p.latitude, "latitude", -90, 90))
  add(check_number(p.longitude, "longitude", -180, 180))
  add(check_string(p.name, "name"))
  add(check_string(p.address, "address"))
  if #problems > 0 then return validation("POST", SEND_PATH, problems) end
  return post(self, { to = p.to, type = "location", location = {
    latitude = p.latitude, longitude = p.longitude, name = p.name, address = p.address } }, p)
end

-- ---- reading ----

-- Known types always have a content table (a JSON null content is dropped by the decoder);
-- unknown types are left exactly as received.
local function typed(page)
  if type(page) == "table" and type(page.data) == "table" then
    for _, m in ipairs(page.data) do
      if type(m) == "table" and _M.MESSAGE_TYPES[m.type] and m.content == nil then
        m.content = {}
      end
    end
  end
  return page
end

local LIST_PARAMS = { conversation_id = true, limit = true, before = true }

local function list_problems(id, limit, before, limit_name)
  local problems, add = problems_list()
  add(validate.id(id, "conversation_id"))
  if limit ~= nil then
    add(validate.integer_range(limit, limit_name or "limit", 1, _M.MAX_PAGE))
  end
  if before ~= nil then add(validate.id(before, "before")) end
  return problems
end

local function fetch(self, id, limit, before, o)
  local q = url.query{ { "conversationId", id }, { "limit", limit }, { "before", before } }
  local page, err = self:_request("GET", LIST_PATH, q, nil, o)
  if not page then return base.not_found(err, "conversation", id) end
  if type(page.data) ~= "table" then
    return nil, errors.new("decode", "the list response has no data array",
                           { method = "GET", path = LIST_PATH .. q, status = 200 })
  end
  return typed(page)
end

--- One page of a conversation, as the server sends it.
-- client:list_messages{ conversation_id, limit, before }
--   -> { data = { message... }, total, page, hasNext }, err
-- One page as the server sends it (the contract does not fix the order within a page); for
-- the next page pass before = <id of the oldest message of this page>.
-- @tparam table p conversation_id, limit, before, and the per-call options
-- @treturn ?table { data, total, page, hasNext }, or nil
-- @treturn ?table err (docs/reference/errors.md) when the first value is nil
-- @raise on a wrong argument type, an unknown parameter or a closed client
function _M:list_messages(p)
  check_open(self, "list_messages")
  check_table("list_messages", p, LIST_PARAMS, CALL_OPTIONS)
  local problems = list_problems(p.conversation_id, p.limit, p.before)
  if #problems > 0 then return validation("GET", LIST_PATH, problems) end
  return fetch(self, p.conversation_id, p.limit, p.before, p)
end

local ITER_PARAMS = { page_size = true, before = true, page_order = true }
local PAGE_ORDERS = { asc = true, desc = true }

--- Iterate over a conversation, newest first, each message once.
-- for msg, err in client:messages(conversation_id, { page_size, before, page_order }) do
-- Walks the conversation page by page (one request per page; page_size default 50, always
-- sent), each message once, newest first overall whatever the order within a page (found
-- from the timestamps; page_order = "asc" | "desc" states it instead). The next cursor is
-- the id of the page's oldest message. On failure yields false, err once and ends. err.kind:
-- validation (nothing sent), those of list_messages, and server (retryable = false) when
-- the server keeps answering pages that do not move on. Cursor logic: paginate.cursor_step.
-- @tparam string id the conversation id
-- @tparam[opt] table o page_size (50), before, page_order ("asc" | "desc"), and the per-call
--   options
-- @treturn function an iterator yielding msg, or false, err once on failure
-- @raise on a wrong argument type, an unknown parameter or a closed client
function _M:messages(id, o)
  check_open(self, "messages")
  if type(id) ~= "string" then
    error("chatmaid: messages expects a conversation id as a string (got " .. type(id) .. ")", 2)
  end
  o = o or {}
  check_table("messages", o, ITER_PARAMS, CALL_OPTIONS)
  local copt = { timeout = o.timeout, max_retries = o.max_retries,
                 max_retry_wait = o.max_retry_wait }
  local problems = list_problems(id, o.page_size, o.before, "page_size")
  if o.page_order ~= nil and not PAGE_ORDERS[o.page_order] then
    problems[#problems + 1] = validate.one_of(o.page_order, PAGE_ORDERS, "page_order")
  end
  local pending
  if #problems > 0 then
    local _
    _, pending = validation("GET", LIST_PATH, problems)
  end
  local st = paginate.cursor_state{ page_size = o.page_size, before = o.before,
                                    page_order = o.page_order, path = LIST_PATH }
  local buf, i, finished = {}, 0, false
  return function()
    if finished then return nil end
    while true do
      if i < #buf then
        i = i + 1
        return buf[i]
      end
      if pending or st.done then
        finished = true
        if pending then return false, pending end
        return nil
      end
      local page, err = fetch(self, id, st.size, st.cursor, copt)
      if not page then finished = true; return false, err end
      buf, pending = paginate.cursor_step(st, page)
      i = 0
    end
  end
end

return _M
