-- SPDX-License-Identifier: MIT
-- Small helpers for the sandbox: clocks, ISO 8601 times, UTF-8/UTF-16, URL decoding, ids.
local socket = require("socket")

local _M = {}

local floor = math.floor

-- now() -> seconds since the epoch with sub-millisecond precision.
function _M.now()
  return socket.gettime()
end

-- now_ms() -> integer milliseconds since the epoch.
function _M.now_ms()
  return floor(socket.gettime() * 1000)
end

-- iso(ms) -> "2026-02-06T14:18:33.120Z"
function _M.iso(ms)
  ms = floor(ms)
  local s = floor(ms / 1000)
  return os.date("!%Y-%m-%dT%H:%M:%S", s) .. string.format(".%03dZ", ms - s * 1000)
end

-- utf16_len(s) -> number of UTF-16 code units, or nil when s is not valid UTF-8.
-- JavaScript (and so class-validator's MaxLength) counts code units, not code points.
function _M.utf16_len(s)
  local n, i, len = 0, 1, #s
  while i <= len do
    local c = s:byte(i)
    local extra, min
    if c < 0x80 then extra, min = 0, 0
    elseif c >= 0xC2 and c <= 0xDF then extra, min = 1, 0x80
    elseif c >= 0xE0 and c <= 0xEF then extra, min = 2, 0x800
    elseif c >= 0xF0 and c <= 0xF4 then extra, min = 3, 0x10000
    else return nil end
    if i + extra > len then return nil end
    local cp = (extra == 0) and c or (c % (2 ^ (6 - extra)))
    for j = 1, extra do
      local cc = s:byte(i + j)
      if cc < 0x80 or cc > 0xBF then return nil end
      cp = cp * 64 + (cc - 0x80)
    end
    if cp < min or cp > 0x10FFFF or (cp >= 0xD800 and cp <= 0xDFFF) then return nil end
    n = n + ((cp >= 0x10000) and 2 or 1)
    i = i + extra + 1
  end
  return n
end

-- url_decode("%2B1555") -> "+1555" (with "+" as a space only when form is true).
function _M.url_decode(s, form)
  if form then s = s:gsub("%+", " ") end
  return (s:gsub("%%(%x%x)", function(h) return string.char(tonumber(h, 16)) end))
end

-- media_type("application/json; charset=utf-8") -> "application/json" (nil when absent).
function _M.media_type(ct)
  local t = type(ct) == "string" and ct:match("^%s*([^;%s]+)")
  return t and t:lower() or nil
end

-- bearer(authorization header) -> token | nil. The scheme is case-insensitive (RFC 9110
-- 11.1): "bearer", "BEARER" and "Bearer" all work, as they do on the service.
function _M.bearer(h)
  local scheme, token = (h or ""):match("^%s*(%S+) +(%S+)%s*$")
  if scheme and scheme:lower() == "bearer" then return token end
  return nil
end

-- parse_query("a=1&b=2") -> { a = "1", b = "2" } (last value wins).
function _M.parse_query(q)
  local t = {}
  if not q or q == "" then return t end
  for pair in q:gmatch("[^&]+") do
    local k, v = pair:match("^([^=]*)=?(.*)$")
    if k and k ~= "" then t[_M.url_decode(k, true)] = _M.url_decode(v, true) end
  end
  return t
end

local seeded = false

-- hex(n) -> n random lowercase hex digits (not cryptographic; ids only).
function _M.hex(n)
  if not seeded then
    local f = io.open("/dev/urandom", "rb")
    local seed = floor(socket.gettime() * 1000) % 2147483647
    if f then
      local b = f:read(4) or ""
      f:close()
      for i = 1, #b do seed = (seed * 256 + b:byte(i)) % 2147483647 end
    end
    math.randomseed(seed)
    seeded = true
  end
  local out = {}
  for i = 1, n do out[i] = string.format("%x", math.random(0, 15)) end
  return table.concat(out)
end

function _M.deepcopy(v)
  if type(v) ~= "table" then return v end
  local t = {}
  for k, x in pairs(v) do t[k] = _M.deepcopy(x) end
  return setmetatable(t, getmetatable(v))
end

-- merge(dst, src): copy src's keys over dst, recursing into plain tables.
function _M.merge(dst, src)
  for k, v in pairs(src or {}) do
    if type(v) == "table" and type(dst[k]) == "table" and #v == 0 and next(v) ~= nil then
      _M.merge(dst[k], v)
    else
      dst[k] = _M.deepcopy(v)
    end
  end
  return dst
end

-- pid() -> this process's id, from /proc/self/stat (the sandbox is exec'd, so it is ours).
function _M.pid()
  local f = io.open("/proc/self/stat", "r")
  if not f then return 0 end
  local line = f:read("*l") or ""
  f:close()
  return tonumber(line:match("^(%d+)")) or 0
end

-- ppid() -> parent process id (nil when /proc is unavailable).
function _M.ppid()
  local f = io.open("/proc/self/stat", "r")
  if not f then return nil end
  local line = f:read("*l") or ""
  f:close()
  return tonumber(line:match("%) %S+ (%d+)"))
end

-- state(pid) -> the state letter of process pid in /proc/<pid>/stat ("R", "S", "T":
-- stopped by a signal, "Z": exited, a zombie; "?" when the line cannot be read), or nil once
-- the process is gone.
function _M.state(pid)
  local f = io.open("/proc/" .. pid .. "/stat", "r")
  if not f then return nil end
  local s = f:read("*l") or ""
  f:close()
  return s:match("^%d+ %b() (%a)") or "?"
end

-- alive(pid) -> whether process pid exists and has not exited (a zombie has exited).
function _M.alive(pid)
  local s = _M.state(pid)
  return s ~= nil and s ~= "Z"
end

-- A sandbox config file: JSON (starts with "{") or a Lua chunk returning a table.
-- Returns the table, or nil and a message naming the file.
function _M.load_config(path)
  local f, err = io.open(path, "rb")
  if not f then return nil, "cannot read config: " .. err end
  local text = f:read("*a")
  f:close()
  if text:match("^%s*{") then
    local cfg, derr = require("chatmaid.sandbox.json").decode(text)
    if type(cfg) ~= "table" then return nil, path .. ": invalid JSON: " .. tostring(derr) end
    return cfg
  end
  local chunk, lerr = (loadstring or load)(text, "@" .. path)
  if not chunk then return nil, lerr end
  local ok, res = pcall(chunk)
  if not ok or type(res) ~= "table" then
    return nil, path .. " must return a table: " .. tostring(res)
  end
  return res
end

return _M
