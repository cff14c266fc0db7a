-- SPDX-License-Identifier: MIT
-- The sandbox's in-memory state: accounts, keys, phones, messages, counters and rate windows.
local util = require("chatmaid.sandbox.util")
local json = require("chatmaid.sandbox.json")

local _M = {}
local mt = { __index = _M }

local function nn(v) -- config values may carry JSON null
  if v == json.null then return nil end
  return v
end

-- new(config) -> store. config is the merged configuration (defaults + user).
function _M.new(config)
  local self = setmetatable({ config = config }, mt)
  self:load_accounts()
  self:reset()
  return self
end

function _M:load_accounts()
  self.accounts, self.keys = {}, {}
  for _, a in ipairs(self.config.accounts or {}) do
    local acc = {
      id = a.id, name = a.name, email = a.email,
      subscriptionStatus = a.subscriptionStatus or "active",
      phones = {}, key_count = 0,
    }
    for _, k in ipairs(a.keys or {}) do
      local scopes = {}
      for _, s in ipairs(k.scopes or {}) do scopes[s] = true end
      self.keys[k.key] = {
        key = k.key, account = acc, scopes = scopes,
        environment = k.key:match("^sk_live_") and "live" or "test",
        expired = k.expired and k.expired ~= json.null,
        revoked = k.revoked and k.revoked ~= json.null,
      }
      acc.key_count = acc.key_count + 1
    end
    for _, p in ipairs(a.phones or {}) do
      acc.phones[#acc.phones + 1] = {
        id = p.id, phoneNumber = p.phoneNumber, displayName = nn(p.displayName),
        connectionStatus = p.connectionStatus or "connected",
        lastConnectedAt = nn(p.lastConnectedAt), lastDisconnectedAt = nn(p.lastDisconnectedAt),
        createdAt = nn(p.createdAt) or "2026-01-01T00:00:00.000Z",
        updatedAt = nn(p.updatedAt) or nn(p.createdAt) or "2026-01-01T00:00:00.000Z",
      }
    end
    self.accounts[#self.accounts + 1] = acc
  end
  -- keep original phone records so reset() can restore connection states
  self.phone_snapshot = {}
  for _, acc in ipairs(self.accounts) do
    for _, p in ipairs(acc.phones) do self.phone_snapshot[p] = util.deepcopy(p) end
  end
end

-- reset(): drop messages, counters, faults and rate windows; keep configuration.
function _M:reset()
  self.generation = (self.generation or 0) + 1
  self.messages = {}          -- creation order (createdAt strictly increasing)
  self.by_id = {}
  self.idem = {}              -- account id -> key -> message
  self.api_log = {}           -- account id -> array of { ms, ok }
  self.rate = {}              -- api key -> array of request times (seconds)
  self.last_ms = 0
  self.stats = {
    sendRequests = 0, messagesCreated = 0, messagesSeeded = 0, connectionsAccepted = 0,
    connectionsRefused = 0,
    requests = 0, byPath = {}, webhookDeliveries = 0, faultsApplied = 0, rateLimited = 0,
  }
  for p, snap in pairs(self.phone_snapshot or {}) do
    for k in pairs(p) do p[k] = nil end
    for k, v in pairs(snap) do p[k] = v end
  end
end

function _M:key(k)
  return self.keys[k]
end

-- phone(account, ref) -> phone by internal id or E.164 number.
function _M.phone(_, acc, ref)
  for _, p in ipairs(acc.phones) do
    if p.id == ref or p.phoneNumber == ref then return p end
  end
  return nil
end

-- phone_by_id(account, id) -> phone by internal id only (fromPhoneId of a send).
function _M.phone_by_id(_, acc, id)
  for _, p in ipairs(acc.phones) do
    if p.id == id then return p end
  end
  return nil
end

function _M:find_phone_any(ref)
  for _, acc in ipairs(self.accounts) do
    local p = self:phone(acc, ref)
    if p then return p, acc end
  end
  return nil
end

-- next_ms() -> creation time in ms, strictly increasing so list order is deterministic.
function _M:next_ms()
  local ms = util.now_ms()
  if ms <= self.last_ms then ms = self.last_ms + 1 end
  self.last_ms = ms
  return ms
end

local function new_id(self)
  local id
  repeat id = "msg_" .. util.hex(24) until not self.by_id[id]
  return id
end

-- create(fields) -> message. fields: account, phone, to, content, mediaUrls, environment,
-- status, idempotencyKey, errorCode, errorMessage.
function _M:create(f)
  local ms = self:next_ms()
  local m = {
    id = new_id(self), account = f.account, accountId = f.account.id,
    from = f.phone.phoneNumber, to = f.to, content = f.content,
    mediaUrls = f.mediaUrls or {}, environment = f.environment, status = f.status,
    createdMs = ms, createdAt = util.iso(ms),
    phoneNumberId = f.phone.id, idempotencyKey = f.idempotencyKey,
  }
  if f.status == "sent" or f.status == "delivered" or f.status == "read" then
    m.sentAt = m.createdAt
  elseif f.status == "failed" then
    m.failedAt = m.createdAt
    m.errorCode = f.errorCode or "SEND_FAILED"
    m.errorMessage = f.errorMessage or "The message could not be sent"
  end
  if f.status == "delivered" or f.status == "read" then m.deliveredAt = m.createdAt end
  if f.status == "read" then m.readAt = m.createdAt end
  self.messages[#self.messages + 1] = m
  self.by_id[m.id] = m
  if f.idempotencyKey then
    local t = self.idem[m.accountId] or {}
    self.idem[m.accountId] = t
    t[f.idempotencyKey] = m
  end
  return m
end

function _M:by_idem(acc, key)
  local t = self.idem[acc.id]
  return t and t[key]
end

function _M:message(acc, id)
  local m = self.by_id[id]
  if m and m.accountId == acc.id then return m end
  return nil
end

-- list(acc, filter, page, limit) -> page of messages (createdAt desc, id desc), total.
function _M:list(acc, f, page, limit)
  local matched = {}
  for i = #self.messages, 1, -1 do
    local m = self.messages[i]
    if m.accountId == acc.id
      and (not f.environment or m.environment == f.environment)
      and (not f.status or m.status == f.status)
      and (not f.phoneNumberId or m.phoneNumberId == f.phoneNumberId) then
      matched[#matched + 1] = m
    end
  end
  local out = {}
  local first = (page - 1) * limit + 1
  for i = first, math.min(first + limit - 1, #matched) do out[#out + 1] = matched[i] end
  return out, #matched
end

-- account_messages(acc, since_ms) -> counts { total, pending, sent, failed }.
function _M:message_counts(acc, since_ms)
  local c = { total = 0, pending = 0, sent = 0, failed = 0 }
  for i = #self.messages, 1, -1 do
    local m = self.messages[i]
    if since_ms and m.createdMs < since_ms then break end
    if m.accountId == acc.id then
      c.total = c.total + 1
      local s = m.status
      if s == "delivered" or s == "read" then s = "sent" end
      c[s] = (c[s] or 0) + 1
    end
  end
  return c
end

-- note_api(acc, ok): one authenticated API request for usage counters.
function _M:note_api(acc, ok)
  local log = self.api_log[acc.id] or {}
  self.api_log[acc.id] = log
  log[#log + 1] = { util.now_ms(), ok }
end

function _M:api_counts(acc, since_ms)
  local c = { total = 0, successful = 0, failed = 0 }
  local log = self.api_log[acc.id] or {}
  for i = #log, 1, -1 do
    local e = log[i]
    if e[1] < since_ms then break end
    c.total = c.total + 1
    if e[2] then c.successful = c.successful + 1 else c.failed = c.failed + 1 end
  end
  return c
end

-- rate_check(key) -> nil when allowed, else retryAfter seconds (integer >= 1).
-- Sliding window of rate_window seconds (60) per key; refused requests do not use up the
-- window.
function _M:rate_check(key)
  local limit = self.config.rate_limit
  if not limit or limit == json.null or limit == "off" or limit <= 0 then return nil end
  local window = tonumber(self.config.rate_window) or 60
  local now = util.now()
  local w = self.rate[key] or {}
  local keep = {}
  for _, t in ipairs(w) do if t > now - window then keep[#keep + 1] = t end end
  self.rate[key] = keep
  if #keep >= limit then
    self.stats.rateLimited = self.stats.rateLimited + 1
    local wait = math.ceil(keep[#keep - limit + 1] + window - now)
    if wait < 1 then wait = 1 end
    return wait
  end
  keep[#keep + 1] = now
  return nil
end

function _M:count_path(method, path)
  local k = method .. " " .. path
  self.stats.requests = self.stats.requests + 1
  self.stats.byPath[k] = (self.stats.byPath[k] or 0) + 1
end

return _M
