-- SPDX-License-Identifier: MIT
local sandbox = require("chatmaid.sandbox")
local H = require("spec.support.sandbox_helper")

local ISO = "^%d%d%d%d%-%d%d%-%d%dT%d%d:%d%d:%d%d%.%d%d%dZ$"

describe("chatmaid.sandbox /v1 endpoints", function()
  local sb

  setup(function() sb = sandbox.start{ port = 0, live_delay = 0.2 } end)
  teardown(function() if sb then sb:stop() end end)
  before_each(function() assert(sb:reset()) end)

  local function call(...) return H.call(sb, ...) end

  local function assert_error(status, body, code, reason, messages, path)
    assert.equal(code, status)
    assert.same({ "error", "message", "path", "statusCode", "success", "timestamp" },
      (function() local k = {}; for n in pairs(body) do k[#k + 1] = n end
        table.sort(k); return k end)())
    assert.is_false(body.success)
    assert.equal(reason, body.error)
    assert.same(messages, body.message)
    assert.equal(code, body.statusCode)
    assert.equal(path, body.path)
    assert.truthy(body.timestamp:match(ISO))
  end

  describe("authentication", function()
    it("answers 401 without an Authorization header", function()
      local st, b = call("GET", "/v1/messages", nil, false)
      assert_error(st, b, 401, "Unauthorized", { "Missing API key" }, "/v1/messages")
    end)
    it("answers 401 for a garbled header", function()
      local st, b = sb:request("GET", "/v1/account", nil, { Authorization = "Token abc" })
      assert_error(st, b, 401, "Unauthorized", { "Invalid authorization header format" },
        "/v1/account")
    end)
    it("answers 401 for an unknown key", function()
      local st, b = call("GET", "/v1/account", nil, "sk_test_nope")
      assert_error(st, b, 401, "Unauthorized", { "Invalid API key" }, "/v1/account")
    end)
    it("keeps the error envelope's key order", function()
      local s = H.connect(sb.port)
      s:send(H.build("GET", "/v1/messages", { Connection = "close" }))
      local r = H.read_response(s)
      s:close()
      assert.equal(401, r.status)
      assert.truthy(r.body:match('^{"success":false,"error":"Unauthorized","message":%['
        .. '"Missing API key"%],"statusCode":401,"timestamp":"[^"]+","path":"/v1/messages"}$'))
      assert.equal("application/json; charset=utf-8", r.headers["content-type"])
    end)
  end)

  describe("routing", function()
    it("answers 404 for an unknown route before checking the key", function()
      local st, b = call("GET", "/v1/nope", nil, false)
      assert_error(st, b, 404, "Not Found", { "Cannot GET /v1/nope" }, "/v1/nope")
    end)
    it("answers 404 for a wrong method", function()
      local st, b = call("DELETE", "/v1/messages")
      assert_error(st, b, 404, "Not Found", { "Cannot DELETE /v1/messages" }, "/v1/messages")
    end)
  end)

  describe("scopes", function()
    it("refuses a send without messages:send or messages:write", function()
      local st, b = call("POST", "/v1/messages/send", H.send_body(), H.READONLY)
      assert_error(st, b, 403, "Forbidden", { "API key does not include required scope: "
        .. "messages:send (also accepted: messages:write)" }, "/v1/messages/send")
    end)
    it("refuses a list without messages:read", function()
      local st, b = call("GET", "/v1/messages", nil, H.NOSCOPES)
      assert_error(st, b, 403, "Forbidden",
        { "API key does not include required scope: messages:read" }, "/v1/messages")
    end)
    it("lets messages:read read phones and the account", function()
      assert.equal(200, (call("GET", "/v1/phone-numbers", nil, H.READONLY)))
      assert.equal(200, (call("GET", "/v1/account", nil, H.READONLY)))
      assert.equal(200, (call("GET", "/v1/account/usage", nil, H.READONLY)))
    end)
    it("refuses phones and account without any scope", function()
      assert.equal(403, (call("GET", "/v1/phone-numbers/ph_primary", nil, H.NOSCOPES)))
      assert.equal(403, (call("GET", "/v1/account/usage", nil, H.NOSCOPES)))
    end)
  end)

  describe("POST /v1/messages/send", function()
    it("sends at once with a test key (201, every field)", function()
      local st, b = call("POST", "/v1/messages/send", H.send_body())
      assert.equal(201, st)
      assert.is_true(b.success)
      local m = b.data
      assert.truthy(m.id:match("^msg_%x+$"))
      assert.equal(28, #m.id)
      assert.equal("+15551230001", m.from)
      assert.equal("+15557654321", m.to)
      assert.equal("Hello", m.content)
      assert.same({}, m.mediaUrls)
      assert.equal("test", m.environment)
      assert.equal("sent", m.status)
      assert.truthy(m.createdAt:match(ISO))
      assert.equal(m.createdAt, m.sentAt)
      assert.equal(require("cjson").null, m.failedAt)
      assert.equal(require("cjson").null, m.errorCode)
      assert.equal(require("cjson").null, m.errorMessage)
      assert.is_nil(m.phoneNumberId)   -- not a documented field
    end)
    it("encodes an empty mediaUrls as [] on the wire", function()
      local s = H.connect(sb.port)
      local body = '{"fromPhoneId":"ph_primary","to":"+15557654321","content":"x"}'
      s:send(H.build("POST", "/v1/messages/send", {
        Authorization = "Bearer " .. H.KEY, ["Content-Type"] = "application/json" }, body))
      local r = H.read_response(s)
      s:close()
      assert.equal(201, r.status)
      assert.truthy(r.body:find('"mediaUrls":[],', 1, true))
      assert.truthy(r.body:find('"failedAt":null,"errorCode":null,"errorMessage":null', 1, true))
    end)
    it("lists every validation problem at once", function()
      local st, b = call("POST", "/v1/messages/send", {
        to = "5551234", mediaUrls = { "http://example.com/a.png" },
        idempotencyKey = string.rep("k", 65), environment = "live" })
      assert_error(st, b, 400, "Bad Request", {
        "property environment should not exist",
        "fromPhoneId should not be empty",
        "fromPhoneId must be a string",
        "Phone number must be in E.164 format (e.g., +1987654321)",
        "each value in mediaUrls must be a public HTTPS URL",
        "idempotencyKey must be shorter than or equal to 64 characters",
      }, "/v1/messages/send")
    end)
    it("requires content or mediaUrls, and a string to", function()
      local st, b = call("POST", "/v1/messages/send", { fromPhoneId = "ph_primary" })
      assert_error(st, b, 400, "Bad Request", {
        "Phone number must be in E.164 format (e.g., +1987654321)",
        "to must be a string",
        "content or mediaUrls is required",
      }, "/v1/messages/send")
    end)
    it("counts content length in UTF-16 code units", function()
      -- 2048 emoji = 4096 code units: accepted; one more character is too long
      local ok = string.rep("\240\159\152\128", 2048)
      assert.equal(201, (call("POST", "/v1/messages/send", H.send_body{ content = ok })))
      local st, b = call("POST", "/v1/messages/send", H.send_body{ content = ok .. "a" })
      assert_error(st, b, 400, "Bad Request",
        { "content must be shorter than or equal to 4096 characters" }, "/v1/messages/send")
      local ascii = string.rep("a", 4096)
      assert.equal(201, (call("POST", "/v1/messages/send", H.send_body{ content = ascii })))
    end)
    it("rejects invalid UTF-8 with 400", function()
      local body = '{"fromPhoneId":"ph_primary","to":"+15557654321","content":"a\255b"}'
      local st, b = call("POST", "/v1/messages/send", body)
      assert_error(st, b, 400, "Bad Request", { "Request body must be valid UTF-8" },
        "/v1/messages/send")
    end)
    it("rejects a body that is not JSON, or not an object", function()
      local st, b = call("POST", "/v1/messages/send", "{nope")
      assert.equal(400, st)
      assert.truthy(b.message[1]:match("^Request body must be valid JSON"))
      st, b = call("POST", "/v1/messages/send", "[1,2]")
      assert_error(st, b, 400, "Bad Request", { "Request body must be a JSON object" },
        "/v1/messages/send")
    end)
    it("accepts media-only messages with public HTTPS URLs", function()
      local st, b = call("POST", "/v1/messages/send", { fromPhoneId = "ph_primary",
        to = "+15557654321", mediaUrls = { "https://cdn.example.com/a.png" } })
      assert.equal(201, st)
      assert.same({ "https://cdn.example.com/a.png" }, b.data.mediaUrls)
      assert.equal(require("cjson").null, b.data.content)
      st = call("POST", "/v1/messages/send", { fromPhoneId = "ph_primary",
        to = "+15557654321", mediaUrls = { "https://127.0.0.1/a.png" } })
      assert.equal(400, st)
    end)
    it("answers 404 for a phone outside the account", function()
      local st, b = call("POST", "/v1/messages/send", H.send_body{ fromPhoneId = "ph_other" })
      assert_error(st, b, 404, "Not Found", { "Phone number not found" }, "/v1/messages/send")
    end)
    it("answers an E.164 number as fromPhoneId as an unknown phone id (docs: a phone ID)",
       function()
      local st, b = call("POST", "/v1/messages/send", H.send_body{ fromPhoneId = "+15551230001" })
      assert_error(st, b, 404, "Not Found", { "Phone number not found" }, "/v1/messages/send")
      assert.equal(0, sb:stats().messagesCreated)
    end)
    it("refuses a live send from a phone that is not connected", function()
      local st, b = call("POST", "/v1/messages/send", H.send_body{ fromPhoneId = "ph_backup" },
        H.LIVE)
      assert_error(st, b, 400, "Bad Request", { "Phone number +15551230002 is not connected"
        .. " (connectionStatus: disconnected)" }, "/v1/messages/send")
      -- test keys simulate delivery from any phone
      assert.equal(201, (call("POST", "/v1/messages/send", H.send_body{ fromPhoneId =
        "ph_backup" })))
    end)
    it("returns the original message for a reused idempotency key", function()
      local st1, b1 = call("POST", "/v1/messages/send", H.send_body{ idempotencyKey = "order-1" })
      local st2, b2 = call("POST", "/v1/messages/send", H.send_body{ idempotencyKey = "order-1",
        content = "different" })
      assert.equal(201, st1)
      assert.equal(201, st2)
      assert.equal(b1.data.id, b2.data.id)
      assert.equal("Hello", b2.data.content)
      assert.is_nil(b2.data.idempotencyKey)   -- the service does not echo the key
      local stats = sb:stats()
      assert.equal(2, stats.sendRequests)
      assert.equal(1, stats.messagesCreated)
      local _, list = call("GET", "/v1/messages")
      assert.equal(1, list.data.pagination.total)
    end)
    it("moves a live message from pending to sent after live_delay", function()
      local st, b = call("POST", "/v1/messages/send", H.send_body(), H.LIVE)
      assert.equal(201, st)
      assert.equal("pending", b.data.status)
      assert.equal("live", b.data.environment)
      assert.equal(require("cjson").null, b.data.sentAt)
      local _, now = call("GET", "/v1/messages/" .. b.data.id, nil, H.LIVE)
      assert.equal("pending", now.data.status)
      assert.is_true(H.wait_until(function()
        local _, g = call("GET", "/v1/messages/" .. b.data.id, nil, H.LIVE)
        return g.data.status == "sent"
      end, 3))
      local _, g = call("GET", "/v1/messages/" .. b.data.id, nil, H.LIVE)
      assert.truthy(g.data.sentAt:match(ISO))
      assert.is_true(g.data.sentAt > g.data.createdAt)
    end)
    it("fails a live message to +15550000666 with an error code", function()
      local _, b = call("POST", "/v1/messages/send", H.send_body{ to = "+15550000666" }, H.LIVE)
      assert.equal("pending", b.data.status)
      local g
      assert.is_true(H.wait_until(function()
        local _, r = call("GET", "/v1/messages/" .. b.data.id, nil, H.LIVE)
        g = r.data
        return g.status ~= "pending"
      end, 3))
      assert.equal("failed", g.status)
      assert.equal("RECIPIENT_UNREACHABLE", g.errorCode)
      assert.equal("The recipient is not reachable on WhatsApp", g.errorMessage)
      assert.truthy(g.failedAt:match(ISO))
      assert.equal(require("cjson").null, g.sentAt)
      -- a test key to the same number is simulated as sent
      local _, t = call("POST", "/v1/messages/send", H.send_body{ to = "+15550000666" })
      assert.equal("sent", t.data.status)
    end)
  end)

  describe("GET /v1/messages", function()
    it("validates its query", function()
      local st, b = call("GET", "/v1/messages?page=0&limit=101&status=x&environment=prod")
      assert_error(st, b, 400, "Bad Request", {
        "page must not be less than 1",
        "limit must not be greater than 100",
        "status must be one of the following values: pending, sent, failed, delivered, read",
        "environment must be one of the following values: live, test",
      }, "/v1/messages")
      st, b = call("GET", "/v1/messages?limit=abc")
      assert.equal(400, st)
      assert.same({ "limit must be an integer number", "limit must not be less than 1" },
        b.message)
    end)
    it("sorts by createdAt descending and paginates with totals", function()
      assert(sb:seed{ count = 45 })
      local seen, ids = {}, {}
      for page = 1, 3 do
        local st, b = call("GET", "/v1/messages?limit=20&page=" .. page)
        assert.equal(200, st)
        assert.same({ page = page, limit = 20, total = 45, totalPages = 3 }, b.data.pagination)
        assert.equal(page < 3 and 20 or 5, #b.data.data)
        for _, m in ipairs(b.data.data) do
          assert.is_nil(seen[m.id])
          seen[m.id] = true
          ids[#ids + 1] = m
        end
      end
      assert.equal(45, #ids)
      for i = 2, #ids do assert.is_true(ids[i - 1].createdAt > ids[i].createdAt) end
      local _, b = call("GET", "/v1/messages?page=4")
      assert.equal(0, #b.data.data)
      assert.equal(3, b.data.pagination.totalPages)
    end)
    it("defaults the environment filter to the key's environment", function()
      assert(sb:seed{ count = 3, environment = "live" })
      assert(sb:seed{ count = 2, environment = "test" })
      local _, t = call("GET", "/v1/messages")
      assert.equal(2, t.data.pagination.total)
      local _, l = call("GET", "/v1/messages", nil, H.LIVE)
      assert.equal(3, l.data.pagination.total)
      local _, e = call("GET", "/v1/messages?environment=live")
      assert.equal(3, e.data.pagination.total)
    end)
    it("filters by status and phoneNumberId", function()
      assert(sb:seed{ count = 2, status = "failed", phoneNumberId = "ph_backup" })
      assert(sb:seed{ count = 4, status = "sent" })
      local _, f = call("GET", "/v1/messages?status=failed")
      assert.equal(2, f.data.pagination.total)
      assert.equal("failed", f.data.data[1].status)
      local _, p = call("GET", "/v1/messages?phoneNumberId=ph_primary")
      assert.equal(4, p.data.pagination.total)
      local _, e = call("GET", "/v1/messages?status=pending")
      assert.same({ page = 1, limit = 20, total = 0, totalPages = 0 }, e.data.pagination)
    end)
  end)

  describe("GET /v1/messages/:id", function()
    it("returns a message and 404 for an unknown id", function()
      local _, s = call("POST", "/v1/messages/send", H.send_body())
      local st, b = call("GET", "/v1/messages/" .. s.data.id)
      assert.equal(200, st)
      assert.same(s.data, b.data)
      st, b = call("GET", "/v1/messages/msg_000000000000000000000000")
      assert_error(st, b, 404, "Not Found", { "Message not found" },
        "/v1/messages/msg_000000000000000000000000")
    end)
  end)

  describe("phone numbers", function()
    local primary = {
      id = "ph_primary", phoneNumber = "+15551230001", displayName = "Primary Sender",
      connectionStatus = "connected", lastConnectedAt = "2026-01-01T09:00:00.000Z",
      lastDisconnectedAt = require("cjson").null, createdAt = "2026-01-01T08:00:00.000Z",
      updatedAt = "2026-01-01T09:00:00.000Z",
    }
    it("lists the account's phones", function()
      local st, b = call("GET", "/v1/phone-numbers")
      assert.equal(200, st)
      assert.equal(3, #b.data)
      assert.same(primary, b.data[1])
      assert.equal("disconnected", b.data[2].connectionStatus)
      assert.equal("ph_pairing", b.data[3].id)
      assert.equal("connecting", b.data[3].connectionStatus)
    end)
    it("finds a phone by id or percent-encoded E.164", function()
      local _, a = call("GET", "/v1/phone-numbers/ph_primary")
      local _, b = call("GET", "/v1/phone-numbers/%2B15551230001")
      assert.same(primary, a.data)
      assert.same(primary, b.data)
      local st, c = call("GET", "/v1/phone-numbers/%2B19990000000")
      assert_error(st, c, 404, "Not Found", { "Phone number not found" },
        "/v1/phone-numbers/%2B19990000000")
    end)
    it("reports connection status", function()
      local st, b = call("GET", "/v1/phone-numbers/%2B15551230002/status")
      assert.equal(200, st)
      assert.same({ id = "ph_backup", phoneNumber = "+15551230002",
        connectionStatus = "disconnected", lastConnectedAt = "2026-01-01T09:00:00.000Z",
        lastDisconnectedAt = "2026-01-02T09:00:00.000Z", updatedAt = "2026-01-02T09:00:00.000Z",
      }, b.data)
    end)
  end)

  describe("account", function()
    it("returns the profile and counters", function()
      assert(sb:seed{ count = 3 })
      local st, b = call("GET", "/v1/account")
      assert.equal(200, st)
      assert.same({ accountId = "acc_sandbox", name = "Sandbox Inc",
        email = "sandbox@example.com", subscriptionStatus = "active",
        stats = { apiKeys = 4, phoneNumbers = 3, messages = 3 } }, b.data)
    end)
    it("reports usage for a period (default month)", function()
      call("POST", "/v1/messages/send", H.send_body())
      call("POST", "/v1/messages/send", H.send_body{ to = "bad" })
      assert(sb:seed{ count = 2, status = "failed" })
      local st, b = call("GET", "/v1/account/usage")
      assert.equal(200, st)
      assert.equal("month", b.data.period)
      assert.same({ total = 3, pending = 0, sent = 1, failed = 2 }, b.data.messages)
      assert.same({ total = 2, successful = 1, failed = 1 }, b.data.apiRequests)
      local days = 30 * 86400000
      local function ms(iso)
        local y, mo, d, h, mi, s, f = iso:match("(%d+)-(%d+)-(%d+)T(%d+):(%d+):(%d+)%.(%d+)Z")
        return os.time{ year = y, month = mo, day = d, hour = h, min = mi, sec = s } * 1000 + f
      end
      assert.equal(days, ms(b.data.endDate) - ms(b.data.startDate))
      local _, d = call("GET", "/v1/account/usage?period=day")
      assert.equal("day", d.data.period)
      assert.equal(86400000, ms(d.data.endDate) - ms(d.data.startDate))
    end)
    it("refuses an unknown period", function()
      local st, b = call("GET", "/v1/account/usage?period=year")
      assert_error(st, b, 400, "Bad Request",
        { "period must be one of the following values: day, week, month" },
        "/v1/account/usage")
    end)
  end)

  describe("rate limit", function()
    after_each(function() assert(sb:config{ rate_limit = 100 }) end)
    it("answers 429 with retryAfter and Retry-After past the per-key limit", function()
      assert(sb:config{ rate_limit = 5 })
      for _ = 1, 5 do assert.equal(200, (call("GET", "/v1/account"))) end
      local st, b, h = call("GET", "/v1/account")
      assert.equal(429, st)
      assert.same({ "error", "retryAfter", "success" }, (function()
        local k = {}; for n in pairs(b) do k[#k + 1] = n end; table.sort(k); return k end)())
      assert.is_false(b.success)
      assert.equal("Rate limit exceeded", b.error)
      assert.is_true(b.retryAfter >= 59 and b.retryAfter <= 60)
      assert.equal(string.format("%d", b.retryAfter), h["retry-after"])
      -- the limit is per key
      assert.equal(200, (call("GET", "/v1/account", nil, H.READONLY)))
    end)
    it("can be switched off", function()
      assert(sb:config{ rate_limit = false })
      for _ = 1, 120 do assert.equal(200, (call("GET", "/v1/account"))) end
    end)
  end)
end)
