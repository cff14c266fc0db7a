-- SPDX-License-Identifier: MIT
-- The /__sandbox/ control endpoints: stats, faults, reset, seed, phone states, webhook log,
-- runtime config and shutdown. Refused with 404 unless the sandbox runs with control on, and
-- with 403 without the X-Chatmaid-Sandbox: 1 header or with a non-loopback Host or Origin.
local json = require("chatmaid.sandbox.json")
local util = require("chatmaid.sandbox.util")
local R = require("chatmaid.sandbox.responses")
local rules = require("chatmaid.sandbox.rules")

local _M = {}

local function body_of(req)
  if not req.body or req.body:match("^%s*$") then return {} end
  local b, err = json.decode(req.body)
  if type(b) ~= "table" then return nil, "body must be a JSON object (" .. tostring(err) .. ")" end
  return b
end

local function nn(v) if v == json.null then return nil end return v end

-- The header every control request carries. A browser sends a custom header cross-origin
-- only after a CORS preflight, which the sandbox never grants, so a web page open in the
-- developer's browser cannot drive these endpoints with "simple" requests.
_M.HEADER = "X-Chatmaid-Sandbox"
_M.MAX_SEED = 10000

local function loopback_host(host)
  host = host:lower()
  return host == "localhost" or host == "[::1]" or host:find("^127%.%d+%.%d+%.%d+$") ~= nil
end

-- "127.0.0.1:8787", "localhost", "[::1]:8787" -> true; anything else (a DNS name that
-- resolves to 127.0.0.1 in a rebinding attack, a LAN address) -> false.
local function loopback_authority(a)
  local host, port = a:match("^(%[[^%]]*%])(.*)$")
  if not host then host, port = a:match("^([^:]*)(.*)$") end
  return loopback_host(host) and (port == "" or port:find("^:%d+$") ~= nil)
end

-- gate(req) -> nil when the control request may run, else the 403 to answer.
function _M.gate(req)
  local h = req.headers
  if h["x-chatmaid-sandbox"] ~= "1" then
    return R.error(403, "control endpoints need the header " .. _M.HEADER .. ": 1", req.path)
  end
  if not (h.host and loopback_authority(h.host)) then
    return R.error(403, "control endpoints answer only to a loopback Host (127.0.0.1, "
      .. "localhost, [::1])", req.path)
  end
  local origin = h.origin
  if origin then
    local scheme, authority = origin:lower():match("^(https?)://([^/]+)/?$")
    if not (scheme and loopback_authority(authority)) then
      return R.error(403, "control endpoints refuse a non-loopback Origin", req.path)
    end
  end
  return nil
end

-- count -> n | nil, response (1.._M.MAX_SEED; default 1)
function _M.seed_count(v, path)
  if v == nil or v == json.null then return 1 end
  local n = tonumber(v)
  if not n or n ~= math.floor(n) or n < 1 or n > _M.MAX_SEED then
    return nil, R.error(400, "count must be an integer from 1 to " .. _M.MAX_SEED, path)
  end
  return n
end

