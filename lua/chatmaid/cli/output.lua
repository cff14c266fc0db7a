-- SPDX-License-Identifier: MIT
-- Output for the command line: JSON for machines (one document, or JSON lines for lists),
-- aligned text for people, and one-line errors on stderr.
local core = require "chatmaid.core"

local _M = {}

-- is_tty(fd) -> boolean. There is no isatty() in plain Lua and lua-posix is not a dependency,
-- so ask test(1) once at startup; os.execute returns true (5.2+) or 0 (5.1) on success.
function _M.is_tty(fd)
  local ok = os.execute("test -t " .. fd)
  return ok == true or ok == 0
end

local cjson = require("cjson").new()   -- private instance: never changes the user's cjson

-- json(v) -> compact JSON with object keys sorted (stable output). Tables carrying
-- core.array_mt are arrays even when empty, so [] does not turn into {}.
local function encode(v, out)
  if type(v) ~= "table" then
    out[#out + 1] = cjson.encode(v)
  elseif getmetatable(v) == core.array_mt or v[1] ~= nil then
    out[#out + 1] = "["
    for i = 1, #v do
      if i > 1 then out[#out + 1] = "," end
      encode(v[i], out)
    end
    out[#out + 1] = "]"
  else
    local keys = {}
    for k in pairs(v) do keys[#keys + 1] = tostring(k) end
    table.sort(keys)
    out[#out + 1] = "{"
    for i, k in ipairs(keys) do
      if i > 1 then out[#out + 1] = "," end
      out[#out + 1] = cjson.encode(k)
      out[#out + 1] = ":"
      local x = v[k]
      if x == nil then x = v[tonumber(k)] end
      encode(x, out)
    end
    out[#out + 1] = "}"
  end
  return out
end

-- cjson escapes the C0 controls; DEL and the C1 controls (U+0080..U+009F, such as U+009B,
-- an 8-bit CSI) it leaves raw. Escaped here too, so no JSON we print can drive a terminal.
local function json_safe(s)
  s = s:gsub("\127", "\\u007f")
  return (s:gsub("\194([\128-\159])", function(c)
    return string.format("\\u%04x", c:byte())
  end))
end

function _M.json(v)
  return json_safe(table.concat(encode(v, {})))
end

-- Text from the network never drives the terminal: every control character (C0 but tab,
-- DEL, and UTF-8 encoded C1 such as U+009B) is shown as an escape (\x1B, \u009B), so ESC
-- and OSC sequences in a server's message cannot retitle, clear or recolour the screen.
-- Lone bytes 0x80..0x9F that are not UTF-8 are left: a UTF-8 terminal shows them as U+FFFD.
local function escape_controls(s)
  s = s:gsub("[%z\1-\8\11-\31\127]", function(c)
    return string.format("\\x%02X", c:byte())
  end)
  return (s:gsub("\194([\128-\159])", function(c)
    return string.format("\\u%04X", c:byte())
  end))
end
_M.escape_controls = escape_controls

-- One line, whatever the message holds: errors and values stay greppable, and control
-- characters are escaped (escape_controls).
local function one_line(s)
  return escape_controls((tostring(s):gsub("[\r\n]+", " ")))
end
_M.one_line = one_line

local function is_array(t)
  return getmetatable(t) == core.array_mt or (next(t) ~= nil and t[1] ~= nil)
end

-- Fields shown first, in this order; the rest follow alphabetically.
local ORDER = {
  "id", "status", "from", "to", "content", "mediaUrls", "phoneNumber", "displayName",
  "connectionStatus", "environment", "name", "email", "subscriptionStatus", "period",
  "startDate", "endDate", "createdAt", "sentAt", "deliveredAt", "readAt", "failedAt",
  "errorCode", "errorMessage",
}
local RANK = {}
for i, k in ipairs(ORDER) do RANK[k] = i end

local function sorted_keys(t)
  local keys = {}
  for k in pairs(t) do keys[#keys + 1] = k end
  table.sort(keys, function(a, b)
    local ra, rb = RANK[a] or 1000, RANK[b] or 1000
    if ra ~= rb then return ra < rb end
    return tostring(a) < tostring(b)
  end)
  return keys
end

local function flatten(v, prefix, rows)
  if type(v) ~= "table" then
    rows[#rows + 1] = { prefix, tostring(v) }
  elseif is_array(v) or next(v) == nil then
    local scalars = true
    for _, x in ipairs(v) do if type(x) == "table" then scalars = false end end
    if scalars then
      local parts = {}
      for i, x in ipairs(v) do parts[i] = tostring(x) end
      rows[#rows + 1] = { prefix, table.concat(parts, ", ") }
    else
      for i, x in ipairs(v) do flatten(x, prefix .. "." .. i, rows) end
    end
  else
    for _, k in ipairs(sorted_keys(v)) do
      flatten(v[k], prefix == "" and tostring(k) or (prefix .. "." .. tostring(k)), rows)
    end
  end
  return rows
end

-- object(value) -> text: "key   value" lines, nested keys dotted (stats.messages).
function _M.object(v)
  local rows = flatten(v, "", {})
  for _, r in ipairs(rows) do r[1] = one_line(r[1]) end   -- keys come from the network too
  local w = 0
  for _, r in ipairs(rows) do if #r[1] > w then w = #r[1] end end
  local lines = {}
  for i, r in ipairs(rows) do
    lines[i] = r[1] .. string.rep(" ", w - #r[1] + 2) .. one_line(r[2])
  end
  return table.concat(lines, "\n") .. "\n"
end

-- table(columns, rows, tty) -> text. columns: { { "ID", fn(row) -> string }, ... }.
-- On a terminal: a header and aligned columns (last column not padded). Otherwise tab-
-- separated values without a header, for cut/awk.
function _M.table(columns, rows, tty)
  local cells = {}
  for i, row in ipairs(rows) do
    local c = {}
    for j, col in ipairs(columns) do
      local s = col[2](row)
      c[j] = one_line(s == nil and "" or s):gsub("\t", " ")
    end
    cells[i] = c
  end
  local lines = {}
  if not tty then
    for i, c in ipairs(cells) do lines[i] = table.concat(c, "\t") end
    return #lines > 0 and table.concat(lines, "\n") .. "\n" or ""
  end
  local header = {}
  for j, col in ipairs(columns) do header[j] = col[1] end
  table.insert(cells, 1, header)
  local widths = {}
  for _, c in ipairs(cells) do
    for j, s in ipairs(c) do
      if not widths[j] or #s > widths[j] then widths[j] = #s end
    end
  end
  for i, c in ipairs(cells) do
    local parts = {}
    for j, s in ipairs(c) do
      parts[j] = j < #c and (s .. string.rep(" ", widths[j] - #s)) or s
    end
    lines[i] = table.concat(parts, "  ")
  end
  return table.concat(lines, "\n") .. "\n"
end

-- Shortens s to n characters (bytes; never cuts inside a UTF-8 sequence).
function _M.truncate(s, n)
  if s == nil then return "" end
  s = one_line(s)
  if #s <= n then return s end
  local cut = n - 3
  while cut > 0 and s:byte(cut + 1) and s:byte(cut + 1) >= 0x80 and s:byte(cut + 1) < 0xC0 do
    cut = cut - 1
  end
  return s:sub(1, cut) .. "..."
end

return _M
