-- SPDX-License-Identifier: MIT
-- Response values and the Chatmaid envelopes (success, error, rate limit).
local json = require("chatmaid.sandbox.json")
local util = require("chatmaid.sandbox.util")

local _M = {}

_M.REASONS = {
  [100] = "Continue", [200] = "OK", [201] = "Created", [204] = "No Content",
  [400] = "Bad Request", [401] = "Unauthorized", [403] = "Forbidden", [404] = "Not Found",
  [405] = "Method Not Allowed", [408] = "Request Timeout", [411] = "Length Required",
  [413] = "Payload Too Large", [429] = "Too Many Requests",
  [431] = "Request Header Fields Too Large", [500] = "Internal Server Error",
  [502] = "Bad Gateway", [503] = "Service Unavailable", [504] = "Gateway Timeout",
}

-- A response is { status = n, headers = { {name, value}, ... }, body = string }.
function _M.new(status, body, content_type, headers)
  local h = { { "Content-Type", content_type or "application/json; charset=utf-8" } }
  for _, kv in ipairs(headers or {}) do h[#h + 1] = kv end
  return { status = status, headers = h, body = body or "" }
end

-- ok(status, data) -> {"success":true,"data":...}
function _M.ok(status, data)
  return _M.new(status, json.encode(json.obj("success", true, "data", data)))
end

-- error(status, messages, path) -> the documented error envelope.
function _M.error(status, messages, path, headers)
  if type(messages) == "string" then messages = { messages } end
  local body = json.obj(
    "success", false,
    "error", _M.REASONS[status] or "Error",
    "message", json.arr(messages),
    "statusCode", status,
    "timestamp", util.iso(util.now_ms()),
    "path", path)
  return _M.new(status, json.encode(body), nil, headers)
end

-- rate_limited(n) -> 429 {"success":false,"error":"Rate limit exceeded","retryAfter":n}
function _M.rate_limited(n)
  n = math.floor(n)
  local body = json.obj("success", false, "error", "Rate limit exceeded", "retryAfter", n)
  return _M.new(429, json.encode(body), nil, { { "Retry-After", string.format("%d", n) } })
end

local function null(v)
  if v == nil then return json.null end
  return v
end
_M.null = null

-- message(m) -> the public JSON shape of a message: the documented fields only (the
-- deliveredAt/readAt of the older docs when set). Never phoneNumberId or idempotencyKey,
-- which the service does not return.
function _M.message(m)
  local o = json.obj(
    "id", m.id, "from", m.from, "to", m.to, "content", null(m.content),
    "mediaUrls", json.arr(m.mediaUrls), "environment", m.environment, "status", m.status,
    "createdAt", m.createdAt, "sentAt", null(m.sentAt), "failedAt", null(m.failedAt),
    "errorCode", null(m.errorCode), "errorMessage", null(m.errorMessage))
  json.set(o, "deliveredAt", m.deliveredAt)
  json.set(o, "readAt", m.readAt)
  return o
end

function _M.phone(p)
  return json.obj(
    "id", p.id, "phoneNumber", p.phoneNumber, "displayName", null(p.displayName),
    "connectionStatus", p.connectionStatus, "lastConnectedAt", null(p.lastConnectedAt),
    "lastDisconnectedAt", null(p.lastDisconnectedAt), "createdAt", p.createdAt,
    "updatedAt", p.updatedAt)
end

function _M.phone_status(p)
  return json.obj(
    "id", p.id, "phoneNumber", p.phoneNumber, "connectionStatus", p.connectionStatus,
    "lastConnectedAt", null(p.lastConnectedAt),
    "lastDisconnectedAt", null(p.lastDisconnectedAt), "updatedAt", p.updatedAt)
end

return _M
