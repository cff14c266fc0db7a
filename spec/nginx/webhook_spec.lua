-- SPDX-License-Identifier: MIT
-- chatmaid.resty.receive_webhook inside nginx: signed, unsigned, tampered, replayed,
-- oversized (buffered to a temp file), repeated-header and duplicate deliveries.
local H = require "spec.nginx.harness"
local webhook = require "chatmaid.webhook"

local NAME = "chatmaid.resty.receive_webhook #nginx"
if H.skip(NAME) then return end

local SECRET = "whsec_nginx_spec_0000000000000000"

-- The handler records what receive_webhook returned in the shared dict, after answering.
local HANDLER = [[
  local resty = require "chatmaid.resty"
  local event, err, dup = resty.receive_webhook{ secret = "${SECRET}",
    shared_dict = "chatmaid_webhooks", max_body = 512 * 1024 }
  local rec
  if event then
    rec = "event " .. event.event .. (ngx.req.get_body_file() and " file" or " memory")
  elseif err == "duplicate" then
    rec = "duplicate " .. dup.event
  else
    rec = "error " .. err.kind .. " " .. tostring(err.reason) .. " " .. err.status
  end
  ngx.shared.chatmaid_webhooks:rpush("log", rec)
  if ngx.req.get_headers()["x-slow"] then ngx.sleep(1) end
]]

local function payload(id, pad)
  return '{"event":"message.sent","timestamp":"2026-01-01T00:00:00Z","data":{"messageId":"'
         .. id .. '","status":"sent","pad":"' .. string.rep("x", pad or 0) .. '"}}'
end

describe(NAME, function()
  local srv = H.serve{
    http = "lua_shared_dict chatmaid_webhooks 1m; client_body_buffer_size 8k;"
           .. " client_max_body_size 2m;",
    server = "location = /webhook { content_by_lua_block {" .. HANDLER .. "} }\n"
      .. "location = /log { content_by_lua_block { local v = "
      .. 'ngx.shared.chatmaid_webhooks:lpop("log") ngx.print(v or "") } }',
    vars = { SECRET = SECRET },
  }


  local function post(body, headers)
    return H.raw(srv.port, "POST", "/webhook", headers, body)
  end

  local function signed(body, t)
    return { "Content-Type: application/json",
             "X-Chatmaid-Signature: " .. webhook.sign(body, SECRET, t) }
  end

  local function log_line()
    local _, body = H.raw(srv.port, "GET", "/log")
    return body
  end

  it("accepts a signed delivery, answers 200 and hands the event over", function()
    local body = payload("m_signed")
    local status, resp = post(body, signed(body))
    assert.equal(200, status)
    assert.matches('{"received":true}', resp, 1, true)
    assert.matches("event message.sent memory", log_line(), 1, true)
  end)

  it("rejects an unsigned delivery with 401", function()
    local status = post(payload("m_unsigned"), { "Content-Type: application/json" })
    assert.equal(401, status)
    assert.matches("error signature malformed_header 401", log_line(), 1, true)
  end)

  it("rejects a tampered body with 401", function()
    local body = payload("m_tampered")
    local status = post(body:gsub("sent", "read"), signed(body))
    assert.equal(401, status)
    assert.matches("error signature mismatch 401", log_line(), 1, true)
  end)

  it("rejects a replayed delivery (timestamp outside the tolerance) with 401", function()
    local body = payload("m_replayed")
    local status = post(body, signed(body, os.time() - 3600))
    assert.equal(401, status)
    assert.matches("error signature timestamp_out_of_tolerance 401", log_line(), 1, true)
  end)

  it("rejects a repeated X-Chatmaid-Signature header with 400", function()
    local body = payload("m_repeated")
    local h = signed(body)
    h[#h + 1] = h[2]
    local status = post(body, h)
    assert.equal(400, status)
    assert.matches("error validation repeated_header 400", log_line(), 1, true)
  end)

  it("reads a body nginx buffered to a temporary file (over client_body_buffer_size)", function()
    local body = payload("m_big", 100 * 1024)
    local status = post(body, signed(body))
    assert.equal(200, status)
    assert.matches("event message.sent file", log_line(), 1, true)
  end)

  it("refuses a body over max_body with 413", function()
    local body = payload("m_huge", 600 * 1024)
    local status = post(body, signed(body))
    assert.equal(413, status)
    assert.matches("error validation too_large 413", log_line(), 1, true)
  end)

  it("answers a duplicate delivery 200 and returns nil, \"duplicate\"", function()
    local body = payload("m_dup")
    assert.equal(200, (post(body, signed(body))))
    assert.matches("event message.sent", log_line(), 1, true)
    -- a retry re-signs the same payload with a later timestamp: same dedupe key
    local status, resp = post(body, signed(body, os.time() + 1))
    assert.equal(200, status)
    assert.matches('"duplicate":true', resp, 1, true)
    assert.matches("duplicate message.sent", log_line(), 1, true)
  end)

  it("answers before the handler's slow work is done", function()
    local body = payload("m_slow")
    local h = signed(body)
    h[#h + 1] = "X-Slow: 1"
    local status, _, elapsed = post(body, h)
    assert.equal(200, status)
    assert.is_true(elapsed < 0.5, "answered after " .. elapsed .. " s")
    assert.matches("event message.sent", log_line(), 1, true)
  end)

  it("refuses a GET with 405", function()
    assert.equal(405, (H.raw(srv.port, "GET", "/webhook")))
    assert.matches("error validation nil 405", log_line(), 1, true)
  end)
end)
