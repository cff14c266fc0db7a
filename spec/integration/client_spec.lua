-- The Chatmaid v1 client against the sandbox, over real sockets and the real libcurl path.
local chatmaid = require "chatmaid"
local F = require "spec.support.fixtures"

describe("chatmaid client #integration", function()
  local sb = F.block_sandbox{ rate_limit = false }
  local c

  teardown(function()
    if c then c:close() end
  end)

  before_each(function()
    c = F.client(sb)
  end)

  after_each(function() c:close() end)

  describe("new()", function()
    it("infers the environment from the key prefix", function()
      assert.equal("test", c.environment)
      local live = assert(chatmaid.new{ api_key = F.LIVE_KEY, base_url = sb.url })
      assert.equal("live", live.environment)
      live:close()
    end)

    it("reads CHATMAID_API_KEY and CHATMAID_BASE_URL when no options are given", function()
      -- os.getenv cannot be set from Lua: run a child with the variables.
      local lua = os.getenv("CHATMAID_LUA") or "lua5.4"
      -- The child gets this process's cpath: make test points it at the core built for $(LUA).
      local script = [[package.path="lua/?.lua;lua/?/init.lua;"..package.path
        package.cpath=]] .. string.format("%q", package.cpath) .. [[
        local c = assert(require("chatmaid").new())
        local a = assert(c:account()) io.write(c.environment, " ", a.name)]]
      local f = assert(io.popen("CHATMAID_API_KEY=" .. F.TEST_KEY .. " CHATMAID_BASE_URL="
                                .. sb.url .. " " .. lua .. " -e '" .. script .. "' 2>&1"))
      local out = f:read("*a")
      f:close()
      assert.equal("test Sandbox Inc", out)
    end)

    local bad_keys = {
      { nil, "no API key: pass api_key to chatmaid.new or set CHATMAID_API_KEY" },
      { "", "no API key: pass api_key to chatmaid.new or set CHATMAID_API_KEY" },
      { "pk_test_abc", "api_key must start with sk_test_ or sk_live_" },
      { "sk_test_", "api_key must start with sk_test_ or sk_live_" },
      { "sk_test_abc def", "api_key contains whitespace or control characters" },
      { "sk_test_abc\n", "api_key contains whitespace or control characters" },
    }
    for _, case in ipairs(bad_keys) do
      it("returns a validation error for the key " .. string.format("%q", tostring(case[1])),
         function()
        local saved = os.getenv("CHATMAID_API_KEY")
        if case[1] == nil and saved then return end   -- the environment provides one
        local client, err = chatmaid.new{ api_key = case[1], base_url = sb.url }
        assert.is_nil(client)
        assert.equal("validation", err.kind)
        assert.truthy(err.message:find(case[2], 1, true), err.message)
        if case[1] and #case[1] > 8 then
          assert.falsy(tostring(err):find(case[1], 1, true))
        end
      end)
    end

    local bad_urls = {
      { "http://example.com", "must use https" },
      { "ftp://127.0.0.1", "must use https" },
      { "developers-api.chatmaid.net", "must be an absolute URL" },
      { "https://user:pw@example.com", "must not contain credentials" },
      { "https://example.com/?x=1", "must not contain a query" },
      { "https://", "has no host" },
      { "https://example.com:abc", "invalid port" },
    }
    for _, case in ipairs(bad_urls) do
      it("returns a validation error for base_url " .. case[1], function()
        local client, err = chatmaid.new{ api_key = F.TEST_KEY, base_url = case[1] }
        assert.is_nil(client)
        assert.equal("validation", err.kind)
        assert.truthy(err.message:find(case[2], 1, true), err.message)
      end)
    end

    it("accepts http only for loopback hosts", function()
      for _, u in ipairs{ "http://127.0.0.1:1", "http://127.9.9.9", "http://localhost:8",
                          "http://[::1]:80", "https://example.com/prefix/" } do
        local client = assert(chatmaid.new{ api_key = F.TEST_KEY, base_url = u })
        client:close()
      end
    end)

    it("raises on unknown options and wrong option types", function()
      assert.has_error(function() chatmaid.new{ api_key = F.TEST_KEY, timout = 3 } end,
                       "chatmaid: new: unknown parameter 'timout' (did you mean 'timeout'?)")
      assert.has_error(function() chatmaid.new{ api_key = F.TEST_KEY, timeout = "3" } end,
                       "chatmaid: new: parameter 'timeout' must be a number (got string)")
      assert.has_error(function() chatmaid.new(42) end,
                       "chatmaid: new expects a table of parameters (got number)")
      assert.has_error(function() chatmaid.new{ api_key = F.TEST_KEY, timeout = -1 } end,
                       "chatmaid: new: timeout must be a positive number")
      assert.has_error(function() chatmaid.new{ api_key = F.TEST_KEY, max_retries = 1.5 } end,
                       "chatmaid: new: max_retries must be a non-negative integer")
      assert.has_error(function() chatmaid.new{ api_key = F.TEST_KEY, http_version = "3" } end,
                       'chatmaid: new: http_version must be "1.1" or "2"')
      assert.has_error(function()
        chatmaid.new{ api_key = F.TEST_KEY, user_agent = "x\r\nX-Evil: 1" }
      end, "chatmaid: new: user_agent must not contain control characters")
    end)

    it("never shows the key in tostring", function()
      assert.equal("chatmaid.client (test, " .. sb.url .. ")", tostring(c))
      for k, v in pairs(c) do
        assert.falsy(type(v) == "string" and v:find(F.TEST_KEY, 1, true), k)
      end
    end)
  end)

  describe("send()", function()
    it("sends and returns the message with the API's field names", function()
      local m, err = c:send{ from = F.PHONE, to = "+15557654321", content = "Hi",
                             idempotency_key = "order-7784" }
      assert.is_nil(err)
      assert.truthy(m.id:find("^msg_"))
      assert.equal("sent", m.status)
      assert.equal("test", m.environment)
      assert.equal("+15557654321", m.to)
      assert.equal(F.PHONE_E164, m.from)
      assert.equal("Hi", m.content)
      assert.equal("order-7784", m.idempotencyKey)
      assert.is_string(m.createdAt)
      assert.is_string(m.sentAt)
      -- JSON nulls read as nil, not as cjson.null (which is truthy)
      assert.is_nil(m.failedAt)
      assert.is_nil(m.errorCode)
      -- arrays stay arrays, empty ones too
      assert.same({}, m.mediaUrls)
      assert.equal(chatmaid.array_mt, getmetatable(m.mediaUrls))
    end)

    it("sends media URLs", function()
      local m = assert(c:send{ from = F.PHONE, to = "+15557654321",
                               media_urls = { "https://example.com/a.png" } })
      assert.same({ "https://example.com/a.png" }, { m.mediaUrls[1] })
      assert.equal(1, #m.mediaUrls)
    end)

    it("generates an idempotency key when none is given, and returns it", function()
      local m = assert(c:send{ from = F.PHONE, to = "+15557654321", content = "x" })
      assert.truthy(m.idempotencyKey:find(
        "^%x%x%x%x%x%x%x%x%-%x%x%x%x%-4%x%x%x%-[89ab]%x%x%x%-%x%x%x%x%x%x%x%x%x%x%x%x$"))
    end)

    it("returns the original message for a reused idempotency key", function()
      local a = assert(c:send{ from = F.PHONE, to = "+15557654321", content = "once",
                               idempotency_key = "same-key" })
      local b = assert(c:send{ from = F.PHONE, to = "+15557654321", content = "once",
                               idempotency_key = "same-key" })
      assert.equal(a.id, b.id)
      assert.equal(1, sb:stats().messagesCreated)
    end)

    it("sends from a live key as pending", function()
      local live = F.client(sb, { api_key = F.LIVE_KEY })
      local m = assert(live:send{ from = F.PHONE, to = "+15557654321", content = "x" })
      assert.equal("pending", m.status)
      assert.equal("live", m.environment)
      live:close()
    end)

    local rules = {
      { { to = "15557654321", content = "x" }, "to must be in E.164 format" },
      { { to = "+05557654321", content = "x" }, "to must be in E.164 format" },
      { { to = "+1555765432109876", content = "x" }, "to must be in E.164 format" },
      { { to = "+1 555 765", content = "x" }, "to must be in E.164 format" },
      { { to = 15557654321, content = "x" }, "to must be a string in E.164 format" },
      { { to = "+15557654321" }, "content or media_urls is required" },
      { { to = "+15557654321", content = "" }, "content or media_urls is required" },
      { { to = "+15557654321", media_urls = {} }, "content or media_urls is required" },
      { { to = "+15557654321", content = string.rep("a", 4097) },
        "content is 4097 characters long (UTF-16 code units); the limit is 4096" },
      -- 2,049 emoji are 8,196 bytes but 4,098 UTF-16 code units
      { { to = "+15557654321", content = string.rep("\240\159\152\128", 2049) },
        "content is 4098 characters long" },
      { { to = "+15557654321", content = "bad \255 byte" }, "content is not valid UTF-8" },
      { { to = "+15557654321", content = "\237\160\128" }, "content is not valid UTF-8" },
      { { to = "+15557654321", media_urls = { "http://example.com/a.png" } },
        "media_urls[1] must be a public https:// URL" },
      { { to = "+15557654321", media_urls = "https://example.com/a.png" },
        "media_urls must be an array of https:// URLs" },
      { { to = "+15557654321", content = "x", idempotency_key = string.rep("k", 65) },
        "idempotency_key is 65 characters; the limit is 64" },
      { { to = "+15557654321", content = "x", idempotency_key = "tab\tkey" },
        "idempotency_key must contain only printable ASCII characters" },
      { { to = "+15557654321", content = "x", idempotency_key = "" },
        "idempotency_key must be a non-empty string" },
      { { to = "+15557654321", content = "x", from = "" }, "from must be a non-empty string" },
      { { to = "+15557654321", content = "x", from = "+1" }, "from must be in E.164 format" },
    }
    for i, case in ipairs(rules) do
      it("rejects before sending (rule " .. i .. ": " .. case[2]:sub(1, 40) .. ")", function()
        local p = case[1]
        if p.from == nil then p.from = F.PHONE end
        local before = sb:stats().requests
        local m, err = c:send(p)
        assert.is_nil(m)
        assert.equal("validation", err.kind)
        assert.truthy(err.message:find(case[2], 1, true), err.message)
        assert.equal("POST", err.method)
        assert.equal("/v1/messages/send", err.path)
        -- nothing was sent (the sandbox does not count its control calls)
        assert.equal(before, sb:stats().requests)
      end)
    end

    it("accepts content of exactly 4096 UTF-16 code units", function()
      local m = assert(c:send{ from = F.PHONE, to = "+15557654321",
                               content = string.rep("\240\159\152\128", 2048) })
      assert.equal(2048 * 4, #m.content)
    end)

    it("lists every problem at once", function()
      local _, err = c:send{ from = F.PHONE, to = "555", content = "",
                             idempotency_key = string.rep("k", 70) }
      assert.equal(3, #err.messages)
    end)

    it("raises on a non-table argument and unknown parameters", function()
      assert.has_error(function() c:send("hi") end,
                       "chatmaid: send expects a table of parameters (got string)")
      assert.has_error(function() c:send{ to = "+15557654321", conent = "x" } end,
                       "chatmaid: send: unknown parameter 'conent' (did you mean 'content'?)")
      assert.has_error(function() c:send{ to = "+15557654321", content = "x", from = 5 } end,
                       "chatmaid: send: parameter 'from' must be a string (got number)")
    end)

    it("maps a missing sender phone to not_found", function()
      local _, err = c:send{ from = "ph_nope", to = "+15557654321", content = "x" }
      assert.equal("not_found", err.kind)
      assert.equal(404, err.status)
    end)
  end)

  describe("message()", function()
    it("gets one message", function()
      local sent = assert(c:send{ from = F.PHONE, to = "+15557654321", content = "get me" })
      local m = assert(c:message(sent.id))
      assert.equal(sent.id, m.id)
      assert.equal("get me", m.content)
    end)

    it("returns not_found with the envelope's fields", function()
      local m, err = c:message("msg_doesnotexist")
      assert.is_nil(m)
      assert.equal("not_found", err.kind)
      assert.equal(404, err.status)
      assert.equal("Not Found", err.error)
      assert.equal("GET", err.method)
      assert.equal("/v1/messages/msg_doesnotexist", err.path)
      assert.is_false(err.retryable)
      assert.equal(1, err.attempts)
      assert.truthy(tostring(err):find(
        "^chatmaid not_found: .+ %(GET /v1/messages/msg_doesnotexist, HTTP 404%)$"))
    end)

    it("percent-encodes the id in the path", function()
      local _, err = c:message("a/b?c d")
      assert.equal("not_found", err.kind)
      assert.equal("/v1/messages/a%2Fb%3Fc%20d", err.path)
    end)

    it("rejects empty ids and control characters before sending", function()
      local _, err = c:message("")
      assert.equal("validation", err.kind)
      _, err = c:message("msg\n1")
      assert.equal("validation", err.kind)
      assert.truthy(err.message:find("control characters", 1, true))
      assert.has_error(function() c:message(42) end,
                       "chatmaid: message expects a message id as a string (got number)")
    end)
  end)

  describe("list_messages()", function()
    it("pages newest first with the pagination block", function()
      for i = 1, 5 do assert(c:send{ from = F.PHONE, to = "+15557654321", content = "m" .. i }) end
      local page = assert(c:list_messages{ page = 1, limit = 2 })
      assert.equal(2, #page.data)
      assert.equal("m5", page.data[1].content)
      assert.equal("m4", page.data[2].content)
      assert.same({ page = 1, limit = 2, total = 5, totalPages = 3 }, page.pagination)
      local last = assert(c:list_messages{ page = 3, limit = 2 })
      assert.equal(1, #last.data)
      assert.equal("m1", last.data[1].content)
      assert.equal(chatmaid.array_mt, getmetatable(last.data))
    end)

    it("filters by status, phone and environment", function()
      assert(c:send{ from = F.PHONE, to = "+15557654321", content = "t" })
      local live = F.client(sb, { api_key = F.LIVE_KEY })
      assert(live:send{ from = F.PHONE, to = "+15557654321", content = "l" })
      assert.equal(1, assert(c:list_messages{ status = "sent" }).pagination.total)
      assert.equal(0, assert(c:list_messages{ status = "failed" }).pagination.total)
      assert.equal(1, assert(c:list_messages{ environment = "live" }).pagination.total)
      assert.equal(1, assert(c:list_messages{ phone_number_id = F.PHONE }).pagination.total)
      assert.equal(0, assert(c:list_messages{ phone_number_id = "ph_backup" }).pagination.total)
      local empty = assert(c:list_messages{ phone_number_id = "ph_backup" })
      assert.equal(chatmaid.array_mt, getmetatable(empty.data))
      live:close()
    end)

    local rules = {
      { { limit = 0 }, "limit must be an integer 1..100" },
      { { limit = 101 }, "limit must be an integer 1..100" },
      { { limit = 2.5 }, "limit must be an integer 1..100" },
      { { page = 0 }, "page must be an integer >= 1" },
      { { status = "done" }, "status must be one of delivered, failed, pending, read, sent" },
      { { environment = "prod" }, "environment must be one of live, test" },
      { { phone_number_id = "" }, "phone_number_id must be a non-empty string" },
    }
    for _, case in ipairs(rules) do
      it("rejects " .. case[2]:sub(1, 30) .. " before sending", function()
        local page, err = c:list_messages(case[1])
        assert.is_nil(page)
        assert.equal("validation", err.kind)
        assert.truthy(err.message:find(case[2], 1, true), err.message)
      end)
    end

    it("accepts delivered and read from the older docs", function()
      assert(c:list_messages{ status = "delivered" })
      assert(c:list_messages{ status = "read" })
    end)
  end)

  describe("phones", function()
    it("lists phones as an array", function()
      local phones = assert(c:phone_numbers())
      assert.equal(3, #phones)
      assert.equal(chatmaid.array_mt, getmetatable(phones))
      local by_id = {}
      for _, p in ipairs(phones) do by_id[p.id] = p end
      assert.equal("connected", by_id.ph_primary.connectionStatus)
      assert.equal("disconnected", by_id.ph_backup.connectionStatus)
      assert.equal("connecting", by_id.ph_pairing.connectionStatus)
      assert.equal("Primary Sender", by_id.ph_primary.displayName)
    end)

    it("gets a phone by id and by E.164 (percent-encoded for you)", function()
      assert.equal(F.PHONE_E164, assert(c:phone_number(F.PHONE)).phoneNumber)
      assert.equal(F.PHONE, assert(c:phone_number(F.PHONE_E164)).id)
      assert.equal("/v1/phone-numbers/%2B15551230001", c:last_response().path)
    end)

    it("gets a phone's status", function()
      local st = assert(c:phone_status(F.PHONE_E164))
      assert.equal("connected", st.connectionStatus)
      assert.equal("/v1/phone-numbers/%2B15551230001/status", c:last_response().path)
      local _, err = c:phone_status("ph_nope")
      assert.equal("not_found", err.kind)
    end)

    it("validates phone references", function()
      local _, err = c:phone_number("+0155")
      assert.equal("validation", err.kind)
      _, err = c:phone_status("")
      assert.equal("validation", err.kind)
    end)
  end)

  describe("account", function()
    it("reads the account", function()
      local a = assert(c:account())
      assert.equal("Sandbox Inc", a.name)
      assert.equal("active", a.subscriptionStatus)
      assert.is_number(a.stats.messages)
    end)

    it("reads usage for each period, month by default", function()
      assert(c:send{ from = F.PHONE, to = "+15557654321", content = "x" })
      assert.equal("month", assert(c:usage()).period)
      assert.equal("/v1/account/usage?period=month", c:last_response().path)
      for _, p in ipairs{ "day", "week", "month" } do
        local u = assert(c:usage(p))
        assert.equal(p, u.period)
        assert.equal(1, u.messages.sent)
      end
      local _, err = c:usage("year")
      assert.equal("validation", err.kind)
      assert.equal("period must be one of day, month, week; got year", err.message)
      assert.has_error(function() c:usage(7) end,
                       "chatmaid: usage expects period as a string (got number)")
    end)
  end)

  describe("error kinds", function()
    it("auth for a key the server does not know", function()
      local bad = F.client(sb, { api_key = "sk_test_not_a_real_key_000" })
      local _, err = bad:account()
      assert.equal("auth", err.kind)
      assert.equal(401, err.status)
      assert.equal("Unauthorized", err.error)
      assert.same({ "Invalid API key" }, { err.messages[1] })
      assert.equal("/v1/account", err.path)
      assert.falsy(tostring(err):find("sk_test_not_a_real_key_000", 1, true))
      bad:close()
    end)

    it("permission for a key without the scope", function()
      local ro = F.client(sb, { api_key = F.READONLY_KEY })
      local _, err = ro:send{ from = F.PHONE, to = "+15557654321", content = "x" }
      assert.equal("permission", err.kind)
      assert.equal(403, err.status)
      assert.is_false(err.retryable)
      ro:close()
    end)

    it("invalid_request for a 400 the server found", function()
      local live = F.client(sb, { api_key = F.LIVE_KEY })
      local _, err = live:send{ from = F.PHONE_DISCONNECTED, to = "+15557654321", content = "x" }
      assert.equal("invalid_request", err.kind)
      assert.equal(400, err.status)
      assert.equal("Bad Request", err.error)
      assert.truthy(#err.messages >= 1)
      live:close()
    end)

    it("rate_limited with retry_after when the key's limit is hit", function()
      sb:config{ rate_limit = 2 }
      local rl = F.client(sb, { max_retries = 0 })
      assert(rl:account())
      assert(rl:account())
      local _, err = rl:account()
      sb:config{ rate_limit = false }
      assert.equal("rate_limited", err.kind)
      assert.equal(429, err.status)
      assert.is_number(err.retry_after)
      assert.truthy(err.retry_after >= 1 and err.retry_after <= 60)
      assert.is_true(err.retryable)
      rl:close()
    end)
  end)

  describe("connections", function()
    it("reuses one kept-alive connection for many requests", function()
      local before = sb:stats().connectionsAccepted
      local fresh = F.client(sb)
      for _ = 1, 20 do assert(fresh:account()) end
      assert(fresh:send{ from = F.PHONE, to = "+15557654321", content = "x" })
      assert(fresh:message(assert(fresh:list_messages{ limit = 1 }).data[1].id))
      -- the stats call itself opens one connection (LuaSocket, no keep-alive)
      assert.equal(before + 2, sb:stats().connectionsAccepted)
      assert.equal(1, fresh.transport:stats().connects)
      assert.equal(23, fresh.transport:stats().requests)
      fresh:close()
    end)
  end)

  describe("close()", function()
    it("is idempotent and makes every method raise", function()
      local x = F.client(sb)
      assert.is_true(x:close())
      assert.is_true(x:close())
      assert.has_error(function() x:account() end,
                       "chatmaid: attempt to use a closed client (account)")
      assert.has_error(function() x:send{ to = "+1555", content = "x" } end,
                       "chatmaid: attempt to use a closed client (send)")
      assert.equal("chatmaid.client (test, " .. sb.url .. ", closed)", tostring(x))
    end)

    it("closes a to-be-closed variable on scope exit (Lua 5.4)", function()
      if _VERSION ~= "Lua 5.4" then return pending("<close> needs Lua 5.4") end
      local chunk = assert(load([[
        local new, url, key = ...
        local kept
        do
          local c <close> = assert(new{ api_key = key, base_url = url })
          kept = c
        end
        return kept
      ]]))
      local kept = chunk(chatmaid.new, sb.url, F.TEST_KEY)
      assert.is_true(kept.closed)
      assert.has_error(function() kept:account() end,
                       "chatmaid: attempt to use a closed client (account)")
    end)

    it("lets an unclosed client be garbage collected with its session", function()
      local weak = setmetatable({}, { __mode = "v" })
      do
        local x = F.client(sb)
        assert(x:account())
        weak.client, weak.session = x, x.transport.session
      end
      collectgarbage()
      collectgarbage()
      assert.is_nil(weak.client)
      assert.is_nil(weak.session)
    end)
  end)
end)
