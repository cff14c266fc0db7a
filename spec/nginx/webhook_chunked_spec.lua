-- SPDX-License-Identifier: MIT
-- Issue 13 item 6: receive_webhook's max_body bounds the worker's Lua memory for chunked
-- bodies too (no Content-Length, client_max_body_size 0: nginx spools everything to a temp
-- file). The handler stops the GC around the call, so what the call allocated is exactly
-- what collectgarbage("count") grew by: reading a 48 MiB body into Lua would show 48 MiB.
local H = require "spec.nginx.harness"
local socket = require "socket"
local webhook = require "chatmaid.webhook"

local NAME = "chatmaid.resty.receive_webhook, chunked bodies #nginx"
if H.skip(NAME) then return end

local SECRET = "whsec_nginx_spec_0000000000000000"

local HANDLER = [[
  local resty = require "chatmaid.resty"
  collectgarbage("collect")
  collectgarbage("stop")
  local before = collectgarbage("count")
  local event, err = resty.receive_webhook{ secret = "${SECRET}", max_body = 256 * 1024,
                                            respond = false }
  local grew_kb = collectgarbage("count") - before
  collectgarbage("restart")
  ngx.status = event and 200 or err.status
  ngx.say(string.format("%s %s %d", event and "event" or err.kind,
                        event and event.event or tostring(err.reason), grew_kb))
]]

-- post_chunked(port, total, chunk, headers) -> status, body: a chunked POST of `total` bytes
local function post_chunked(port, total, headers)
  local c = assert(socket.connect("127.0.0.1", port))
  c:settimeout(60)
  local head = { "POST /webhook HTTP/1.1", "Host: 127.0.0.1", "Connection: close",
                 "Transfer-Encoding: chunked", "Content-Type: application/json" }
  for _, h in ipairs(headers or {}) do head[#head + 1] = h end
  assert(c:send(table.concat(head, "\r\n") .. "\r\n\r\n"))
  local piece = string.rep("x", 65536)
  local sent = 0
  while sent < total do
    local n = math.min(#piece, total - sent)
    local ok = c:send(string.format("%x\r\n", n) .. (n == #piece and piece or piece:sub(1, n))
                      .. "\r\n")
    if not ok then break end   -- the server may answer and close early: that is fine
    sent = sent + n
  end
  c:send("0\r\n\r\n")
  local status_line = assert(c:receive("*l"))
  local resp = c:receive("*a") or ""
  c:close()
  return tonumber(status_line:match("^HTTP/1%.%d (%d+)")), resp:match("\r\n\r\n(.*)$") or ""
end

describe(NAME, function()
  local srv = H.serve{
    http = "client_body_buffer_size 8k; client_max_body_size 0;",
    server = "location = /webhook { content_by_lua_block {" .. HANDLER .. "} }",
    vars = { SECRET = SECRET },
  }

  it("answers 413 to a 48 MiB chunked body without reading it into Lua", function()
    local status, body = post_chunked(srv.port, 48 * 1024 * 1024,
                                      { "X-Chatmaid-Signature: t=1,v1=00" })
    assert.equal(413, status, body)
    local kind, reason, kb = body:match("(%a+) (%S+) (%d+)")   -- the body may be chunked
    assert.equal("validation", kind)
    assert.equal("too_large", reason)
    assert.truthy(tonumber(kb) < 1024, "the call allocated " .. kb .. " KiB")
    -- the worker is fine and still serves
    assert.truthy(srv:error_log():find("alert", 1, true) == nil, srv:error_log())
  end)

  it("still accepts a signed chunked body under max_body (spooled to the file)", function()
    local payload = '{"event":"message.sent","timestamp":"2026-01-01T00:00:00Z","data":'
                    .. '{"messageId":"m_chunked","status":"sent","pad":"'
                    .. string.rep("p", 100 * 1024) .. '"}}'
    local c = assert(socket.connect("127.0.0.1", srv.port))
    c:settimeout(20)
    local head = { "POST /webhook HTTP/1.1", "Host: 127.0.0.1", "Connection: close",
                   "Transfer-Encoding: chunked", "Content-Type: application/json",
                   "X-Chatmaid-Signature: " .. webhook.sign(payload, SECRET) }
    local parts = {}
    for i = 1, #payload, 30000 do
      local s = payload:sub(i, i + 29999)
      parts[#parts + 1] = string.format("%x\r\n", #s) .. s .. "\r\n"
    end
    assert(c:send(table.concat(head, "\r\n") .. "\r\n\r\n" .. table.concat(parts)
                  .. "0\r\n\r\n"))
    local status_line = assert(c:receive("*l"))
    local resp = c:receive("*a") or ""
    c:close()
    assert.equal("HTTP/1.1 200 OK", status_line)
    assert.truthy(resp:find("event message.sent", 1, true), resp)
  end)
end)
