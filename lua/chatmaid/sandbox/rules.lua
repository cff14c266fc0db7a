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

-- IPv6 literals that are not public addresses: unspecified, loopback, unique local
-- (fc00::/7), link-local (fe80::/10), multicast (ff00::/8), documentation (2001:db8::/32).
local PRIVATE6 = { "^::$", "^::1$", "^f[cd]", "^fe[89ab]", "^ff", "^2001:0*db8:" }

-- ipv6_public(addr) -> true for a well-formed IPv6 address that is public (an IPv4-mapped one
-- is judged as its IPv4 address).
local function ipv6_public(a, private4)
  a = a:lower()
  local v4 = a:match("^::ffff:(%d+%.%d+%.%d+%.%d+)$")
  if v4 then return not private4(v4) end
  if a:find("[^%x:]") or select(2, a:gsub("::", "")) > 1 or a:find(":::") then return false end
  local groups = 0
  for g in a:gmatch("[^:]+") do
    if #g > 4 then return false end
    groups = groups + 1
  end
  if groups > 8 or (groups < 8 and not a:find("::", 1, true)) then return false end
  for _, p in ipairs(PRIVATE6) do if a:match(p) then return false end end
  return true
end

local function private4(host)
  for _, p in ipairs(PRIVATE) do if host:match(p) then return true end end
  return false
end

-- public_https(url) -> true when url is https:// with a public-looking host (a name, an IPv4
-- or a bracketed IPv6 address) and, if it has one, a port 1..65535.
function _M.public_https(u)
  if type(u) ~= "string" or u:find("[%s%c]") then return false end
  local authority = u:match("^[hH][tT][tT][pP][sS]://([^/?#]+)")
  if not authority then return false end
  authority = authority:gsub("^.*@", "")
  local host, port = authority:match("^(%[[^%]]*%])(.*)$")
  if not host then host, port = authority:match("^([^:]*)(.*)$") end
  if port ~= "" and port ~= ":" then   -- "host:" is the default port (RFC 3986)
    local n = tonumber(port:match("^:(%d+)$"))
    if not n or n < 1 or n > 65535 then return false end
  end
  host = host:lower()
  if host:sub(1, 1) == "[" then return ipv6_public(host:sub(2, -2), private4) end
  if host == "" or not host:find("%.") then return false end
  if host == "localhost" or host:match("%.localhost$") or host:match("%.local$")
    or host:match("%.internal$") then return false end
  return not private4(host)
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
