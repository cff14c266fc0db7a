-- SPDX-License-Identifier: MIT
-- decode(status, body) -> what core.decode_envelope(status, body) returns, the same tables.
--
-- Why a Lua path at all: under LuaJIT (every nginx worker) the C core's walk over the
-- decoded answer (drop JSON nulls, mark arrays) goes through the Lua C API one field at a
-- time and costs about as much as cjson's decode itself, ~1 us per send, while the same
-- walk in Lua is compiled by the JIT and costs ~0.2 us (docs/bench.md, issue 24). So under
-- LuaJIT the common answer, a success envelope, is decoded here with the C core's cjson
-- instance; everything else (errors, bodies that are not JSON, an empty object anywhere,
-- which only the C core tells from an empty array) goes to the C core, whose answer is the
-- reference. Under PUC Lua the C core does it all.
local core = require "chatmaid.core"

local c_decode = core.decode_envelope
local _M = { decode = c_decode }

if not rawget(_G, "jit") then return _M end

-- the C core's own cjson instance and settings (csrc/envelope.c), and its array metatable
local json_decode, null, array_mt = core.json_decode, require("cjson").null, core.array_mt
local byte, find, type, next, pcall, setmetatable = string.byte, string.find, type, next,
  pcall, setmetatable

-- Drops nulls (object keys removed, array elements compacted) and marks arrays. cjson gives
-- objects string keys only, so a table with a [1] is an array; with no "{}" in the body, so
-- is an empty table.
local function clean(t)
  if t[1] ~= nil or next(t) == nil then
    local n, w = #t, 0
    for i = 1, n do
      local v = t[i]
      if v ~= null then
        if type(v) == "table" then clean(v) end
        w = w + 1
        t[w] = v
      end
    end
    for i = w + 1, n do t[i] = nil end
    return setmetatable(t, array_mt)
  end
  for k, v in next, t do
    if v == null then
      t[k] = nil                 -- clearing an existing field is allowed during next
    elseif type(v) == "table" then
      clean(v)
    end
  end
  return t
end

-- Whether the body may hold an empty object: a "{" followed by "}" or by whitespace,
-- anywhere, even inside a string (then the C core decides; a pretty-printed body goes there
-- too). Plain finds: a pattern scan of a whole body costs more than the walk saved.
local function maybe_empty_object(s)
  local i = find(s, "{", 1, true)
  while i do
    local c = byte(s, i + 1)
    if c == 125 or c == 32 or c == 10 or c == 13 or c == 9 then return true end
    i = find(s, "{", i + 1, true)
  end
  return false
end

function _M.decode(status, body)
  -- "{" first and no empty object: anything else is the C core's
  if type(body) == "string" and byte(body, 1) == 123 and not maybe_empty_object(body) then
    local ok, root = pcall(json_decode, body)
    if ok and root.success == true then
      local data = root.data
      if data == null then
        data = nil
      elseif type(data) == "table" then
        clean(data)
      end
      return true, data, true
    end
  end
  return c_decode(status, body)
end

return _M
