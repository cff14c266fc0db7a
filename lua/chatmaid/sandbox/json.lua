-- SPDX-License-Identifier: MIT
-- JSON for the sandbox: key-ordered objects, real arrays and null, decoded by lua-cjson.
local cjson = require("cjson").new()

local _M = {}

local OBJ_MT = { __name = "sandbox.json.object" }
local ARR_MT = { __name = "sandbox.json.array" }

_M.null = cjson.null

-- obj(k1, v1, k2, v2, ...) -> object that encodes its keys in this order.
-- A nil value is left out; write json.null for an explicit null.
function _M.obj(...)
  local o = { keys = {}, vals = {} }
  local n = select("#", ...)
  for i = 1, n, 2 do
    local k, v = select(i, ...)
    if v ~= nil then
      o.keys[#o.keys + 1] = k
      o.vals[#o.vals + 1] = v
    end
  end
  return setmetatable(o, OBJ_MT)
end

-- Append a key to an ordered object (nil values are skipped).
function _M.set(o, k, v)
  if v ~= nil then
    o.keys[#o.keys + 1] = k
    o.vals[#o.vals + 1] = v
  end
  return o
end

-- arr(list) -> array that encodes as [...] even when empty.
function _M.arr(list)
  local a = { n = 0 }
  for i = 1, #(list or {}) do a[i] = list[i] end
  a.n = #(list or {})
  return setmetatable(a, ARR_MT)
end

local escapes = {
  ['"'] = '\\"', ["\\"] = "\\\\", ["\b"] = "\\b", ["\f"] = "\\f",
  ["\n"] = "\\n", ["\r"] = "\\r", ["\t"] = "\\t",
}

local function esc(c)
  return escapes[c] or string.format("\\u%04x", c:byte())
end

local function encode_string(s)
  return '"' .. s:gsub('[%c"\\]', esc) .. '"'
end

local encode

local function encode_number(v)
  if v ~= v or v == math.huge or v == -math.huge then return "null" end
  if v == math.floor(v) and v > -1e15 and v < 1e15 then
    return string.format("%d", v)
  end
  return string.format("%.14g", v)
end

local function sorted_keys(t)
  local keys = {}
  for k in pairs(t) do keys[#keys + 1] = tostring(k) end
  table.sort(keys)
  return keys
end

local function is_list(t)
  local n = 0
  for _ in pairs(t) do n = n + 1 end
  return n > 0 and n == #t
end

function encode(v, buf)
  local tv = type(v)
  if v == nil or v == cjson.null then
    buf[#buf + 1] = "null"
  elseif tv == "boolean" then
    buf[#buf + 1] = v and "true" or "false"
  elseif tv == "number" then
    buf[#buf + 1] = encode_number(v)
  elseif tv == "string" then
    buf[#buf + 1] = encode_string(v)
  elseif tv == "table" then
    local mt = getmetatable(v)
    if mt == OBJ_MT then
      buf[#buf + 1] = "{"
      for i, k in ipairs(v.keys) do
        if i > 1 then buf[#buf + 1] = "," end
        buf[#buf + 1] = encode_string(k)
        buf[#buf + 1] = ":"
        encode(v.vals[i], buf)
      end
      buf[#buf + 1] = "}"
    elseif mt == ARR_MT or is_list(v) then
      buf[#buf + 1] = "["
      for i = 1, (mt == ARR_MT and v.n or #v) do
        if i > 1 then buf[#buf + 1] = "," end
        encode(v[i], buf)
      end
      buf[#buf + 1] = "]"
    else
      -- plain table: object with sorted keys (deterministic output)
      buf[#buf + 1] = "{"
      for i, k in ipairs(sorted_keys(v)) do
        if i > 1 then buf[#buf + 1] = "," end
        buf[#buf + 1] = encode_string(k)
        buf[#buf + 1] = ":"
        encode(v[k], buf)
      end
      buf[#buf + 1] = "}"
    end
  else
    error("cannot encode a " .. tv .. " as JSON", 2)
  end
end

-- encode(value) -> JSON text. Plain tables are objects (sorted keys) unless they
-- are non-empty sequences; use obj()/arr() for ordered objects and empty arrays.
function _M.encode(v)
  local buf = {}
  encode(v, buf)
  return table.concat(buf)
end

-- decode(text) -> value | nil, err. JSON null decodes to json.null.
function _M.decode(s)
  local ok, v = pcall(cjson.decode, s)
  if not ok then return nil, tostring(v) end
  return v
end

return _M
