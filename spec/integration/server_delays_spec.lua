-- Issue 13 item 4: every delay a server supplies is clamped before anything sleeps on it.
-- Retry-After: 0 must not turn a retry or client:wait into a busy loop, and a negative
-- retryAfter must never reach sleep() (which raises on negative numbers): a send returns
-- nil, err with its idempotency key. Real sockets against the sandbox's faults; most specs
-- record sleeps instead of sleeping, and one per behaviour really sleeps.
local F = require "spec.support.fixtures"
local core = require "chatmaid.core"
local retry = require "chatmaid.retry"
local poll = require "chatmaid.poll"

local SEND = "/v1/messages/send"
local ACCOUNT = "/v1/account"

local function gets(sb, path)
  return sb:stats().byPath["GET " .. path] or 0
end

-- sleep as the core does (raises on a negative or NaN number), recorded, on a clock that
-- moves only when it sleeps
local function checked_clock_client(sb, opts)
  local t, sleeps = 1000, {}
  local o = { now = function() return t end,
              sleep = function(s)
                assert(type(s) == "number" and s == s and s >= 0, "bad sleep " .. tostring(s))
                sleeps[#sleeps + 1] = s
                t = t + s
              end,
              random = function() return 1 end }
  for k, v in pairs(opts or {}) do o[k] = v end
  return F.client(sb, o), sleeps
end

describe("server-supplied delays are clamped #integration", function()
  local sb = F.block_sandbox{ rate_limit = false }

  for _, ra in ipairs{ 0, -5 } do
    it("429 with retryAfter " .. ra .. ": retried after 1 s", function()
      sb:fault{ path = ACCOUNT, type = "rate_limit", retry_after = ra, count = 1 }
      local c, sleeps = checked_clock_client(sb)
      assert.truthy(c:account())
      assert.same({ 1 }, sleeps)
      assert.equal(2, gets(sb, ACCOUNT))
    end)

    it("503 with retryAfter " .. ra .. " on a send: retried after 1 s, one message", function()
      sb:fault{ path = SEND, type = "json_503", retry_after = ra, count = 1 }
      local c, sleeps = checked_clock_client(sb)
      local m, err = c:send{ from = F.PHONE, to = "+15557654321", content = "clamped" }
      assert.is_nil(err)
      assert.truthy(m.id)
      assert.same({ 1 }, sleeps)
      assert.equal(1, sb:stats().messagesCreated)
    end)

    it("429 with retryAfter " .. ra .. " past max_retries: nil, err with the key", function()
      sb:fault{ path = SEND, type = "rate_limit", retry_after = ra, count = 5 }
      local c, sleeps = checked_clock_client(sb, { max_retries = 1 })
      local m, err = c:send{ from = F.PHONE, to = "+15557654321", content = "x",
                             idempotency_key = "delay-key-" .. ra }
      assert.is_nil(m)
      assert.equal("rate_limited", err.kind)
      assert.equal("delay-key-" .. ra, err.idempotency_key)
      assert.equal(1, err.retry_after)
      assert.equal(2, err.attempts)
      assert.same({ 1 }, sleeps)
    end)
  end

  it("a negative retryAfter never reaches the real sleep (no raise)", function()
    sb:fault{ path = ACCOUNT, type = "rate_limit", retry_after = -3, count = 1 }
    local c = F.client(sb, { sleep = core.sleep })
    local t0 = core.monotime()
    local a, err = c:account()
    local dt = core.monotime() - t0
    assert.is_nil(err)
    assert.truthy(a)
    assert.truthy(dt >= 0.9, "waited " .. dt)
    c:close()
  end)

  it("Retry-After: 0 with a real clock: a retry waits a second, not zero", function()
    sb:fault{ path = ACCOUNT, type = "rate_limit", retry_after = 0, count = 2 }
    local c = F.client(sb, { sleep = core.sleep, max_retries = 2 })
    local t0 = core.monotime()
    assert.truthy(c:account())
    local dt = core.monotime() - t0
    assert.truthy(dt >= 1.9, "waited " .. dt)
    assert.equal(3, gets(sb, ACCOUNT))
    c:close()
  end)

  it("a retryAfter past max_retry_wait is returned at once, clamped to a day", function()
    sb:fault{ path = ACCOUNT, type = "rate_limit", retry_after = 10 ^ 12, count = 1 }
    local c, sleeps = checked_clock_client(sb)
    local _, err = c:account()
    assert.equal("rate_limited", err.kind)
    assert.equal(retry.MAX_SERVER_DELAY, err.retry_after)
    assert.same({}, sleeps)
  end)

  describe("client:wait", function()
    local function pending_message(c)
      assert(sb:config{ live_delay = 600 })
      local live = F.client(sb, { api_key = F.LIVE_KEY })
      local m = assert(live:send{ from = F.PHONE, to = "+15557654321", content = "wait" })
      live:close()
      return m, "/v1/messages/" .. m.id, c
    end

    it("429 with Retry-After 0 with a real clock: no busy loop, says it was rate limited",
      function()
        local c = F.client(sb, { api_key = F.LIVE_KEY, sleep = core.sleep, max_retries = 0 })
        local m, path = pending_message(c)
        sb:fault{ path = path, method = "GET", type = "rate_limit", retry_after = 0,
                  count = 100000 }
        local t0 = core.monotime()
        local got, err = c:wait(m.id, { timeout = 2.5, interval = 0.5 })
        local dt = core.monotime() - t0
        assert.is_nil(got)
        assert.equal("timeout", err.kind)
        -- at 1 s apart (the clamped Retry-After) in 2.5 s: 3 requests, never thousands
        local n = gets(sb, path)
        assert.truthy(n >= 2 and n <= 4, n .. " requests")
        assert.equal(n, err.requests)
        assert.truthy(dt >= 1.9 and dt < 10, "took " .. dt)
        assert.equal("rate_limited", err.last_error.kind)
        assert.equal(1, err.retry_after)
        assert.truthy(err.message:find("last response: rate limited, retry_after 1 s, HTTP 429",
                                       1, true), err.message)
        c:close()
      end)

    it("a negative retryAfter: sleeps at least the interval, never raises", function()
      local c, sleeps = checked_clock_client(sb, { api_key = F.LIVE_KEY })
      local m, path = pending_message(c)
      sb:fault{ path = path, method = "GET", type = "rate_limit", retry_after = -7,
                count = 1000 }
      local got, err = c:wait(m.id, { timeout = 10, interval = 2 })
      assert.is_nil(got)
      assert.equal("timeout", err.kind)
      assert.same({ 2, 2, 2, 2, 2 }, sleeps)
      assert.equal(6, gets(sb, path))
      assert.equal(429, err.last_error.status)
    end)

    it("never polls faster than the interval, even at the deadline", function()
      local c, sleeps = checked_clock_client(sb, { api_key = F.LIVE_KEY })
      local m, path = pending_message(c)
      local _, err = c:wait(m.id, { timeout = 5, interval = 2, max_interval = 2 })
      assert.equal("timeout", err.kind)
      -- 0, 2, 4: the deadline is 1 s away, closer than the interval: no request at 5
      assert.same({ 2, 2 }, sleeps)
      assert.equal(3, gets(sb, path))
      assert.equal("pending", err.last.status)
      assert.is_nil(err.last_error)
      assert.truthy(err.message:find("(last status: pending)", 1, true))
    end)

    it("has a request budget: a sleep that does not sleep cannot hammer the server", function()
      local c = F.client(sb, { api_key = F.LIVE_KEY, sleep = function() end })
      local m, path = pending_message(c)
      local t0 = core.monotime()
      local _, err = c:wait(m.id, { timeout = 30, interval = 1 })
      assert.equal("timeout", err.kind)
      assert.equal(poll.request_budget(30, 1), err.requests)
      assert.equal(32, gets(sb, path))
      assert.truthy(err.message:find("after 32 requests (max_requests)", 1, true), err.message)
      assert.truthy(core.monotime() - t0 < 20)
      local _, err2 = c:wait(m.id, { timeout = 30, max_requests = 3 })
      assert.equal(3, err2.requests)
      assert.equal(35, gets(sb, path))
      assert.has_error(function() c:wait(m.id, { max_requests = 0 }) end,
                       "chatmaid: wait: max_requests must be a positive integer")
    end)
  end)
end)

describe("retry policy with server delays #unit", function()
  local function err(status, ra)
    return { retryable = true, status = status, retry_after = ra }
  end
  local one = function() return 1 end

  it("server_delay clamps to [1, 86400] and drops what is not a number", function()
    assert.equal(1, retry.server_delay(0))
    assert.equal(1, retry.server_delay(-5))
    assert.equal(1, retry.server_delay(-math.huge))
    assert.equal(2.5, retry.server_delay(2.5))
    assert.equal(86400, retry.server_delay(math.huge))
    assert.is_nil(retry.server_delay(0 / 0))
    assert.is_nil(retry.server_delay("5"))
    assert.is_nil(retry.server_delay(nil))
  end)

  it("decide never returns a wait under 1 s for a server delay", function()
    for _, ra in ipairs{ 0, -1, -1e9, 0.001 } do
      for _, st in ipairs{ 429, 503 } do
        local action, wait = retry.decide(err(st, ra), 1, 2, 60, one)
        assert.equal("retry", action)
        assert.equal(1, wait)
      end
    end
    assert.equal("give_up_wait", (retry.decide(err(429, math.huge), 1, 2, 60, one)))
    assert.equal("give_up_wait", (retry.decide(err(429, 0), 1, 2, 0, one)))
    local action, wait = retry.decide(err(503, 0 / 0), 1, 2, 60, one)
    assert.equal("retry", action)
    assert.equal(0.5, wait)
  end)

  it("poll.pause is never under the interval", function()
    assert.equal(2, poll.pause(2))
    assert.equal(2, poll.pause(2, { kind = "rate_limited", retry_after = -4 }))
    assert.equal(1, poll.pause(0.2, { kind = "rate_limited", retry_after = 0 }))
    assert.equal(7, poll.pause(2, { kind = "rate_limited", retry_after = 7 }))
    assert.equal(2, poll.pause(2, { kind = "server", retry_after = 7 }))
  end)
end)
