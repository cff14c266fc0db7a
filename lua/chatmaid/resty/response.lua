-- SPDX-License-Identifier: MIT

--- The HTTP/1.1 response reader of the cosocket transport.
-- The HTTP/1.1 response reader of the cosocket transport (chatmaid.resty.transport):
-- status line and headers, then a body framed by Content-Length, chunks or the connection's
-- end, with the libcurl core's caps enforced while the bytes arrive and every read bounded
-- by one deadline. read(sock, method, max_body, deadline)
--   -> status, body, header block (status line first), reusable | nil, kind, message
-- @module chatmaid.resty.response
local ngx = ngx   -- luacheck: ignore (nginx global; only used inside nginx)
local concat, tonumber, find, sub = table.concat, tonumber, string.find, string.sub
local ceil = math.ceil

local _M = {}

-- The libcurl core's caps (csrc/session.c): the whole header block; chunk lines.
local MAX_HEADER_BYTES = 256 * 1024
local MAX_CHUNK_LINE = 1024     -- a chunk-size line with extensions, or one trailer line
_M.MAX_HEADER_BYTES = MAX_HEADER_BYTES

-- Every read bounded by the deadline and the caps.
-- nginx restarts a socket's read timeout whenever bytes arrive, so one long receive would
-- let a server trickling a byte at a time run past the deadline. Every read here is a
-- receiveany (it returns as soon as bytes arrive) armed with the time left, into a buffer
-- of our own: r = { sock, deadline, buf, pos }.

-- ngx.now() is the event loop's clock, updated after every wait: every read below waits,
-- so it is current where it matters (ngx.update_time costs a clock read and formatting).
local function remaining(deadline)
  return ceil((deadline - ngx.now()) * 1000)
end
_M.remaining = remaining

local function too_large_message(what, cap)
  if what == "response headers" then
    return "the response headers are larger than the " .. cap .. " byte limit"
  end
  return "response body is larger than the " .. cap .. " byte limit (max_body)"
end

-- One receiveany of at most `max` bytes within the time left -> data | nil, kind, message
local function recv(r, max, what)
  local ms = remaining(r.deadline)
  if ms <= 0 then return nil, "timeout", "deadline reached while reading the " .. what end
  local sock = r.sock
  sock:settimeout(ms)
  local data, err = sock:receiveany(max)
  if data then return data end
  if err == "timeout" then return nil, "timeout", "timed out while reading the " .. what end
  if err == "closed" then
    return nil, "transport", "the server closed the connection before the " .. what
                             .. " ended"
  end
  return nil, "transport", "reading the " .. what .. " failed: " .. tostring(err)
end

-- The text up to `sep` (consumed), refusing more than `cap` bytes before it.
-- -> text | nil, kind, message ("too_large": message is nil)
local function read_until(r, sep, cap, what)
  local from = r.pos
  while true do
    local buf = r.buf
    local i = find(buf, sep, from, true)
    if i then
      if i - r.pos > cap then return nil, "too_large" end
      local line = sub(buf, r.pos, i - 1)
      r.pos = i + #sep
      return line
    end
    if #buf - r.pos + 1 > cap then return nil, "too_large" end
    from = #buf - #sep + 2          -- a separator may straddle the next read
    if from < r.pos then from = r.pos end
    local data, kind, msg = recv(r, 65536, what)
    if not data then return nil, kind, msg end
    -- drop what was consumed, so the buffer never holds more than one unread part
    from = from - r.pos + 1
    r.buf, r.pos = sub(buf, r.pos) .. data, 1
  end
end

