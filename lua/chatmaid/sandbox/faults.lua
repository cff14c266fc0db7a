-- SPDX-License-Identifier: MIT
-- Fault injection: a queue of "make the next N responses on this path misbehave" rules, and
-- the code that misbehaves on the wire.
local json = require("chatmaid.sandbox.json")
local http = require("chatmaid.sandbox.http")
local R = require("chatmaid.sandbox.responses")
local scheduler = require("chatmaid.sandbox.scheduler")

local _M = {}
local mt = { __index = _M }

-- Whether the request is processed (side effects happen) before the fault, by default.
-- Faults that look like a server dying after its commit process first, so a retry with the
-- same idempotency key must find the original message.
_M.PROCESS = {
  reset_before = true, delay = true, reset_mid_body = true, short_body = true,
  never_answer = true, trickle = true, truncated_chunked = true,
  html_500 = false, json_502 = false, json_503 = false, rate_limit = false,
  invalid_json = false, empty_200 = false, success_false_200 = false, huge_body = false,
}

-- Faults answered with a complete, well-framed canned response.
_M.CANNED = {
  html_500 = true, json_502 = true, json_503 = true, rate_limit = true, invalid_json = true,
  empty_200 = true, success_false_200 = true,
}

function _M.new()
  return setmetatable({ list = {} }, mt)
end

-- add(spec) -> fault | nil, problem. spec: type, path ("*" or trailing "*" for a prefix),
-- method (optional), count (default 1), process, seconds, retry_after, size, chunked.
function _M:add(spec)
  if type(spec) ~= "table" then return nil, "fault spec must be an object" end
  if _M.PROCESS[spec.type] == nil then
    return nil, "unknown fault type: " .. tostring(spec.type)
  end
  if type(spec.path) ~= "string" or spec.path == "" then
    return nil, "fault path must be a non-empty string"
  end
  local f = {
    type = spec.type, path = spec.path,
    method = type(spec.method) == "string" and spec.method:upper() or nil,
    count = tonumber(spec.count) or 1,
    seconds = tonumber(spec.seconds) or 1,
    retry_after = tonumber(spec.retry_after) and math.floor(tonumber(spec.retry_after)),
    size = tonumber(spec.size) or 20 * 1024 * 1024,
    chunked = spec.chunked == true,
  }
  if spec.process == nil or spec.process == json.null then
    f.process = _M.PROCESS[f.type]
  else
    f.process = spec.process == true
  end
  self.list[#self.list + 1] = f
  return f
end

local function path_match(pat, path)
  if pat == "*" then return true end
  if pat:sub(-1) == "*" then return path:sub(1, #pat - 1) == pat:sub(1, -2) end
  return pat == path
end

-- take(method, path) -> the first matching fault (its count is used up), or nil.
function _M:take(method, path)
  for i, f in ipairs(self.list) do
    if path_match(f.path, path) and (not f.method or f.method == method) then
      f.count = f.count - 1
      if f.count <= 0 then table.remove(self.list, i) end
      return f
    end
  end
  return nil
end

function _M:clear() self.list = {} end

function _M:pending()
  local out = {}
  for i, f in ipairs(self.list) do
    out[i] = json.obj("type", f.type, "path", f.path, "method", f.method, "count", f.count,
      "process", f.process)
  end
  return json.arr(out)
end

local HTML_500 = "<html>\r\n<head><title>500 Internal Server Error</title></head>\r\n<body>\r\n"
  .. "<center><h1>500 Internal Server Error</h1></center>\r\n<hr><center>nginx</center>\r\n"
  .. "</body>\r\n</html>\r\n"

-- canned(f, path) -> the response a non-processing fault answers with (nil: wire-level).
function _M.canned(f, path)
  local t = f.type
  if t == "html_500" then
    return R.new(500, HTML_500, "text/html")
  elseif t == "json_502" then
    return R.error(502, "Bad Gateway", path)
  elseif t == "json_503" then
    if f.retry_after then
      local body = json.obj("success", false, "error", "Service Unavailable",
        "message", json.arr({ "Service Unavailable" }), "statusCode", 503,
        "retryAfter", f.retry_after, "path", path)
      local ra = string.format("%d", f.retry_after)
      return R.new(503, json.encode(body), nil, { { "Retry-After", ra } })
    end
    return R.error(503, "Service Unavailable", path)
  elseif t == "rate_limit" then
    return R.rate_limited(f.retry_after or 1)
  elseif t == "invalid_json" then
    return R.new(200, '{"success":tru')
  elseif t == "empty_200" then
    return R.new(200, "")
  elseif t == "success_false_200" then
    return R.new(200, '{"success":false,"error":"Something"}')
  end
  -- wire-level faults whose request is not processed still need some bytes to mangle
  return R.error(500, "The sandbox did not process this request (fault " .. t .. ")", path)
end

local function huge(conn, f, keep_alive)
  local size = math.max(f.size, 32)
  local prefix, suffix = '{"success":true,"data":{"padding":"', '"}}'
  local pad = size - #prefix - #suffix
  local piece = string.rep("x", 65536)
  local chunked = f.chunked
  local head = http.head(200, { { "Content-Type", "application/json; charset=utf-8" } },
    (not chunked) and size or nil, keep_alive,
    chunked and { { "Transfer-Encoding", "chunked" } } or nil)
  if not conn:send(head) then return false end
  local function out(s)
    if chunked then s = string.format("%x\r\n", #s) .. s .. "\r\n" end
    return conn:send(s)
  end
  if not out(prefix) then return false end
  while pad > 0 do
    local n = math.min(pad, #piece)
    if not out(n == #piece and piece or piece:sub(1, n)) then return false end
    pad = pad - n
  end
  if not out(suffix) then return false end
  if chunked and not conn:send("0\r\n\r\n") then return false end
  return keep_alive
end

-- write(conn, f, resp, keep_alive) -> keep_alive after the fault (false: conn is closed).
-- resp is the processed response (or the canned one when the fault does not process).
function _M.write(conn, f, resp, keep_alive)
  local t = f.type
  if t == "reset_before" then
    conn:close(true)
    return false
  elseif t == "never_answer" then
    conn:drain()
    conn:close()
    return false
  elseif t == "huge_body" then
    return huge(conn, f, keep_alive)
  elseif t == "delay" then
    scheduler.sleep(f.seconds)
    return conn:send(http.serialize(resp, keep_alive)) and keep_alive
  elseif t == "trickle" then
    local bytes = http.serialize(resp, keep_alive)
    for i = 1, #bytes do
      if not conn:send(bytes:sub(i, i)) then return false end
      if i < #bytes then scheduler.sleep(f.seconds) end
    end
    return keep_alive
  elseif t == "reset_mid_body" then
    local head = http.head(resp.status, resp.headers, #resp.body, false)
    conn:send(head .. resp.body:sub(1, math.floor(#resp.body / 2)))
    conn:close(true)
    return false
  elseif t == "short_body" then
    local head = http.head(resp.status, resp.headers, #resp.body + 100, false)
    conn:send(head .. resp.body)
    conn:close()
    return false
  elseif t == "truncated_chunked" then
    local head = http.head(resp.status, resp.headers, nil, false,
      { { "Transfer-Encoding", "chunked" } })
    local part = resp.body:sub(1, math.max(1, math.floor(#resp.body / 2)))
    conn:send(head .. string.format("%x\r\n", #part) .. part .. "\r\n")
    conn:close()
    return false
  end
  -- canned responses are ordinary, well-framed HTTP
  return conn:send(http.serialize(resp, keep_alive)) and keep_alive
end

return _M
