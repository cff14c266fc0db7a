-- SPDX-License-Identifier: MIT
-- The eight /v1 endpoints: routing, auth, rate limit, scopes, then the handlers.
local json = require("chatmaid.sandbox.json")
local util = require("chatmaid.sandbox.util")
local R = require("chatmaid.sandbox.responses")
local rules = require("chatmaid.sandbox.rules")

local _M = {}

local SEND = { "messages:send", "messages:write" }
local READ = { "messages:read" }
local PHONE = { "phone_numbers:read", "phone-numbers:read", "messages:read", "messages:send",
  "messages:write" }
local ACCOUNT = { "account:read", "messages:read", "messages:send", "messages:write" }

local handlers = {}

-- routes: { method, pattern segments, scopes, handler name }
local ROUTES = {
  { "POST", { "v1", "messages", "send" }, SEND, "send" },
  { "GET", { "v1", "messages" }, READ, "list" },
  { "GET", { "v1", "messages", ":id" }, READ, "get" },
  { "GET", { "v1", "phone-numbers" }, PHONE, "phones" },
  { "GET", { "v1", "phone-numbers", ":id" }, PHONE, "phone" },
  { "GET", { "v1", "phone-numbers", ":id", "status" }, PHONE, "phone_status" },
  { "GET", { "v1", "account" }, ACCOUNT, "account" },
  { "GET", { "v1", "account", "usage" }, ACCOUNT, "usage" },
}