local function stats(app)
  local s = app.store.stats
  return R.ok(200, json.obj(
    "sendRequests", s.sendRequests, "messagesCreated", s.messagesCreated,
    "messagesSeeded", s.messagesSeeded, "connectionsAccepted", s.connectionsAccepted,
    "connectionsRefused", s.connectionsRefused,
    "requests", s.requests, "byPath", s.byPath, "webhookDeliveries", s.webhookDeliveries,
    "faultsApplied", s.faultsApplied, "faultsPending", #app.faults.list,
    "rateLimited", s.rateLimited,
    "messages", #app.store.messages))
end

local function faults(app, req)
  local b, err = body_of(req)
  if not b then return R.error(400, err, req.path) end
  local list = b.faults or { b }
  local added = {}
  for _, spec in ipairs(list) do
    local f, problem = app.faults:add(spec)
    if not f then return R.error(400, problem, req.path) end
    added[#added + 1] = json.obj("type", f.type, "path", f.path, "method", f.method,
      "count", f.count, "process", f.process)
  end
  return R.ok(201, json.arr(added))
end

local function seed(app, req)
  local b, err = body_of(req)
  if not b then return R.error(400, err, req.path) end
  local store = app.store
  local acc = store.accounts[1]
  if nn(b.accountId) then
    acc = nil
    for _, a in ipairs(store.accounts) do if a.id == b.accountId then acc = a end end
    if not acc then return R.error(404, "Account not found", req.path) end
  end
  local phone = store:phone(acc, nn(b.phoneNumberId) or acc.phones[1].id)
  if not phone then return R.error(404, "Phone number not found", req.path) end
  local status = nn(b.status) or "sent"
  local okstatus = false
  for _, s in ipairs(rules.STATUSES) do if s == status then okstatus = true end end
  if not okstatus then return R.error(400, "status must be one of the following values: "
    .. table.concat(rules.STATUSES, ", "), req.path) end
  local count, bad = _M.seed_count(b.count, req.path)
  if not count then return bad end
  local ids = {}
  for i = 1, count do
    local m = store:create{
      account = acc, phone = phone, to = nn(b.to) or "+15550000001",
      content = nn(b.content) or ("Seeded message " .. i), mediaUrls = {},
      environment = nn(b.environment) or "test", status = status,
    }
    ids[i] = m.id
  end
  store.stats.messagesSeeded = store.stats.messagesSeeded + count
  return R.ok(201, json.obj("created", count, "ids", json.arr(ids)))
end

local PHONE_EVENTS = { connected = "phone.connected", disconnected = "phone.disconnected" }

local function phone_state(app, req, ref)
  local b, err = body_of(req)
  if not b then return R.error(400, err, req.path) end
  local state = b.connectionStatus or b.state
  if state ~= "connected" and state ~= "disconnected" and state ~= "connecting" then
    return R.error(400, "connectionStatus must be one of the following values: "
      .. "connected, disconnected, connecting", req.path)
  end
  local p = app.store:find_phone_any(ref)
  if not p then return R.error(404, "Phone number not found", req.path) end
  local now = util.iso(app.store:next_ms())
  local changed = p.connectionStatus ~= state
  p.connectionStatus, p.updatedAt = state, now
  if state == "connected" then p.lastConnectedAt = now end
  if state == "disconnected" then p.lastDisconnectedAt = now end
  if changed and PHONE_EVENTS[state] then
    app:emit(PHONE_EVENTS[state], json.obj("phoneNumberId", p.id, "phoneNumber", p.phoneNumber,
      "connectionStatus", state))
  end
  return R.ok(200, R.phone(p))
end

local function config(app, req)
  local b, err = body_of(req)
  if not b then return R.error(400, err, req.path) end
  local c = app.config
  if b.rate_limit ~= nil then
    local v = b.rate_limit
    if v == json.null or v == false or v == "off" then c.rate_limit = false
    else c.rate_limit = tonumber(v) end
  end
  if b.live_delay ~= nil then c.live_delay = tonumber(b.live_delay) or c.live_delay end
  if b.time_factor ~= nil then c.time_factor = tonumber(b.time_factor) or c.time_factor end
  if type(b.webhook) == "table" then
    c.webhook = c.webhook or {}
    for k, v in pairs(b.webhook) do c.webhook[k] = nn(v) end
  end
  if type(b.failing_numbers) == "table" then c.failing_numbers = b.failing_numbers end
  if b.conversations_page_order ~= nil then
    local o = b.conversations_page_order
    if o ~= "asc" and o ~= "desc" then
      return R.error(400, "conversations_page_order must be asc or desc", req.path)
    end
    c.conversations_page_order = o
  end
  if b.conversations_has_next ~= nil then
    c.conversations_has_next = b.conversations_has_next ~= false
  end
  local wh = c.webhook or {}
  return R.ok(200, json.obj("rate_limit", c.rate_limit or false, "live_delay", c.live_delay,
    "time_factor", c.time_factor, "conversations_page_order", c.conversations_page_order,
    "conversations_has_next", c.conversations_has_next ~= false,
    "webhook", json.obj("url", wh.url or json.null,
      "retry_schedule", json.arr(wh.retry_schedule or {}))))
end

-- handle(app, req) -> response
function _M.handle(app, req)
  if not app.control then
    return R.error(404, "Cannot " .. req.method .. " " .. req.path, req.path)
  end
  local refused = _M.gate(req)
  if refused then return refused end
  local m, p = req.method, req.path:sub(#"/__sandbox" + 1)
  if m == "GET" and p == "/stats" then return stats(app) end
  if m == "POST" and p == "/faults" then return faults(app, req) end
  if m == "GET" and p == "/faults" then return R.ok(200, app.faults:pending()) end
  if m == "POST" and p == "/reset" then
    app:reset()
    return R.ok(200, json.obj("reset", true))
  end
  if m == "POST" and p == "/seed" then return seed(app, req) end
  local ref = p:match("^/phones/([^/]+)/state$")
  if m == "POST" and ref then return phone_state(app, req, util.url_decode(ref)) end
  if m == "GET" and p == "/webhooks" then return R.ok(200, json.arr(app.webhooks.log)) end
  if m == "POST" and p == "/config" then return config(app, req) end
  if m == "POST" and p == "/echo" then
    -- the exact request body back (proves bodies are read byte for byte)
    return R.new(200, req.body, "application/octet-stream")
  end
  if m == "POST" and p == "/shutdown" then
    app.stopping = true
    return R.ok(200, json.obj("stopping", true))
  end
  if p:sub(1, 15) == "/conversations/" then
    return require("chatmaid.sandbox.conversations").control(app, req, p)
  end
  return R.error(404, "Cannot " .. m .. " " .. req.path, req.path)
end

return _M
