-- SPDX-License-Identifier: MIT
-- Helpers for the sandbox specs: raw sockets and keyed requests (never the SDK client).
local socket = require("socket")
local cjson = require("cjson")

local _M = {}

_M.KEY = "sk_test_sandbox_0000000000000001"
_M.LIVE = "sk_live_sandbox_0000000000000001"
_M.READONLY = "sk_test_sandbox_readonly_000001"
_M.NOSCOPES = "sk_test_sandbox_noscopes_00001"
_M.SECRET = "whsec_sandbox_0000000000000000"

-- call(sb, method, path, body, key) -> status, body, headers (Authorization: Bearer key)
function _M.call(sb, method, path, body, key)
  local h = {}
  if key ~= false then h.Authorization = "Bearer " .. (key or _M.KEY) end
  return sb:request(method, path, body, h)
end

function _M.connect(port, timeout)
  local s = assert(socket.connect("127.0.0.1", port))
  s:settimeout(timeout or 5)
  return s
end

-- build(method, path, headers, body) -> request bytes (Host and Content-Length added, and
-- X-Chatmaid-Sandbox: 1 for the control endpoints unless headers has it; false: omit it)
function _M.build(method, path, headers, body)
  local lines = { method .. " " .. path .. " HTTP/1.1" }
  if (headers or {}).Host == nil then lines[#lines + 1] = "Host: 127.0.0.1" end
  if path:sub(1, 11) == "/__sandbox/" and (headers or {})["X-Chatmaid-Sandbox"] == nil then
    lines[#lines + 1] = "X-Chatmaid-Sandbox: 1"
  end
  for k, v in pairs(headers or {}) do
    if v ~= false then lines[#lines + 1] = k .. ": " .. v end
  end
  if body then lines[#lines + 1] = "Content-Length: " .. #body end
  return table.concat(lines, "\r\n") .. "\r\n\r\n" .. (body or "")
end

-- read_response(sock) -> { status, headers, body } | nil, err, partial
-- Reads the head line by line, then exactly Content-Length bytes.
function _M.read_response(s)
  local line, err = s:receive("*l")
  if not line then return nil, err end
  local status = tonumber(line:match("^HTTP/1%.%d (%d+)"))
  local headers = {}
  while true do
    local h, herr = s:receive("*l")
    if not h then return nil, herr end
    if h == "" then break end
    local k, v = h:match("^([^:]+):%s*(.*)$")
    headers[k:lower()] = v
  end
  local body = ""
  local n = tonumber(headers["content-length"] or "")
  if n and n > 0 then
    local b, berr, partial = s:receive(n)
    if not b then return nil, berr, partial, status, headers end
    body = b
  end
  return { status = status, headers = headers, body = body }
end

-- exchange(port, bytes) -> response table from a fresh connection (closed afterwards)
function _M.exchange(port, bytes, timeout)
  local s = _M.connect(port, timeout)
  s:send(bytes)
  local r, err, partial, status, headers = _M.read_response(s)
  s:close()
  return r, err, partial, status, headers
end

-- read_all(sock) -> everything until the peer closes, and the closing error
function _M.read_all(s)
  local parts = {}
  while true do
    local data, err, partial = s:receive(8192)
    local chunk = data or partial
    if chunk and #chunk > 0 then parts[#parts + 1] = chunk end
    if not data then return table.concat(parts), err end
  end
end

function _M.decode(text) return cjson.decode(text) end

function _M.send_body(extra)
  local b = { fromPhoneId = "ph_primary", to = "+15557654321", content = "Hello" }
  for k, v in pairs(extra or {}) do b[k] = v end
  return b
end

-- wait_until(fn, timeout) -> true when fn() became truthy before the timeout
function _M.wait_until(fn, timeout)
  local deadline = socket.gettime() + (timeout or 5)
  while socket.gettime() < deadline do
    if fn() then return true end
    socket.sleep(0.02)
  end
  return fn() and true or false
end

return _M
