-- The fault matrix: every way the network or the server can fail, each with its exact kind,
-- how often it was retried (counted server side) and, for sends, no duplicate message.
local F = require "spec.support.fixtures"
local core = require "chatmaid.core"

local SEND = "/v1/messages/send"
local ACCOUNT = "/v1/account"

describe("fault matrix #integration", function()
  local sb = F.block_sandbox{ rate_limit = false }

  local function count(method, path)
    return sb:stats().byPath[method .. " " .. path] or 0
  end

  local function send(c)
    return c:send{ from = F.PHONE, to = "+15557654321", content = "fault test" }
  end

  -- A client whose sleeps are recorded, with jitter pinned to the full delay.
  local function client(opts)
    local o = { random = function() return 1 end }
    for k, v in pairs(opts or {}) do o[k] = v end
    return F.client(sb, o)
  end

  describe("transport failures", function()
    it("connection refused: transport/connect, retried max_retries times", function()
      local port = sb.port
      local dead = assert(require("chatmaid").new{ api_key = F.TEST_KEY,
        base_url = "http://127.0.0.1:1", sleep = function() end })
      local _, err = dead:account()
      assert.equal("transport", err.kind)
      assert.equal("connect", err.reason)
      assert.equal(3, err.attempts)
      assert.is_true(err.retryable)
      assert.truthy(err.message:find("could not connect", 1, true))
      dead:close()
      assert.equal(port, sb.port)
    end)

    it("unresolvable host: transport/resolve", function()
      local c = assert(require("chatmaid").new{ api_key = F.TEST_KEY, max_retries = 0,
        base_url = "https://api.chatmaid.invalid" })
      local _, err = c:account()
      assert.equal("transport", err.kind)
      assert.equal("resolve", err.reason)
      assert.equal(1, err.attempts)
      c:close()
    end)

    it("reset before the response: retried; the send is created once", function()
      sb:fault{ path = SEND, type = "reset_before", count = 1 }
      local c, sleeps = client()
      local m, err = send(c)
      assert.is_nil(err)
      assert.equal("sent", m.status)
      assert.equal(2, count("POST", SEND))
      assert.equal(1, sb:stats().messagesCreated)
      assert.same({ 0.5 }, sleeps)
      c:close()
    end)

    it("reset before the response, every time: transport after 3 attempts, key returned",
       function()
      sb:fault{ path = SEND, type = "reset_before", count = 3 }
      local c, sleeps = client()
      local m, err = send(c)
      assert.is_nil(m)
      assert.equal("transport", err.kind)
      assert.equal(3, err.attempts)
      assert.equal(3, count("POST", SEND))
      assert.same({ 0.5, 1 }, sleeps)
      assert.equal(1, sb:stats().messagesCreated)
      -- the key lets the caller retry safely by hand
      local again = assert(c:send{ from = F.PHONE, to = "+15557654321", content = "fault test",
                                   idempotency_key = err.idempotency_key })
      assert.equal(1, sb:stats().messagesCreated)
      assert.equal(err.idempotency_key, again.idempotencyKey)
      c:close()
    end)

    for _, t in ipairs{ "reset_mid_body", "short_body", "truncated_chunked" } do
      it(t .. ": transport, retried, no duplicate", function()
        sb:fault{ path = SEND, type = t, count = 1 }
        local c = client()
        local m = assert(send(c))
        assert.truthy(m.id)
        assert.equal(2, count("POST", SEND))
        assert.equal(1, sb:stats().messagesCreated)
        c:close()
      end)

      it(t .. " with no retries: transport", function()
        sb:fault{ path = ACCOUNT, type = t, count = 1 }
        local c = client{ max_retries = 0 }
        local _, err = c:account()
        assert.equal("transport", err.kind)
        assert.equal(1, err.attempts)
        assert.equal(1, count("GET", ACCOUNT))
        c:close()
      end)
    end
  end)

  describe("server answers", function()
    it("500 with an HTML body: server, retried", function()
      sb:fault{ path = ACCOUNT, type = "html_500", count = 3 }
      local c, sleeps = client()
      local _, err = c:account()
      assert.equal("server", err.kind)
      assert.equal(500, err.status)
      assert.equal(3, err.attempts)
      assert.truthy(err.message:find("HTML", 1, true))
      assert.equal(3, count("GET", ACCOUNT))
      assert.same({ 0.5, 1 }, sleeps)
      c:close()
    end)

    it("502 JSON: server, retried, then success", function()
      sb:fault{ path = SEND, type = "json_502", count = 1 }
      local c = client()
      assert(send(c))
      assert.equal(2, count("POST", SEND))
      assert.equal(1, sb:stats().messagesCreated)
      c:close()
    end)

    it("503 then success", function()
      sb:fault{ path = ACCOUNT, type = "json_503", count = 1 }
      local c = client()
      assert.equal("Sandbox Inc", assert(c:account()).name)
      assert.equal(2, count("GET", ACCOUNT))
      c:close()
    end)

    it("429 with retryAfter 1, then success: waits 1 s", function()
      sb:fault{ path = SEND, type = "rate_limit", retry_after = 1, count = 1 }
      local c, sleeps = client()
      assert(send(c))
      assert.same({ 1 }, sleeps)
      assert.equal(2, count("POST", SEND))
      assert.equal(1, sb:stats().messagesCreated)
      c:close()
    end)

    it("429 with retryAfter 3600: rate_limited at once with retry_after", function()
      sb:fault{ path = SEND, type = "rate_limit", retry_after = 3600, count = 1 }
      local c, sleeps = client()
      local _, err = send(c)
      assert.equal("rate_limited", err.kind)
      assert.equal(3600, err.retry_after)
      assert.equal(1, err.attempts)
      assert.same({}, sleeps)
      assert.equal(1, count("POST", SEND))
      assert.equal(0, sb:stats().messagesCreated)
      c:close()
    end)

    it("429 within a larger max_retry_wait is waited for", function()
      sb:fault{ path = ACCOUNT, type = "rate_limit", retry_after = 90, count = 1 }
      local c, sleeps = client{ max_retry_wait = 120 }
      assert(c:account())
      assert.same({ 90 }, sleeps)
      c:close()
    end)

    it("invalid JSON in a 200: decode, not retried", function()
      sb:fault{ path = ACCOUNT, type = "invalid_json", count = 1 }
      local c = client()
      local _, err = c:account()
      assert.equal("decode", err.kind)
      assert.equal(200, err.status)
      assert.truthy(err.message:find("invalid JSON", 1, true))
      assert.equal(1, count("GET", ACCOUNT))
      c:close()
    end)

    it("empty 200: decode", function()
      sb:fault{ path = ACCOUNT, type = "empty_200", count = 1 }
      local c = client()
      local _, err = c:account()
      assert.equal("decode", err.kind)
      assert.truthy(err.message:find("empty body", 1, true))
      c:close()
    end)

    it("200 with success:false: server, not retried", function()
      sb:fault{ path = ACCOUNT, type = "success_false_200", count = 1 }
      local c = client()
      local _, err = c:account()
      assert.equal("server", err.kind)
      assert.equal(200, err.status)
      assert.is_false(err.retryable)
      assert.equal(1, count("GET", ACCOUNT))
      c:close()
    end)

    for _, chunked in ipairs{ false, true } do
      it("a body over max_body (" .. (chunked and "chunked" or "Content-Length")
         .. "): transport/too_large, not retried", function()
        sb:fault{ path = ACCOUNT, type = "huge_body", size = 3 * 1024 * 1024,
                  chunked = chunked, count = 1 }
        local c = client{ max_body = 1024 * 1024 }
        local _, err = c:account()
        assert.equal("transport", err.kind)
        assert.equal("too_large", err.reason)
        assert.is_false(err.retryable)
        assert.equal(1, count("GET", ACCOUNT))
        assert.truthy(err.message:find("1048576 byte limit", 1, true))
        c:close()
      end)
    end
  end)

  describe("timeouts", function()
    it("a server that never answers: timeout within the configured time", function()
      sb:fault{ path = ACCOUNT, type = "never_answer", count = 1 }
      local c = client{ timeout = 1, max_retries = 0 }
      local t0 = core.monotime()
      local _, err = c:account()
      local elapsed = core.monotime() - t0
      assert.equal("timeout", err.kind)
      assert.is_true(err.retryable)
      assert.truthy(elapsed >= 0.9 and elapsed < 1.8, "elapsed " .. elapsed)
      c:close()
    end)

    it("a trickling server: timeout within the configured time", function()
      sb:fault{ path = ACCOUNT, type = "trickle", count = 1 }
      local c = client{ timeout = 1.5, max_retries = 0 }
      local t0 = core.monotime()
      local _, err = c:account()
      local elapsed = core.monotime() - t0
      assert.equal("timeout", err.kind)
      assert.truthy(elapsed >= 1.4 and elapsed < 2.3, "elapsed " .. elapsed)
      c:close()
    end)

    it("a send that timed out after the server took it is retried without a duplicate",
       function()
      sb:fault{ path = SEND, type = "delay", seconds = 1.5, count = 1 }
      local c = client{ timeout = 0.5 }
      local m = assert(send(c))
      assert.equal(2, count("POST", SEND))
      assert.equal(1, sb:stats().messagesCreated)
      assert.truthy(m.id)
      c:close()
    end)

    it("per-call options override the client's", function()
      sb:fault{ path = ACCOUNT, type = "json_503", count = 5 }
      local c = client()
      local _, err = c:account{ max_retries = 0 }
      assert.equal(1, err.attempts)
      _, err = c:account{ max_retries = 3 }
      assert.equal(4, err.attempts)
      assert.has_error(function() c:account{ max_retries = -1 } end,
                       "chatmaid: account: max_retries must be a non-negative integer")
      c:close()
    end)
  end)

  describe("never retried", function()
    for _, case in ipairs{ { "auth", "sk_test_unknown_key_00000" },
                           { "permission", F.READONLY_KEY } } do
      it(case[1] .. " errors are returned after one attempt", function()
        local c = client{ api_key = case[2] }
        local _, err = c:send{ from = F.PHONE, to = "+15557654321", content = "x" }
        assert.equal(case[1], err.kind)
        assert.equal(1, err.attempts)
        assert.equal(1, count("POST", SEND))
        c:close()
      end)
    end

    it("validation errors make no request", function()
      local c = client()
      local _, err = c:send{ from = F.PHONE, to = "nope", content = "x" }
      assert.equal("validation", err.kind)
      assert.equal(0, count("POST", SEND))
      c:close()
    end)
  end)

  describe("hooks", function()
    it("report every attempt without the API key", function()
      sb:fault{ path = SEND, type = "json_503", count = 1 }
      local seen = {}
      local function record(tag)
        return function(info)
          local copy = { tag = tag }
          for k, v in pairs(info) do copy[k] = v end
          seen[#seen + 1] = copy
        end
      end
      local c = client{ on_request = record("req"), on_response = record("res") }
      local m = assert(c:send{ from = F.PHONE, to = "+15557654321", content = "x",
                               idempotency_key = "hook-key-1" })
      assert.equal(4, #seen)
      assert.same({ "req", "res", "req", "res" },
                  { seen[1].tag, seen[2].tag, seen[3].tag, seen[4].tag })
      assert.equal(503, seen[2].status)
      assert.equal("server", seen[2].kind)
      assert.equal(201, seen[4].status)
      assert.is_nil(seen[4].kind)
      assert.equal(2, seen[4].attempt)
      assert.equal("hook-key-1", seen[3].idempotency_key)
      assert.equal("POST", seen[1].method)
      assert.equal(SEND, seen[1].path)
      assert.is_number(seen[4].elapsed)
      for _, info in ipairs(seen) do
        for k, v in pairs(info) do
          assert.falsy(type(v) == "string" and v:find(F.TEST_KEY, 1, true), k)
        end
      end
      local last = c:last_response()
      assert.equal(201, last.status)
      assert.equal(2, last.attempt)
      assert.equal("application/json", last.headers["content-type"]:match("^[^;]+"))
      assert.equal(m.idempotencyKey, "hook-key-1")
      c:close()
    end)
  end)
end)

describe("TLS #integration", function()
  local dir, pid, port

  local function sh(cmd)
    local ok = os.execute(cmd)
    return ok == true or ok == 0
  end

  setup(function()
    dir = os.tmpname()
    os.remove(dir)
    assert(sh("mkdir -p " .. dir .. "/v1"))
    assert(sh("openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj /CN=127.0.0.1 "
              .. "-addext subjectAltName=IP:127.0.0.1 -keyout " .. dir .. "/key.pem -out "
              .. dir .. "/cert.pem >/dev/null 2>&1"))
    local f = assert(io.open(dir .. "/v1/account", "wb"))
    local body = '{"success":true,"data":{"accountId":"acc_tls","name":"TLS Inc"}}'
    f:write("HTTP/1.0 200 OK\r\nContent-Type: application/json\r\nContent-Length: " .. #body
            .. "\r\n\r\n" .. body)
    f:close()
    local s = assert(require("socket").bind("127.0.0.1", 0))
    port = select(2, s:getsockname())
    s:close()
    local p = assert(io.popen("cd " .. dir .. " && exec openssl s_server -quiet -HTTP -accept "
                              .. port .. " -cert cert.pem -key key.pem >/dev/null 2>&1 & echo $!"))
    pid = p:read("*l")
    p:close()
    -- wait until it accepts
    for _ = 1, 50 do
      local c = require("socket").connect("127.0.0.1", port)
      if c then c:close() break end
      require("chatmaid.core").sleep(0.1)
    end
  end)

  teardown(function()
    if pid then os.execute("kill " .. pid .. " 2>/dev/null") end
    if dir then os.execute("rm -rf " .. dir) end
  end)

  it("refuses a certificate it does not trust: transport/tls, not retried", function()
    local c = assert(require("chatmaid").new{ api_key = F.TEST_KEY,
      base_url = "https://127.0.0.1:" .. port, sleep = function() error("no retry expected") end })
    local _, err = c:account()
    assert.equal("transport", err.kind)
    assert.equal("tls", err.reason)
    assert.is_false(err.retryable)
    assert.equal(1, err.attempts)
    assert.truthy(err.message:find("ca_file", 1, true))
    c:close()
  end)

  it("trusts a private CA given as ca_file", function()
    local c = assert(require("chatmaid").new{ api_key = F.TEST_KEY, max_retries = 0,
      base_url = "https://127.0.0.1:" .. port, ca_file = dir .. "/cert.pem" })
    local a, err = c:account()
    assert.is_nil(err)
    assert.equal("TLS Inc", a.name)
    c:close()
  end)
end)