local function segments(path)
  local s = {}
  for seg in path:gmatch("[^/]+") do s[#s + 1] = seg end
  return s
end

local function match(route, segs)
  local pat = route[2]
  if #pat ~= #segs then return nil end
  local params = {}
  for i, p in ipairs(pat) do
    if p:sub(1, 1) == ":" then
      params[p:sub(2)] = util.url_decode(segs[i])
    elseif p ~= segs[i] then
      return nil
    end
  end
  return params
end

local function scoped(key, scopes)
  for _, s in ipairs(scopes) do if key.scopes[s] then return true end end
  return false
end

local function authenticate(store, req)
  local h = req.headers["authorization"]
  if not h or h:match("^%s*$") then return nil, "Missing API key" end
  local token = util.bearer(h)
  if not token then return nil, "Invalid authorization header format" end
  local key = store:key(token)
  if not key then return nil, "Invalid API key" end
  if key.revoked then return nil, "API key has been revoked" end
  if key.expired then return nil, "API key has expired" end
  return key
end

-- handle(app, req) -> response. req: method, path, query (table), headers, body.
function _M.handle(app, req)
  local store = app.store
  local segs = segments(req.path)
  local route, params
  -- HEAD is answered by the GET route (as Express does); the server sends no body
  local method = req.method == "HEAD" and "GET" or req.method
  for _, r in ipairs(ROUTES) do
    if r[1] == method then
      params = match(r, segs)
      if params then route = r; break end
    end
  end
  if not route then
    return R.error(404, "Cannot " .. req.method .. " " .. req.path, req.path)
  end
  local key, why = authenticate(store, req)
  if not key then return R.error(401, why, req.path) end
  local acc = key.account
  local wait = store:rate_check(key.key)
  if wait then
    store:note_api(acc, false)
    return R.rate_limited(wait)
  end
  local resp
  if not scoped(key, route[3]) then
    resp = R.error(403, "API key does not include required scope: " .. route[3][1]
      .. (#route[3] > 1 and (" (also accepted: " .. table.concat(route[3], ", ", 2) .. ")")
      or ""), req.path)
  elseif key.environment == "live" and acc.subscriptionStatus ~= "active" then
    resp = R.error(403, "Live API keys require an active subscription", req.path)
  else
    local ctx = { app = app, store = store, key = key, account = acc, params = params,
      req = req }
    resp = handlers[route[4]](ctx)
  end
  store:note_api(acc, resp.status < 400)
  return resp
end

local function failing(app, to)
  local f = app.config.failing_numbers and app.config.failing_numbers[to]
  if not f or f == json.null then return nil end
  if type(f) ~= "table" then f = {} end
  return {
    errorCode = f.errorCode or "RECIPIENT_UNREACHABLE",
    errorMessage = f.errorMessage or "The recipient is not reachable on WhatsApp",
  }
end

local function message_event(app, m)
  local data = json.obj("messageId", m.id, "from", m.from, "to", m.to, "status", m.status,
    "environment", m.environment)
  if m.status == "failed" then
    json.set(data, "errorCode", m.errorCode)
    json.set(data, "errorMessage", m.errorMessage)
    json.set(data, "failedAt", m.failedAt)
    app:emit("message.failed", data)
  else
    json.set(data, "sentAt", m.sentAt)
    app:emit("message.sent", data)
  end
end
_M.message_event = message_event

-- Live messages leave `pending` after live_delay * time_factor seconds.
local function settle_later(app, m)
  local gen = app.store.generation
  local delay = (tonumber(app.config.live_delay) or 2) * (tonumber(app.config.time_factor) or 1)
  app:spawn(function()
    app:sleep(delay)
    if app.store.generation ~= gen or m.status ~= "pending" then return end
    local now = util.iso(app.store:next_ms())
    local f = failing(app, m.to)
    if f then
      m.status, m.failedAt, m.errorCode, m.errorMessage = "failed", now, f.errorCode,
        f.errorMessage
    else
      m.status, m.sentAt = "sent", now
    end
    message_event(app, m)
  end)
end

-- The service (NestJS/Express body parsers) reads a JSON body only under Content-Type
-- application/json, and a form under application/x-www-form-urlencoded; any other body is
-- not read at all, so the request fails validation with the missing-field messages.
function handlers.send(ctx)
  local req, store, path = ctx.req, ctx.store, ctx.req.path
  local body = req.body or ""
  if not util.utf16_len(body) then
    return R.error(400, "Request body must be valid UTF-8", path)
  end
  local ctype = util.media_type(req.headers["content-type"])
  local b
  if ctype == "application/x-www-form-urlencoded" then
    b = util.parse_query(body)
  elseif ctype ~= "application/json" or body:match("^%s*$") then
    b = {}
  else
    local err
    b, err = json.decode(body)
    if b == nil then
      return R.error(400, "Request body must be valid JSON (" .. tostring(err) .. ")", path)
    end
    if type(b) ~= "table" or (next(b) ~= nil and #b > 0) or body:match("^%s*%[") then
      return R.error(400, "Request body must be a JSON object", path)
    end
  end
  local problems = rules.send(b)
  if #problems > 0 then return R.error(400, problems, path) end

  local acc = ctx.account
  if b.idempotencyKey ~= nil and b.idempotencyKey ~= json.null then
    local orig = store:by_idem(acc, b.idempotencyKey)
    if orig then return R.ok(201, R.message(orig)) end
  end
  -- fromPhoneId is a phone id: "Must be a phone ID in your account". An E.164 number is not
  -- one (only GET /v1/phone-numbers/:id also takes numbers), so it is answered as unknown.
  local phone = store:phone_by_id(acc, b.fromPhoneId)
  if not phone then return R.error(404, "Phone number not found", path) end
  local live = ctx.key.environment == "live"
  if live and phone.connectionStatus ~= "connected" then
    return R.error(400, "Phone number " .. phone.phoneNumber .. " is not connected"
      .. " (connectionStatus: " .. phone.connectionStatus .. ")", path)
  end
  local content = b.content
  if content == json.null then content = nil end
  local media = {}
  if type(b.mediaUrls) == "table" then for i, u in ipairs(b.mediaUrls) do media[i] = u end end
  local m = store:create{
    account = acc, phone = phone, to = b.to, content = content, mediaUrls = media,
    environment = ctx.key.environment, status = live and "pending" or "sent",
    idempotencyKey = (b.idempotencyKey ~= json.null) and b.idempotencyKey or nil,
  }
  store.stats.messagesCreated = store.stats.messagesCreated + 1
  if live then settle_later(ctx.app, m) else message_event(ctx.app, m) end
  return R.ok(201, R.message(m))
end

function handlers.list(ctx)
  local f, page, limit, problems = rules.list(ctx.req.query)
  if #problems > 0 then return R.error(400, problems, ctx.req.path) end
  f.environment = f.environment or ctx.key.environment
  local items, total = ctx.store:list(ctx.account, f, page, limit)
  local out = {}
  for i, m in ipairs(items) do out[i] = R.message(m) end
  return R.ok(200, json.obj(
    "data", json.arr(out),
    "pagination", json.obj("page", page, "limit", limit, "total", total,
      "totalPages", math.ceil(total / limit))))
end

function handlers.get(ctx)
  local m = ctx.store:message(ctx.account, ctx.params.id)
  if not m then return R.error(404, "Message not found", ctx.req.path) end
  return R.ok(200, R.message(m))
end

function handlers.phones(ctx)
  local out = {}
  for i, p in ipairs(ctx.account.phones) do out[i] = R.phone(p) end
  return R.ok(200, json.arr(out))
end

function handlers.phone(ctx)
  local p = ctx.store:phone(ctx.account, ctx.params.id)
  if not p then return R.error(404, "Phone number not found", ctx.req.path) end
  return R.ok(200, R.phone(p))
end

function handlers.phone_status(ctx)
  local p = ctx.store:phone(ctx.account, ctx.params.id)
  if not p then return R.error(404, "Phone number not found", ctx.req.path) end
  return R.ok(200, R.phone_status(p))
end

function handlers.account(ctx)
  local acc = ctx.account
  local c = ctx.store:message_counts(acc)
  return R.ok(200, json.obj(
    "accountId", acc.id, "name", acc.name, "email", acc.email,
    "subscriptionStatus", acc.subscriptionStatus,
    "stats", json.obj("apiKeys", acc.key_count, "phoneNumbers", #acc.phones,
      "messages", c.total)))
end

local PERIOD_DAYS = { day = 1, week = 7, month = 30 }

function handlers.usage(ctx)
  local period, problems = rules.usage(ctx.req.query)
  if #problems > 0 then return R.error(400, problems, ctx.req.path) end
  local now = util.now_ms()
  local since = now - PERIOD_DAYS[period] * 86400000
  local c = ctx.store:message_counts(ctx.account, since)
  -- this request is counted once it has been answered, like the real service's log
  local a = ctx.store:api_counts(ctx.account, since)
  return R.ok(200, json.obj(
    "period", period, "startDate", util.iso(since), "endDate", util.iso(now),
    "messages", json.obj("total", c.total, "pending", c.pending, "sent", c.sent,
      "failed", c.failed),
    "apiRequests", json.obj("total", a.total, "successful", a.successful, "failed", a.failed)))
end

return _M
