-- SPDX-License-Identifier: MIT
-- End to end: the sandbox signs and delivers webhooks to a receiver in this process, which
-- verifies them with chatmaid.webhook and drops the retried duplicate.
local socket = require "socket"
local webhook = require "chatmaid.webhook"

local KEY = "sk_test_sandbox_0000000000000001"
local SECRET = "whsec_e2e_" .. tostring(os.time())

local have_sandbox, sandbox = pcall(require, "chatmaid.sandbox")

-- Accept one delivery within `timeout` s; read the raw body by Content-Length; answer
-- `status`. -> { headers = {...}, body = "..." } | nil, err
local function receive_one(server, status, timeout)
  server:settimeout(timeout)
  local c, err = server:accept()
  if not c then return nil, err end
  c:settimeout(5)
  local line = c:receive("*l")
  local headers = {}
  while true do
    local h = c:receive("*l")
    if not h or h == "" then break end
    local k, v = h:match("^([^:]+):%s*(.-)%s*$")
    if k then headers[k:lower()] = v end
  end
  local len = tonumber(headers["content-length"] or "0")
  local body = len > 0 and c:receive(len) or ""
  c:send(("HTTP/1.1 %d X\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"):format(status))
  c:close()
  return { line = line, headers = headers, body = body }
end

describe("webhooks end to end with the sandbox #integration", function()
  if not have_sandbox then
    pending("chatmaid.sandbox is not loadable: " .. tostring(sandbox))
    return
  end

  local server, sb

  setup(function()
    server = assert(socket.bind("127.0.0.1", 0))
    local _, port = server:getsockname()
    sb = sandbox.start{
      webhook = { url = "http://127.0.0.1:" .. port .. "/hooks", secret = SECRET },
      time_factor = 0.001,    -- the 60 s first retry becomes 60 ms
    }
  end)

  teardown(function()
    if sb then sb:stop() end
    if server then server:close() end
  end)

  it("delivers a signed message.sent that verifies, and a retry that dedupes", function()
    local status, resp = sb:request("POST", "/v1/messages/send",
      { to = "+15557654321", content = "hello", fromPhoneId = "ph_primary" },
      { Authorization = "Bearer " .. KEY })
    assert.are.equal(201, status)
    local id = resp.data.id or resp.data.messageId

    -- First attempt: verify, then answer 500 so the sandbox retries.
    local first = assert(receive_one(server, 500, 10))
    assert.matches("^POST /hooks HTTP/1%.1$", first.line)
    assert.are.equal("message.sent", first.headers["x-chatmaid-event"])
    local event, err = webhook.construct_event(first.body,
                                               first.headers["x-chatmaid-signature"], SECRET)
    assert.is_nil(err)
    assert.are.equal("message.sent", event.event)
    assert.are.equal(id, event.data.messageId)
    assert.are.equal("sent", event.data.status)

    local seen = webhook.seen_set()
    assert.is_false(seen:seen(webhook.dedupe_key(event)))

    -- Retry: same payload (re-signed), same dedupe key.
    local second = assert(receive_one(server, 200, 10))
    assert.are.equal(first.body, second.body)
    local again = assert(webhook.construct_event(second.body,
                                                 second.headers["x-chatmaid-signature"],
                                                 { "whsec_rotated_out", SECRET }))
    assert.is_true(seen:seen(webhook.dedupe_key(again)))

    -- A wrong secret is a mismatch, and the sandbox logged both attempts.
    local _, bad = webhook.verify(second.body, second.headers["x-chatmaid-signature"],
                                  "whsec_wrong")
    assert.are.equal("mismatch", bad.reason)
    local log
    for _ = 1, 50 do
      log = assert(sb:webhooks())
      if #log >= 2 then break end
      socket.sleep(0.02)
    end
    assert.are.equal(500, log[1].status)
    assert.are.equal(200, log[2].status)
  end)

  it("delivers phone.disconnected with a dedupe key from the phone id", function()
    assert(sb:set_phone_state("ph_primary", "disconnected"))
    local got = assert(receive_one(server, 200, 10))
    local event = assert(webhook.construct_event(got.body,
                                                 got.headers["x-chatmaid-signature"], SECRET))
    assert.are.equal("phone.disconnected", event.event)
    assert.matches("^phone%.disconnected|ph_primary|disconnected|", webhook.dedupe_key(event))
  end)
end)
