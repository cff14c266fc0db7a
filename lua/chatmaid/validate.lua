-- SPDX-License-Identifier: MIT
-- The documented request rules, checked before anything is sent. Each checker returns nil
-- when the value is fine, or a message that says what is wrong and how to fix it.
local core = require "chatmaid.core"

local _M = {}
local utf16_length, has_control, is_e164 = core.utf16_length, core.has_control, core.is_e164

local MAX_CONTENT = 4096          -- counted as the service counts: UTF-16 code units
local MAX_IDEMPOTENCY_KEY = 64

_M.statuses = { pending = true, sent = true, delivered = true, read = true, failed = true }
_M.periods = { day = true, week = true, month = true }
_M.environments = { test = true, live = true }

local function is_integer(v)
  return type(v) == "number" and v == math.floor(v) and v > -math.huge and v < math.huge
end

-- UTF-16 length of a UTF-8 string, or nil, reason when the bytes are not valid UTF-8
-- (overlong forms, surrogates, code points past U+10FFFF, bad or missing continuation bytes).
-- The byte scans here are the core's (csrc/text.c): a Lua pattern costs ~200 instructions a
-- byte, and these run for every message.
function _M.utf16_length(s)
  local n, bad = utf16_length(s)
  if not n then return nil, "invalid UTF-8 at byte " .. bad end
  return n
end

-- Any bearer token: present, a string, no whitespace or control characters. `where` says
-- how to supply one ("pass api_key to chatmaid.new or set CHATMAID_API_KEY").
function _M.token(key, where)
  if key == nil or key == "" then return "no API key: " .. where end
  if type(key) ~= "string" then return "api_key must be a string" end
  if key:find("[%s%c]") then
    return "api_key contains whitespace or control characters: check how it was copied"
  end
end

function _M.api_key(key)
  local problem = _M.token(key, "pass api_key to chatmaid.new or set CHATMAID_API_KEY")
  if problem then return problem end
  if not (key:find("^sk_test_.") or key:find("^sk_live_.")) then
    return "api_key must start with sk_test_ or sk_live_ (a Chatmaid API key from the dashboard)"
  end
end

local function loopback_host(host)
  host = host:lower()
  return host == "localhost" or host == "[::1]" or host:find("^127%.%d+%.%d+%.%d+$") ~= nil
end