-- Exactly n bytes (the buffer first, then reads of at most what is still missing, so
-- nothing past them is read).
local function read_n(r, n, what)
  local buf, pos = r.buf, r.pos
  local avail = #buf - pos + 1
  if avail >= n then
    r.pos = pos + n
    return sub(buf, pos, pos + n - 1)
  end
  local parts, got = { sub(buf, pos) }, avail
  r.buf, r.pos = "", 1
  while got < n do
    local want = n - got
    local data, kind, msg = recv(r, want < 65536 and want or 65536, what)
    if not data then return nil, kind, msg end
    parts[#parts + 1] = data
    got = got + #data
  end
  return concat(parts)
end

-- Chunked body (RFC 9112 7.1): sizes checked against max_body before each chunk is read.
local function read_chunked(r, max)
  local parts, total = {}, 0
  while true do
    local line, kind, msg = read_until(r, "\r\n", MAX_CHUNK_LINE, "response body")
    if not line then
      if kind == "too_large" then return nil, "transport", "a chunk-size line is too long" end
      return nil, kind, msg
    end
    local hex = line:match("^(%x+)[ \t]*;") or line:match("^(%x+)[ \t]*$")
    if not hex or #hex > 8 then
      return nil, "transport", "invalid chunk size in the response (\""
                               .. line:sub(1, 16):gsub("%c", "?") .. "\")"
    end
    local size = tonumber(hex, 16)
    if size == 0 then break end
    total = total + size
    if total > max then return nil, "too_large", too_large_message("body", max) end
    local data
    data, kind, msg = read_n(r, size + 2, "response body")
    if not data then return nil, kind, msg end
    if sub(data, -2) ~= "\r\n" then
      return nil, "transport", "a chunk of the response is longer than its chunk size"
    end
    parts[#parts + 1] = sub(data, 1, -3)
  end
  while true do   -- trailers, up to the empty line
    local line, kind, msg = read_until(r, "\r\n", MAX_CHUNK_LINE, "response trailers")
    if not line then
      if kind == "too_large" then return nil, "transport", "a response trailer is too long" end
      return nil, kind, msg
    end
    if line == "" then break end
  end
  return concat(parts)
end

-- A body delimited by the connection's end (no length, not chunked), capped.
local function read_to_close(r, max)
  local parts = { sub(r.buf, r.pos) }
  local n = #parts[1]
  r.buf, r.pos = "", 1
  while n <= max do
    local data, kind, msg = recv(r, 65536, "response body")
    if not data then
      if kind == "transport" and find(msg, "closed the connection", 1, true) then
        return concat(parts)
      end
      return nil, kind, msg
    end
    n = n + #data
    parts[#parts + 1] = data
  end
  return nil, "too_large", too_large_message("body", max)
end

-- The value of the header line starting with `prefix` (lowercase, "\r\nname:") in the
-- lowercased block h, and where it starts. Plain finds: much cheaper than a pattern that
-- is tried at every position.
local function field(h, prefix)
  local at = find(h, prefix, 1, true)
  if not at then return nil end
  return h:match("^[ \t]*([^\r\n]*)", at + #prefix), at
end

--- Read one response, with the caps enforced while the bytes arrive.
-- -> status, body, raw header block, reusable | nil, kind, message
-- @param sock the ngx.socket.tcp connection
-- @tparam string method the request's method (HEAD has no body)
-- @tparam number max the body limit in bytes
-- @tparam number deadline ngx.now() time when reading ends
-- @treturn[1] number status
-- @treturn[1] string body
-- @treturn[1] string the raw header block, status line first
-- @treturn[1] boolean whether the connection may go back to the pool
-- @return[2] nil
-- @treturn[2] string kind
-- @treturn[2] string message
function _M.read(sock, method, max, deadline)
  local r = { sock = sock, deadline = deadline, buf = "", pos = 1 }
  local head, kind, msg, status, minor
  repeat   -- 1xx answers (100 Continue) come before the real one
    head, kind, msg = read_until(r, "\r\n\r\n", MAX_HEADER_BYTES, "response headers")
    if not head then
      if kind == "too_large" then
        msg = too_large_message("response headers", MAX_HEADER_BYTES)
      end
      return nil, kind, msg
    end
    local code
    minor, code = head:match("^HTTP/1%.([01]) (%d%d%d)")
    status = tonumber(code)
    if not status then
      return nil, "transport", "the server did not answer with an HTTP/1.x status line"
    end
  until status >= 200
  local h = head:lower()
  local te = field(h, "\r\ntransfer-encoding:")
  local cl, cl_at = field(h, "\r\ncontent-length:")
  local conn = field(h, "\r\nconnection:")
  local reusable = minor == "1" and not (conn and find(conn, "close", 1, true))
  local body
  if method == "HEAD" or status == 204 or status == 304 then
    body = ""
  elseif te and te:match("chunked[ \t]*$") then
    if cl then reusable = false end   -- both framings: chunked wins, connection not trusted
    body, kind, msg = read_chunked(r, max)
  elseif te and not te:match("^[ \t]*identity[ \t]*$") then
    return nil, "transport", "the response has a transfer coding other than chunked ("
                             .. te:sub(1, 40):gsub("%c", "?") .. ")"
  elseif cl then
    local len = cl:match("^(%d+)[ \t]*$")
    if not len or #len > 15 or find(h, "\r\ncontent-length:", cl_at + 1, true) then
      return nil, "transport", "invalid or repeated Content-Length in the response"
    end
    len = tonumber(len)
    if len > max then return nil, "too_large", too_large_message("body", max) end
    body, kind, msg = read_n(r, len, "response body")
  else
    reusable = false
    body, kind, msg = read_to_close(r, max)
  end
  if not body then return nil, kind, msg end
  -- bytes past the response (a Content-Length shorter than the body): never reused
  if r.pos <= #r.buf then reusable = false end
  -- the raw block, status line first, as the core gives it (parsed only when read)
  return status, body, head, reusable
end

return _M
