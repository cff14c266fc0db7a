-- SPDX-License-Identifier: MIT
-- Request validation with the service's messages (class-validator wording): every problem
-- is listed, in declaration order.
local json = require("chatmaid.sandbox.json")
local util = require("chatmaid.sandbox.util")

local _M = {}

_M.E164_MESSAGE = "Phone number must be in E.164 format (e.g., +1987654321)"
_M.STATUSES = { "pending", "sent", "failed", "delivered", "read" }

local function present(v) return v ~= nil and v ~= json.null end

local function is_array(v)
  if type(v) ~= "table" then return false end
  local n = 0
  for k in pairs(v) do
    if type(k) ~= "number" then return false end
    n = n + 1
  end
  return n == #v
end

function _M.is_e164(s)
  if type(s) ~= "string" then return false end
  local digits = s:match("^%+([1-9]%d+)$")
  return digits ~= nil and #digits <= 15
end

local PRIVATE = { "^127%.", "^10%.", "^192%.168%.", "^169%.254%.", "^0%.", "^172%.1[6-9]%.",
  "^172%.2%d%.", "^172%.3[01]%." }

-- public_https(url) -> true when url is https:// with a public-looking host.
function _M.public_https(u)
  if type(u) ~= "string" or u:find("[%s%c]") then return false end
  local host = u:match("^[hH][tT][tT][pP][sS]://([^/?#]+)")
  if not host then return false end
  host = host:gsub("^.*@", ""):gsub(":%d*$", ""):lower()
  if host == "" or host:sub(1, 1) == "[" or not host:find("%.") then return false end
  if host == "localhost" or host:match("%.localhost$") or host:match("%.local$")
    or host:match("%.internal$") then return false end
  for _, p in ipairs(PRIVATE) do if host:match(p) then return false end end
  return true
end

local SEND_FIELDS = { "fromPhoneId", "to", "content", "mediaUrls", "idempotencyKey" }

-- send(body) -> array of problems (empty when valid).
function _M.send(b)
  local m = {}
  local known = {}
  for _, f in ipairs(SEND_FIELDS) do known[f] = true end
  local extra = {}
  for k in pairs(b) do if not known[k] then extra[#extra + 1] = tostring(k) end end
  table.sort(extra)
  for _, k in ipairs(extra) do m[#m + 1] = "property " .. k .. " should not exist" end

  if not present(b.fromPhoneId) then
    m[#m + 1] = "fromPhoneId should not be empty"
    m[#m + 1] = "fromPhoneId must be a string"
  elseif type(b.fromPhoneId) ~= "string" then
    m[#m + 1] = "fromPhoneId must be a string"
  elseif b.fromPhoneId == "" then
    m[#m + 1] = "fromPhoneId should not be empty"
  end

  if type(b.to) ~= "string" then
    m[#m + 1] = _M.E164_MESSAGE
    m[#m + 1] = "to must be a string"
  elseif not _M.is_e164(b.to) then
    m[#m + 1] = _M.E164_MESSAGE
  end

  local has_content = false
  if present(b.content) then
    if type(b.content) ~= "string" then
      m[#m + 1] = "content must be a string"
    else
      local n = util.utf16_len(b.content)
      if not n then
        m[#m + 1] = "content must be valid UTF-8"
      elseif n > 4096 then
        m[#m + 1] = "content must be shorter than or equal to 4096 characters"
      end
      has_content = b.content ~= ""
    end
  end

  local has_media = false
  if present(b.mediaUrls) then
    if not is_array(b.mediaUrls) then
      m[#m + 1] = "mediaUrls must be an array"
    else
      for _, u in ipairs(b.mediaUrls) do
        if not _M.public_https(u) then
          m[#m + 1] = "each value in mediaUrls must be a public HTTPS URL"
          break
        end
      end
      has_media = #b.mediaUrls > 0
    end
  end
  if not has_content and not has_media then
    m[#m + 1] = "content or mediaUrls is required"
  end

  if present(b.idempotencyKey) then
    if type(b.idempotencyKey) ~= "string" then
      m[#m + 1] = "idempotencyKey must be a string"
    elseif (util.utf16_len(b.idempotencyKey) or #b.idempotencyKey) > 64 then
      m[#m + 1] = "idempotencyKey must be shorter than or equal to 64 characters"
    end
  end
  return m
end

local function one_of(m, name, v, values)
  if v == nil then return end
  for _, x in ipairs(values) do if x == v then return end end
  m[#m + 1] = name .. " must be one of the following values: " .. table.concat(values, ", ")
end

local function int_param(m, name, v, min, max)
  if v == nil then return nil end
  local n = tonumber(v:match("^%s*(-?%d+%.?%d*)%s*$") or "")
  local int = v:match("^%s*-?%d+%s*$") ~= nil
  if not int then m[#m + 1] = name .. " must be an integer number" end
  if not n or n < min then m[#m + 1] = name .. " must not be less than " .. min end
  if max and n and n > max then m[#m + 1] = name .. " must not be greater than " .. max end
  return n
end

-- list(query) -> filter, page, limit, problems
function _M.list(q)
  local m = {}
  local page = int_param(m, "page", q.page, 1)
  local limit = int_param(m, "limit", q.limit, 1, 100)
  one_of(m, "status", q.status, _M.STATUSES)
  one_of(m, "environment", q.environment, { "live", "test" })
  local f = { status = q.status, environment = q.environment, phoneNumberId = q.phoneNumberId }
  return f, page or 1, limit or 20, m
end

-- usage(query) -> period, problems
function _M.usage(q)
  local m = {}
  one_of(m, "period", q.period, { "day", "week", "month" })
  return q.period or "month", m
end

return _M