-- Returns the normalised base URL (no trailing slash), or nil, message.
function _M.base_url(url)
  if type(url) ~= "string" or url == "" then return nil, "base_url must be a non-empty string" end
  if url:find("[%s%c]") then return nil, "base_url contains whitespace" end
  local scheme, rest = url:match("^(%a[%w+.-]*)://(.*)$")
  if not scheme then
    return nil, "base_url must be an absolute URL such as https://developers-api.chatmaid.net"
  end
  scheme = scheme:lower()
  local authority = rest:match("^([^/?#]*)")
  if authority == "" then return nil, "base_url has no host" end
  if authority:find("@", 1, true) then
    return nil, "base_url must not contain credentials: pass the key as api_key"
  end
  if rest:find("[?#]") then return nil, "base_url must not contain a query or fragment" end
  -- libcurl removes "." and ".." segments, and servers may decode "%2E" first: a base_url
  -- path with either would send requests somewhere other than the path reported.
  for seg in rest:sub(#authority + 1):gmatch("[^/]+") do
    local d = seg:gsub("%%2[Ee]", ".")
    if d == "." or d == ".." then
      return nil, "base_url must not contain \".\" or \"..\" path segments"
    end
  end
  local host = authority:match("^(%[[^%]]*%])") or authority:match("^([^:]*)")
  local port = authority:sub(#host + 1)
  if port ~= "" and not port:find("^:%d+$") then return nil, "base_url has an invalid port" end
  if scheme == "http" then
    if not loopback_host(host) then
      return nil, "base_url must use https (plain http is allowed only for 127.0.0.1, ::1 "
        .. "and localhost, such as the local sandbox)"
    end
  elseif scheme ~= "https" then
    return nil, "base_url must use https"
  end
  return scheme .. "://" .. rest:gsub("/+$", "")
end

function _M.e164(v, name)
  name = name or "to"
  if type(v) ~= "string" then
    return name .. " must be a string in E.164 format, like +15557654321"
  end
  if not is_e164(v) then   -- ^%+[1-9]%d*$, 3 to 16 bytes
    return name .. " must be in E.164 format: '+', a country code starting 1-9, at most 15 "
      .. "digits, no spaces or dashes (like +15557654321); got " .. string.format("%q", v)
  end
end

function _M.id(v, name)
  if type(v) ~= "string" or v == "" then return name .. " must be a non-empty string" end
  if has_control(v) then return name .. " must not contain control characters" end
  if #v > 512 then return name .. " is too long (more than 512 bytes)" end
  if v == "." or v == ".." then
    return name .. " must not be \".\" or \"..\" (a dot segment would change the URL path)"
  end
end

function _M.content(v)
  if type(v) ~= "string" then return "content must be a string" end
  local n, bad = _M.utf16_length(v)
  if not n then return "content is not valid UTF-8 (" .. bad .. ")" end
  if n > MAX_CONTENT then
    return "content is " .. n .. " characters long (UTF-16 code units); the limit is "
      .. MAX_CONTENT .. ": split it into several messages"
  end
end

-- An https URL whose host and port are well formed. Whether the host is public is the API's
-- call (its docs: "Public HTTPS URLs only"); a port outside 1..65535 or an unclosed IPv6
-- bracket makes no URL at all, so nothing is sent.
function _M.https_url(v, name)
  if type(v) ~= "string" then return name .. " must be a string" end
  if v:find("[%s%c]") or not v:find("^[Hh][Tt][Tt][Pp][Ss]://[^/?#@]+") then
    return name .. " must be a public https:// URL; got " .. string.format("%q", v)
  end
  local authority = v:match("^%a+://([^/?#]*)")
  local host, port = authority:match("^(%[[%x:.]*%])(.*)$")
  if not host then
    if authority:find("[%[%]]") then
      return name .. " has a malformed IPv6 host (write it as [2606:4700::1111]); got "
             .. string.format("%q", v)
    end
    port = authority:match("(:[^:]*)$") or ""
  end
  if port ~= "" and port ~= ":" then   -- "host:" is the default port (RFC 3986)
    local n = tonumber(port:match("^:(%d+)$"))
    if not n or n < 1 or n > 65535 then
      return name .. " has an invalid port (" .. port:sub(2) .. "): a port is 1 to 65535; got "
             .. string.format("%q", v)
    end
  end
end

function _M.idempotency_key(v)
  if type(v) ~= "string" or v == "" then return "idempotency_key must be a non-empty string" end
  if #v > MAX_IDEMPOTENCY_KEY then
    return "idempotency_key is " .. #v .. " characters; the limit is " .. MAX_IDEMPOTENCY_KEY
  end
  if v:find("[^\32-\126]") then
    return "idempotency_key must contain only printable ASCII characters"
  end
end

function _M.integer_range(v, name, min, max)
  if not is_integer(v) or v < min or (max and v > max) then
    return name .. " must be an integer " .. (max and (min .. ".." .. max) or (">= " .. min))
      .. "; got " .. tostring(v)
  end
end

function _M.one_of(v, set, name)
  if type(v) ~= "string" or not set[v] then
    local names = {}
    for k in pairs(set) do names[#names + 1] = k end
    table.sort(names)
    return name .. " must be one of " .. table.concat(names, ", ") .. "; got " .. tostring(v)
  end
end

local function describe_key(k)
  if type(k) == "string" then
    return string.format("%q", #k > 40 and (k:sub(1, 40) .. "...") or k)
  end
  return type(k) .. " " .. tostring(k)
end

-- A proper sequence, read raw as cjson encodes it: keys exactly 1..n and nothing else (no
-- holes, no string keys, no fractional keys). Returns n, or nil and a problem naming `name`.
-- ipairs and # would both stop at a hole (or report either border) while cjson encodes
-- everything, so a list is checked here before its items are.
function _M.sequence(t, name)
  if type(t) ~= "table" then return nil, name .. " must be an array" end
  local n, max = 0, 0
  for k in next, t do
    if type(k) ~= "number" or k < 1 or k ~= math.floor(k) or k == math.huge then
      return nil, name .. " must be an array (keys 1..n only); it has the key " .. describe_key(k)
    end
    n = n + 1
    if k > max then max = k end
  end
  if max ~= n then
    for i = 1, n + 1 do   -- n keys in 1..max > n: a hole at or before n + 1
      if rawget(t, i) == nil then
        return nil, name .. " must be an array without holes: " .. name .. "[" .. i .. "] is nil"
          .. " but " .. name .. "[" .. max .. "] is set"
      end
    end
  end
  return n
end

-- A fresh copy of a proper sequence (what was checked is what is sent, whatever metatable
-- the caller's table has).
function _M.array_copy(t)
  local n = assert(_M.sequence(t, "array"))
  local out = {}
  for i = 1, n do out[i] = rawget(t, i) end
  return out
end

-- A value that JSON encodes as the caller means it: strings, booleans, finite numbers,
-- proper arrays and objects with string keys only (no holes, no mixed tables, no functions
-- or userdata, no NaN or infinity), at most 8 levels deep. Returns nil or a problem.
function _M.plain(v, name, depth)
  depth = depth or 0
  local t = type(v)
  if t == "string" or t == "boolean" then return nil end
  if t == "number" then
    if v ~= v or v == math.huge or v == -math.huge then
      return name .. " must be a finite number"
    end
    return nil
  end
  if t ~= "table" then return name .. " must not be a " .. t end
  if depth >= 8 then return name .. " is nested too deeply (more than 8 levels)" end
  local strings, others = 0, 0
  for k in next, v do
    if type(k) == "string" then strings = strings + 1 else others = others + 1 end
  end
  if others > 0 then
    local n, why = _M.sequence(v, name)
    if not n then return why end
    for i = 1, n do
      local p = _M.plain(rawget(v, i), name .. "[" .. i .. "]", depth + 1)
      if p then return p end
    end
    return nil
  end
  for k, x in next, v do
    local p = _M.plain(x, name .. "." .. k, depth + 1)
    if p then return p end
  end
end

local function add(problems, msg)
  if msg then problems[#problems + 1] = msg end
end

-- Send parameters (already known to be a table). Returns a list of problems (maybe empty).
function _M.send(p)
  local problems = {}
  add(problems, _M.e164(p.to, "to"))
  local has_media = false
  if p.media_urls ~= nil then
    local n, why = _M.sequence(p.media_urls, "media_urls")
    if not n then
      add(problems, type(p.media_urls) ~= "table"
                    and "media_urls must be an array of https:// URLs" or why)
    else
      for i = 1, n do
        add(problems, _M.https_url(rawget(p.media_urls, i), "media_urls[" .. i .. "]"))
      end
      has_media = n > 0
    end
  end
  if p.content ~= nil then add(problems, _M.content(p.content)) end
  if (p.content == nil or p.content == "") and not has_media then
    add(problems, "content or media_urls is required: a message needs text or at least one "
                  .. "media URL")
  end
  if p.idempotency_key ~= nil then add(problems, _M.idempotency_key(p.idempotency_key)) end
  return problems
end

return _M
