-- SPDX-License-Identifier: MIT
local socket = require("socket")
local sandbox = require("chatmaid.sandbox")
local H = require("spec.support.sandbox_helper")

describe("chatmaid.sandbox control endpoints", function()
  local sb

  setup(function() sb = sandbox.start{ port = 0 } end)
  teardown(function() if sb then sb:stop() end end)
  before_each(function() assert(sb:reset()) end)

  it("reports what the server received", function()
    H.call(sb, "POST", "/v1/messages/send", H.send_body())
    H.call(sb, "POST", "/v1/messages/send", H.send_body{ to = "x" })
    H.call(sb, "GET", "/v1/account")
    local s = assert(sb:stats())
    assert.equal(2, s.sendRequests)
    assert.equal(1, s.messagesCreated)
    assert.equal(3, s.requests)
    assert.same({ ["POST /v1/messages/send"] = 2, ["GET /v1/account"] = 1 }, s.byPath)
    assert.equal(0, s.webhookDeliveries)
    assert.equal(1, s.messages)
  end)

  it("seeds 1000 messages quickly without counting them as sends", function()
    local t0 = socket.gettime()
    local r = assert(sb:seed{ count = 1000, status = "sent" })
    assert.is_true(socket.gettime() - t0 < 1)
    assert.equal(1000, r.created)
    assert.equal(1000, #r.ids)
    local s = sb:stats()
    assert.equal(0, s.sendRequests)
    assert.equal(0, s.messagesCreated)
    assert.equal(1000, s.messagesSeeded)
    local _, b = H.call(sb, "GET", "/v1/messages?limit=100&page=10")
    assert.same({ page = 10, limit = 100, total = 1000, totalPages = 10 }, b.data.pagination)
    assert.equal(r.ids[1], b.data.data[100].id) -- the oldest comes last
  end)

  it("seeds with a status, phone, recipient and environment", function()
    local r = assert(sb:seed{ count = 2, status = "failed", phoneNumberId = "ph_backup",
      to = "+15550001111", environment = "live" })
    local _, m = H.call(sb, "GET", "/v1/messages/" .. r.ids[2], nil, H.LIVE)
    assert.equal("failed", m.data.status)
    assert.equal("+15551230002", m.data.from)
    assert.equal("+15550001111", m.data.to)
    assert.equal("live", m.data.environment)
    assert.equal("SEND_FAILED", m.data.errorCode)
    local ok, err = sb:seed{ phoneNumberId = "ph_nope" }
    assert.is_nil(ok)
    assert.truthy(err:find("HTTP 404", 1, true))
  end)

  it("resets messages, counters, faults, rate windows and phone states", function()
    assert(sb:seed{ count = 3 })
    assert(sb:fault{ type = "json_502", path = "/v1/account", count = 5 })
    assert(sb:set_phone_state("ph_primary", "disconnected"))
    assert(sb:reset())
    local s = sb:stats()
    assert.equal(0, s.messages)
    assert.equal(0, s.requests)
    assert.equal(0, s.faultsPending)
    assert.equal(200, (H.call(sb, "GET", "/v1/account")))
    local _, p = H.call(sb, "GET", "/v1/phone-numbers/ph_primary")
    assert.equal("connected", p.data.connectionStatus)
    assert.equal("2026-01-01T09:00:00.000Z", p.data.updatedAt)
  end)

  it("changes a phone's state (and rejects unknown states)", function()
    local p = assert(sb:set_phone_state("ph_pairing", "connected"))
    assert.equal("connected", p.connectionStatus)
    local _, st = H.call(sb, "GET", "/v1/phone-numbers/ph_pairing/status")
    assert.equal("connected", st.data.connectionStatus)
    assert.equal(st.data.updatedAt, st.data.lastConnectedAt)
    -- a live send from it works now
    assert.equal(201, (H.call(sb, "POST", "/v1/messages/send",
      H.send_body{ fromPhoneId = "ph_pairing" }, H.LIVE)))
    local ok, err = sb:set_phone_state("ph_pairing", "asleep")
    assert.is_nil(ok)
    assert.truthy(err:find("HTTP 400", 1, true))
  end)

  it("changes live_delay at runtime", function()
    assert(sb:config{ live_delay = 0.05 })
    finally(function() assert(sb:config{ live_delay = 2 }) end)
    local _, b = H.call(sb, "POST", "/v1/messages/send", H.send_body(), H.LIVE)
    assert.equal("pending", b.data.status)
    assert.is_true(H.wait_until(function()
      local _, g = H.call(sb, "GET", "/v1/messages/" .. b.data.id, nil, H.LIVE)
      return g.data.status == "sent"
    end, 2))
  end)

  it("lists pending faults", function()
    assert(sb:fault{ type = "delay", path = "/v1/messages", method = "get", seconds = 1 })
    local _, b = sb:request("GET", "/__sandbox/faults")
    assert.same({ { type = "delay", path = "/v1/messages", method = "GET", count = 1,
      process = true } }, b.data)
  end)

  it("answers 404 for an unknown control path", function()
    local st, b = sb:request("GET", "/__sandbox/nope")
    assert.equal(404, st)
    assert.same({ "Cannot GET /__sandbox/nope" }, b.message)
  end)
end)

describe("chatmaid.sandbox configuration", function()
  local CONFIG = {
    accounts = {
      { id = "acc_one", name = "One", email = "one@example.com",
        keys = { { key = "sk_test_one", scopes = { "messages:send", "messages:read" } },
          { key = "sk_live_one_expired", scopes = { "messages:read" }, expired = true } },
        phones = { { id = "ph_one", phoneNumber = "+15559990001", displayName = "One",
          connectionStatus = "connected" } } },
      { id = "acc_two", name = "Two", email = "two@example.com",
        subscriptionStatus = "canceled",
        keys = { { key = "sk_test_two", scopes = { "messages:read", "messages:send" } },
          { key = "sk_live_two", scopes = { "messages:read" } } },
        phones = { { id = "ph_two", phoneNumber = "+15559990002",
          connectionStatus = "connected" } } },
    },
    rate_limit = false,
  }

  it("supports several accounts from a config table", function()
    local sb = sandbox.start{ port = 0, config = CONFIG }
    finally(function() sb:stop() end)
    local _, a = H.call(sb, "POST", "/v1/messages/send",
      H.send_body{ fromPhoneId = "ph_one" }, "sk_test_one")
    assert.equal("+15559990001", a.data.from)
    -- keys only see their own account's phones and messages
    assert.equal(404, (H.call(sb, "POST", "/v1/messages/send",
      H.send_body{ fromPhoneId = "ph_one" }, "sk_test_two")))
    assert.equal(404, (H.call(sb, "GET", "/v1/messages/" .. a.data.id, nil, "sk_test_two")))
    -- the default keys are gone
    assert.equal(401, (H.call(sb, "GET", "/v1/account")))
    local st, e = H.call(sb, "GET", "/v1/messages", nil, "sk_live_one_expired")
    assert.equal(401, st)
    assert.same({ "API key has expired" }, e.message)
    st, e = H.call(sb, "GET", "/v1/messages", nil, "sk_live_two")
    assert.equal(403, st)
    assert.same({ "Live API keys require an active subscription" }, e.message)
    local _, acc = H.call(sb, "GET", "/v1/account", nil, "sk_test_two")
    assert.same({ apiKeys = 2, phoneNumbers = 1, messages = 0 }, acc.data.stats)
    assert.equal("canceled", acc.data.subscriptionStatus)
  end)

  it("reads a Lua config file", function()
    local path = os.tmpname()
    local f = assert(io.open(path, "w"))
    f:write([[return { rate_limit = 2, accounts = { { id = "acc_lua", name = "L",
      email = "l@example.com", keys = { { key = "sk_test_lua", scopes = { "account:read" } } },
      phones = {} } } }]])
    f:close()
    local sb = sandbox.start{ port = 0, config = path }
    finally(function() sb:stop(); os.remove(path) end)
    local _, b = H.call(sb, "GET", "/v1/account", nil, "sk_test_lua")
    assert.equal("acc_lua", b.data.accountId)
    assert.equal(200, (H.call(sb, "GET", "/v1/account", nil, "sk_test_lua")))
    assert.equal(429, (H.call(sb, "GET", "/v1/account", nil, "sk_test_lua")))
  end)
end)

describe("chatmaid.sandbox.start", function()
  it("gives the port, url and pid, and stop() is idempotent", function()
    local sb = sandbox.start{ port = 0 }
    assert.is_true(sb.port > 0)
    assert.equal("http://127.0.0.1:" .. sb.port, sb.url)
    assert.is_true(sb.pid > 1)
    assert.truthy(io.open("/proc/" .. sb.pid .. "/stat"))
    assert.is_true(sb:stop())
    assert.is_true(sb:stop())
    assert.is_nil(socket.connect("127.0.0.1", sb.port))
  end)

  it("raises with the child's stderr when it cannot start", function()
    local ok, err = pcall(sandbox.start, { port = 0, config = "/nonexistent/sandbox.lua" })
    assert.is_false(ok)
    assert.truthy(err:find("failed to start", 1, true))
    assert.truthy(err:find("cannot read config", 1, true))
  end)

  it("raises when the port is taken", function()
    local a = sandbox.start{ port = 0 }
    finally(function() a:stop() end)
    local ok, err = pcall(sandbox.start, { port = a.port })
    assert.is_false(ok)
    assert.truthy(err:find("bind 127.0.0.1:" .. a.port, 1, true))
  end)

  it("exits when its parent goes away", function()
    -- a parent shell that starts the sandbox and exits at once
    local lua = os.getenv("CHATMAID_LUA") or "lua5.4"
    local bin = debug.getinfo(sandbox.start, "S").source:match("^@(.*)/[^/]*$")
      .. "/../../bin/chatmaid-sandbox"
    local p = io.popen("sh -c '" .. lua .. " " .. bin .. " --port 0 --exit-with-parent"
      .. " & sleep 0.3; head -c0 /dev/null' 2>/dev/null")
    local line = p:read("*l")
    p:close()
    local pid = tonumber(line:match("pid=(%d+)"))
    assert.is_true(H.wait_until(function()
      local f = io.open("/proc/" .. pid .. "/stat")
      if not f then return true end
      local s = f:read("*l"); f:close()
      return s:match("^%d+ %b() Z") ~= nil
    end, 4))
  end)
end)

describe("chatmaid.sandbox.json", function()
  local json = require("chatmaid.sandbox.json")
  it("keeps key order, empty arrays and nulls", function()
    assert.equal('{"b":1,"a":[],"c":null,"d":"x/y\\n"}',
      json.encode(json.obj("b", 1, "a", json.arr({}), "c", json.null, "d", "x/y\n")))
  end)
  it("encodes integers without a fraction", function()
    assert.equal("[1,2.5,-3]", json.encode({ 1, 2.5, -3 }))
  end)
end)

describe("chatmaid.sandbox.util", function()
  local util = require("chatmaid.sandbox.util")
  it("counts UTF-16 code units and rejects invalid UTF-8", function()
    assert.equal(5, util.utf16_len("hello"))
    assert.equal(2, util.utf16_len("\240\159\152\128"))
    assert.equal(1, util.utf16_len("\195\169"))
    assert.is_nil(util.utf16_len("\255"))
    assert.is_nil(util.utf16_len("\237\160\128")) -- a UTF-16 surrogate
    assert.is_nil(util.utf16_len("\192\128"))     -- overlong
  end)
  it("formats ISO 8601 times with milliseconds", function()
    assert.equal("2026-02-06T14:18:33.120Z", util.iso(1770387513120))
  end)
end)
