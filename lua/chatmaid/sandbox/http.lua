-- SPDX-License-Identifier: MIT
-- HTTP/1.1 framing for the sandbox: parse one request from a conn, serialize responses.
local R = require("chatmaid.sandbox.responses")
local util = require("chatmaid.sandbox.util")

local _M = {}

local MAX_LINE = 16384
local MAX_HEADERS = 100

local function continue(conn, headers)
  if (headers["expect"] or ""):lower() == "100-continue" then
    return conn:send("HTTP/1.1 100 Continue\r\n\r\n")
  end
  return true
end

-- A chunked request body (RFC 9112 7.1), as the service's Node server accepts it: chunk
-- extensions and trailers are read and ignored; the total is held to max_body.
local function read_chunked(conn, req, max_body)
  local path, headers = req.path, req.headers
  local last = headers["transfer-encoding"]:lower():match("([^,%s]+)%s*$")
  if last ~= "chunked" then
    req.keep_alive = false
    return nil, "bad", R.error(400, "Unsupported Transfer-Encoding", path)
  end
  -- with both, Transfer-Encoding wins and the connection is not reused (RFC 9112 6.3)
  if headers["content-length"] then req.keep_alive = false end
  if not continue(conn, headers) then return nil, "closed" end
  local parts, total = {}, 0
  while true do
    local line, err = conn:receive_line(MAX_LINE)
    if not line then
      if err == "too long" then return nil, "bad", R.error(400, "Invalid chunk", path) end
      return nil, "closed"
    end
    local hex = line:match("^(%x+)%s*;?") or line:match("^(%x+)$")
    if not hex then return nil, "bad", R.error(400, "Invalid chunk size", path) end
    local n = #hex <= 8 and tonumber(hex, 16) or math.huge
    if n == 0 then
      repeat   -- trailer fields, up to the empty line
        line = conn:receive_line(MAX_LINE)
        if not line then return nil, "closed" end
      until line == ""
      break
    end
    total = total + n
    if total > max_body then
      req.keep_alive = false
      return nil, "bad", R.error(413, "Request body is larger than " .. max_body .. " bytes",
        path)
    end
    local data = conn:receive_n(n)
    if not data then return nil, "closed" end
    parts[#parts + 1] = data
    local crlf = conn:receive_line(2)
    if crlf ~= "" then
      if crlf == nil then return nil, "closed" end
      return nil, "bad", R.error(400, "Invalid chunk", path)
    end
  end
  req.body = table.concat(parts)
  return req
end

-- read_request(conn, max_body) -> req
--   | nil, "closed"            peer went away (quietly, between requests)
--   | nil, "bad", response     answer with response, then close
function _M.read_request(conn, max_body)
  local line, err
  for _ = 1, 4 do -- tolerate stray CRLFs between pipelined requests
    line, err = conn:receive_line(MAX_LINE)
    if not line then
      if err == "too long" then return nil, "bad", R.error(414, "Request line too long", "/") end
      return nil, "closed"
    end
    if line ~= "" then break end
  end
  local method, target, version = line:match("^(%u+) (%S+) HTTP/(%d%.%d)$")
  if not method then
    return nil, "bad", R.error(400, "Malformed request line", "/")
  end
  local path, query = target:match("^([^?#]*)%??([^#]*)")
  if path == "" then path = "/" end
  if #path > 1 then path = path:gsub("/+$", "") end
  local headers, n = {}, 0
  while true do
    local h, herr = conn:receive_line(MAX_LINE)
    if not h then
      if herr == "too long" then
        return nil, "bad", R.error(431, "Header line too long", path)
      end
      return nil, "closed"
    end
    if h == "" then break end
    n = n + 1
    if n > MAX_HEADERS then return nil, "bad", R.error(431, "Too many headers", path) end
    local name, value = h:match("^([^:%s]+):%s*(.-)%s*$")
    if not name then return nil, "bad", R.error(400, "Malformed header line", path) end
    name = name:lower()
    if headers[name] and name ~= "content-length" then
      headers[name] = headers[name] .. ", " .. value
    else
      if headers[name] and headers[name] ~= value then
        return nil, "bad", R.error(400, "Conflicting Content-Length headers", path)
      end
      headers[name] = value
    end
  end
  local req = {
    method = method, target = target, path = path, raw_query = query,
    query = util.parse_query(query), headers = headers, version = version, body = "",
  }
  local conn_h = (headers["connection"] or ""):lower()
  req.keep_alive = (version == "1.1" and not conn_h:find("close"))
    or (version == "1.0" and conn_h:find("keep%-alive") ~= nil)
  if headers["transfer-encoding"] then
    return read_chunked(conn, req, max_body)
  end
  local cl = headers["content-length"]
  if cl then
    if not cl:match("^%d+$") then
      return nil, "bad", R.error(400, "Invalid Content-Length", path)
    end
    local len = tonumber(cl)
    if len > max_body then
      return nil, "bad", R.error(413, "Request body is larger than " .. max_body .. " bytes",
        path)
    end
    if not continue(conn, headers) then return nil, "closed" end
    if len > 0 then
      local body = conn:receive_n(len)
      if not body then return nil, "closed" end
      req.body = body
    end
  end
  return req
end

-- head(status, headers, length, keep_alive, extra) -> status line and headers.
-- length nil means no Content-Length header (extra carries framing such as chunked).
function _M.head(status, headers, length, keep_alive, extra)
  local out = { "HTTP/1.1 " .. status .. " " .. (R.REASONS[status] or "Unknown") }
  for _, kv in ipairs(headers or {}) do out[#out + 1] = kv[1] .. ": " .. kv[2] end
  for _, kv in ipairs(extra or {}) do out[#out + 1] = kv[1] .. ": " .. kv[2] end
  if length then out[#out + 1] = "Content-Length: " .. length end
  out[#out + 1] = "Date: " .. os.date("!%a, %d %b %Y %H:%M:%S GMT")
  out[#out + 1] = "Connection: " .. (keep_alive and "keep-alive" or "close")
  return table.concat(out, "\r\n") .. "\r\n\r\n"
end

-- serialize(resp, keep_alive, head_only) -> full response bytes. For a HEAD request
-- (head_only) the headers of the GET answer, Content-Length included, and no body.
function _M.serialize(resp, keep_alive, head_only)
  local h = _M.head(resp.status, resp.headers, #resp.body, keep_alive)
  if head_only then return h end
  return h .. resp.body
end

return _M
