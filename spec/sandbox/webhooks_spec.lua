-- SPDX-License-Identifier: MIT
local sandbox = require("chatmaid.sandbox")
local H = require("spec.support.sandbox_helper")
local cjson = require("cjson")

-- A webhook receiver in its own process (this Lua state is not concurrent): it answers with
-- the given statuses in turn (the last one repeats), appends one JSON line per request to
-- OUT, and exits after MAX requests or 20 seconds.
local RECEIVER = [=[
local socket = require("socket")
local cjson = require("cjson")
local out, statuses, max = arg[1], {}, tonumber(arg[3])
for s in arg[2]:gmatch("%d+") do statuses[#statuses + 1] = tonumber(s) end
local srv = assert(socket.bind("127.0.0.1", 0))
local _, port = srv:getsockname()
io.stdout:write(port, "\n"); io.stdout:flush()
srv:settimeout(0.2)
local deadline, n = socket.gettime() + 20, 0
while n < max and socket.gettime() < deadline do
  local c = srv:accept()
  if c then
    c:settimeout(5)
    local headers = {}
    local line = c:receive("*l")
    while true do
      local h = c:receive("*l")
      if not h or h == "" then break end
      local k, v = h:match("^([^:]+):%s*(.*)$")
      headers[k:lower()] = v
    end
    local body = c:receive(tonumber(headers["content-length"] or 0)) or ""
    n = n + 1
    local status = statuses[math.min(n, #statuses)]
    c:send("HTTP/1.1 " .. status .. " X\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
    c:close()
    local f = io.open(out, "a")
    f:write(cjson.encode({ line = line, headers = headers, body = body, status = status,
      at = socket.gettime() }), "\n")
    f:close()
  end
end
]=]

local function lua_bin()
  local i = 0
  while arg[i - 1] ~= nil do i = i - 1 end
  return os.getenv("CHATMAID_LUA") or (i < 0 and arg[i]) or "lua5.4"
end

local function receiver(statuses, max)
  local script, out = os.tmpname(), os.tmpname()
  local f = assert(io.open(script, "w")); f:write(RECEIVER); f:close()
  local h = io.popen(string.format("exec %s %s %s %s %d", lua_bin(), script, out, statuses,
    max))
  local port = tonumber(h:read("*l"))
  local r = { port = port, url = "http://127.0.0.1:" .. port .. "/hooks" }
  function r.requests()
    local list = {}
    local fh = io.open(out, "r")
    if not fh then return list end
    for line in fh:lines() do list[#list + 1] = cjson.decode(line) end
    fh:close()
    return list
  end
  function r.close()
    h:close() -- waits for the receiver to exit (after max requests or 20 s)
    os.remove(script); os.remove(out)
  end
  return r
end

-- HMAC-SHA256 computed by openssl, independently of the SDK's C code.
local function openssl_hmac(key, data)
  local path = os.tmpname()
  local f = assert(io.open(path, "wb")); f:write(data); f:close()
  local p = io.popen("openssl dgst -sha256 -hmac '" .. key .. "' " .. path)
  local out = p:read("*a")
  p:close()
  os.remove(path)
  return out:match("(%x+)%s*$")
end

local has_signer = require("chatmaid.sandbox.webhooks").sign_header("x", "k", 1) ~= nil

describe("chatmaid.sandbox webhooks", function()
  local sb

  setup(function() sb = sandbox.start{ port = 0, time_factor = 0.001, live_delay = 50 } end)
  teardown(function() if sb then sb:stop() end end)
  before_each(function() assert(sb:reset()) end)

  local function wait_log(n)
    local log
    H.wait_until(function()
      log = sb:webhooks()
      return #log >= n
    end, 5)
    return log
  end

  if not has_signer then
    pending("chatmaid.webhook (with build/chatmaid/core.so) is needed to sign deliveries")
    return
  end

  it("delivers message.sent for a test send, signed as documented", function()
    local rcv = receiver("200", 1)
    finally(rcv.close)
    assert(sb:config{ webhook = { url = rcv.url, secret = H.SECRET } })
    local _, sent = H.call(sb, "POST", "/v1/messages/send", H.send_body())
    local log = wait_log(1)
    assert.equal(1, #log)
    assert.equal("message.sent", log[1].event)
    assert.equal(1, log[1].attempt)
    assert.equal(200, log[1].status)
    assert.is_true(log[1].ok)
    local reqs
    assert.is_true(H.wait_until(function() reqs = rcv.requests(); return #reqs == 1 end, 3))
    local req = reqs[1]
    assert.equal("POST /hooks HTTP/1.1", req.line)
    assert.equal("application/json", req.headers["content-type"])
    assert.equal("message.sent", req.headers["x-chatmaid-event"])
    -- the documented headers only: no X-Chatmaid-Delivery or other X-Chatmaid-* extra
    local ours = {}
    for k in pairs(req.headers) do if k:find("^x%-chatmaid%-") then ours[#ours + 1] = k end end
    table.sort(ours)
    assert.same({ "x-chatmaid-event", "x-chatmaid-signature" }, ours)
    local t, v1 = req.headers["x-chatmaid-signature"]:match("^t=(%d+),v1=(%x+)$")
    assert.truthy(t)
    assert.is_true(math.abs(tonumber(t) - os.time()) <= 5)
    assert.equal(openssl_hmac(H.SECRET, t .. "." .. req.body), v1)
    local p = cjson.decode(req.body)
    assert.equal("message.sent", p.event)
    assert.truthy(p.timestamp:match("^%d+%-%d+%-%d+T%d+:%d+:%d+%.%d%d%dZ$"))
    assert.same({ messageId = sent.data.id, from = "+15551230001", to = "+15557654321",
      status = "sent", environment = "test", sentAt = sent.data.sentAt }, p.data)
    assert.truthy(req.body:match('^{"event":"message.sent","timestamp":"[^"]+","data":{'
      .. '"messageId":'))
  end)

  it("retries after non-2xx 1 and 5 minutes after the initial attempt (scaled)", function()
    local rcv = receiver("500,500,200", 3)
    finally(rcv.close)
    assert(sb:config{ webhook = { url = rcv.url, secret = H.SECRET } })
    H.call(sb, "POST", "/v1/messages/send", H.send_body())
    local log = wait_log(3)
    assert.equal(3, #log)
    for i, e in ipairs(log) do
      assert.equal(i, e.attempt)
      assert.equal("message.sent", e.event)
      assert.equal(log[1].id, e.id)
    end
    assert.same({ 500, 500, 200 }, { log[1].status, log[2].status, log[3].status })
    -- docs: "1 minute, 5 minutes, then 15 minutes after the initial attempt" (atMs is logged
    -- when an attempt ends, the schedule counts from when the first one started)
    local d2, d3 = log[2].atMs - log[1].atMs, log[3].atMs - log[1].atMs
    assert.is_true(d2 >= 50 and d2 < 200, "2nd attempt at +" .. d2)
    assert.is_true(d3 >= 280 and d3 < 440, "3rd attempt at +" .. d3)
    -- nothing more after the success
    require("socket").sleep(0.2)
    assert.equal(3, #sb:webhooks())
    assert.equal(3, sb:stats().webhookDeliveries)
  end)

  it("gives up after 4 attempts", function()
    local rcv = receiver("503", 4)
    finally(rcv.close)
    assert(sb:config{ webhook = { url = rcv.url, secret = H.SECRET } })
    H.call(sb, "POST", "/v1/messages/send", H.send_body())
    wait_log(4)
    require("socket").sleep(1.2) -- a fifth attempt would come 0.9 s after the fourth
    local log = sb:webhooks()
    assert.equal(4, #log)
    assert.same({ 1, 2, 3, 4 }, { log[1].attempt, log[2].attempt, log[3].attempt,
      log[4].attempt })
    local d4 = log[4].atMs - log[1].atMs
    assert.is_true(d4 >= 870 and d4 < 1140, "4th attempt at +" .. d4)   -- not +1260
  end)

  it("records connection failures and retries them", function()
    local s = require("socket").bind("127.0.0.1", 0)
    local _, port = s:getsockname()
    s:close() -- nothing listens there now
    assert(sb:config{ webhook = { url = "http://127.0.0.1:" .. port .. "/x",
      secret = H.SECRET } })
    H.call(sb, "POST", "/v1/messages/send", H.send_body())
    local log = wait_log(2)
    assert.equal(cjson.null, log[1].status)
    assert.truthy(log[1].error:find("refused", 1, true))
    assert.equal(2, log[2].attempt)
  end)

  it("delivers message.failed when a live message fails", function()
    local rcv = receiver("200", 1)
    finally(rcv.close)
    assert(sb:config{ webhook = { url = rcv.url, secret = H.SECRET } })
    local _, b = H.call(sb, "POST", "/v1/messages/send", H.send_body{ to = "+15550000666" },
      H.LIVE)
    assert.equal("pending", b.data.status)
    wait_log(1)
    local reqs
    assert.is_true(H.wait_until(function() reqs = rcv.requests(); return #reqs == 1 end, 3))
    assert.equal("message.failed", reqs[1].headers["x-chatmaid-event"])
    local p = cjson.decode(reqs[1].body)
    assert.equal("message.failed", p.event)
    assert.equal(b.data.id, p.data.messageId)
    assert.equal("failed", p.data.status)
    assert.equal("live", p.data.environment)
    assert.equal("RECIPIENT_UNREACHABLE", p.data.errorCode)
    assert.equal("The recipient is not reachable on WhatsApp", p.data.errorMessage)
    assert.truthy(p.data.failedAt)
  end)

  it("delivers phone.disconnected and phone.connected on state changes", function()
    local rcv = receiver("200", 2)
    finally(rcv.close)
    assert(sb:config{ webhook = { url = rcv.url, secret = H.SECRET } })
    local p = assert(sb:set_phone_state("ph_primary", "disconnected"))
    assert.equal("disconnected", p.connectionStatus)
    assert(sb:set_phone_state("ph_primary", "connecting")) -- no event for connecting
    assert(sb:set_phone_state("+15551230001", "connected"))
    local reqs
    assert.is_true(H.wait_until(function() reqs = rcv.requests(); return #reqs == 2 end, 3))
    table.sort(reqs, function(a, b) return a.at < b.at end)
    local a, c = cjson.decode(reqs[1].body), cjson.decode(reqs[2].body)
    assert.equal("phone.disconnected", a.event)
    assert.same({ phoneNumberId = "ph_primary", phoneNumber = "+15551230001",
      connectionStatus = "disconnected" }, a.data)
    assert.equal("phone.connected", c.event)
    assert.equal("connected", c.data.connectionStatus)
    local _, st = H.call(sb, "GET", "/v1/phone-numbers/ph_primary/status")
    assert.equal("connected", st.data.connectionStatus)
  end)
end)
