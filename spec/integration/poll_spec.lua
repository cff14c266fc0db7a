-- SPDX-License-Identifier: MIT
-- client:wait against the sandbox: live keys leave `pending` after live_delay seconds.
-- Most specs run on a fake clock (sleep advances now), so the waits cost no real time.
local F = require "spec.support.fixtures"
local core = require "chatmaid.core"

-- A client whose clock only moves when it sleeps.
local function fake_clock_client(sb, opts)
  local t, sleeps = 1000, {}
  local o = { now = function() return t end,
              sleep = function(s) sleeps[#sleeps + 1] = s; t = t + s end }
  for k, v in pairs(opts or {}) do o[k] = v end
  local c = F.client(sb, o)
  return c, sleeps
end

local function gets(sb, id)
  return sb:stats().byPath["GET /v1/messages/" .. id] or 0
end

local function send(c, to)
  return assert(c:send{ from = F.PHONE, to = to or "+15557654321", content = "hi" })
end

describe("client:wait() #integration", function()
  local sb = F.block_sandbox{ rate_limit = false, live_delay = 0.3 }

  before_each(function()
    assert(sb:config{ live_delay = 0.3 })
  end)

  it("waits on a live key until the message leaves pending (real clock)", function()
    local sleeps = {}
    local c = F.client(sb, { api_key = F.LIVE_KEY,
                             sleep = function(s) sleeps[#sleeps + 1] = s; core.sleep(s) end })
    local m = send(c)
    assert.are.equal("pending", m.status)
    local t0 = core.monotime()
    local got, err = c:wait(m.id, { interval = 0.1, timeout = 10 })
    local took = core.monotime() - t0
    assert.is_truthy(got, tostring(err))
    assert.are.equal("sent", got.status)
    assert.are.equal(m.id, got.id)
    assert.is_truthy(got.sentAt)
    assert.is_true(took >= 0.2 and took < 2, "took " .. took)
    -- intervals grow x1.5 from 0.1; one GET per check
    local want = 0.1
    for _, s in ipairs(sleeps) do
      assert.is_true(math.abs(s - want) < 1e-9)
      want = want * 1.5
    end
    assert.are.equal(#sleeps + 1, gets(sb, m.id))
    c:close()
  end)

  it("waits until a listed status: a live send to a failing number ends failed", function()
    local c = F.client(sb, { api_key = F.LIVE_KEY, sleep = core.sleep })
    local m = send(c, F.FAILING_RECIPIENT)
    local got = assert(c:wait(m.id, { interval = 0.1, ["until"] = { "sent", "failed" } }))
    assert.are.equal("failed", got.status)
    assert.are.equal("RECIPIENT_UNREACHABLE", got.errorCode)
    c:close()
  end)

  it("returns at once when the status is already final (test keys send at once)", function()
    local c, sleeps = fake_clock_client(sb)
    local m = send(c)
    local got = assert(c:wait(m.id))
    assert.are.equal("sent", got.status)
    assert.are.same({}, sleeps)
    assert.are.equal(1, gets(sb, m.id))
  end)

  it("times out with err.kind timeout and err.last, never sleeping past the deadline",
     function()
    assert(sb:config{ live_delay = 60 })
    local c, sleeps = fake_clock_client(sb, { api_key = F.LIVE_KEY })
    local m = send(c)
    local got, err = c:wait(m.id, { timeout = 20, interval = 1 })
    assert.is_nil(got)
    assert.are.equal("timeout", err.kind)
    assert.are.equal(m.id, err.last.id)
    assert.are.equal("pending", err.last.status)
    assert.are.equal(20, err.waited)
    assert.are.equal("message " .. m.id .. " did not reach the awaited status within 20 s "
                     .. "(last status: pending)", err.message)
    assert.are.same({ 1, 1.5, 2.25, 3.375, 5.0625, 6.8125 }, sleeps)
    assert.are.equal(7, gets(sb, m.id))
  end)

  it("caps the interval at 10 s (or max_interval)", function()
    assert(sb:config{ live_delay = 600 })
    local c, sleeps = fake_clock_client(sb, { api_key = F.LIVE_KEY })
    local m = send(c)
    local _, err = c:wait(m.id, { timeout = 45, interval = 4 })
    assert.are.equal("timeout", err.kind)
    assert.are.same({ 4, 6, 9, 10, 10, 6 }, sleeps)
    local _, sleeps2
    c, sleeps2 = fake_clock_client(sb, { api_key = F.LIVE_KEY })
    _, err = c:wait(m.id, { timeout = 10, interval = 2, max_interval = 3 })
    assert.are.equal("timeout", err.kind)
    assert.are.same({ 2, 3, 3, 2 }, sleeps2)
  end)

  it("on a 429 waits retry_after, then goes on", function()
    local c, sleeps = fake_clock_client(sb)
    local m = send(c)
    assert(sb:fault{ path = "/v1/messages/" .. m.id, method = "GET", type = "rate_limit",
                     retry_after = 7 })
    local got = assert(c:wait(m.id))
    assert.are.equal("sent", got.status)
    assert.are.same({ 7 }, sleeps)
    assert.are.equal(2, gets(sb, m.id))
  end)

  it("tries again after a retryable failure, up to max_retries in a row", function()
    local c, sleeps = fake_clock_client(sb, { max_retries = 2 })
    local m = send(c)
    assert(sb:fault{ path = "/v1/messages/" .. m.id, method = "GET", type = "json_503",
                     count = 2 })
    assert.are.equal("sent", assert(c:wait(m.id)).status)
    assert.are.same({ 1, 1 }, sleeps)
    assert(sb:fault{ path = "/v1/messages/" .. m.id, method = "GET", type = "json_502",
                     count = 3 })
    local got, err = c:wait(m.id)
    assert.is_nil(got)
    assert.are.equal("server", err.kind)
    assert.are.equal(502, err.status)
    assert.are.equal(6, gets(sb, m.id))
  end)

  it("returns not_found at once, without sleeping", function()
    local c, sleeps = fake_clock_client(sb)
    local got, err = c:wait("msg_does_not_exist")
    assert.is_nil(got)
    assert.are.equal("not_found", err.kind)
    assert.are.equal(404, err.status)
    assert.are.same({}, sleeps)
    assert.are.equal(1, gets(sb, "msg_does_not_exist"))
  end)

  it("accepts until_status as an alias of until", function()
    local c = fake_clock_client(sb)
    local m = send(c)
    assert.are.equal("sent", assert(c:wait(m.id, { until_status = "sent" })).status)
  end)

  it("returns a validation error for an empty id, sending nothing", function()
    local c = fake_clock_client(sb)
    local got, err = c:wait("")
    assert.is_nil(got)
    assert.are.equal("validation", err.kind)
    assert.are.equal("message id must be a non-empty string", err.message)
    assert.are.equal(0, sb:stats().requests)
  end)

  describe("raises on programmer errors", function()
    local c
    setup(function() c = fake_clock_client(sb) end)

    it("a non-string id", function()
      assert.has_error(function() c:wait(42) end,
        "chatmaid: wait expects a message id as a string (got number)")
    end)

    it("an unknown option", function()
      assert.has_error(function() c:wait("msg_1", { untill = "sent" }) end,
        "chatmaid: wait: unknown parameter 'untill' (did you mean 'until'?)")
    end)

    it("an unknown status in until", function()
      assert.has_error(function() c:wait("msg_1", { ["until"] = { "sent", "lost" } }) end,
        "chatmaid: wait: until must be one of delivered, failed, pending, read, sent; got lost")
    end)

    it("an empty until", function()
      assert.has_error(function() c:wait("msg_1", { ["until"] = {} }) end,
        "chatmaid: wait: until must name at least one status")
    end)

    it("both until and until_status", function()
      assert.has_error(function()
        c:wait("msg_1", { ["until"] = "sent", until_status = "sent" })
      end, "chatmaid: wait: pass either until or until_status, not both")
    end)

    it("a timeout that is not positive", function()
      assert.has_error(function() c:wait("msg_1", { timeout = 0 }) end,
        "chatmaid: wait: timeout must be a positive number")
    end)
  end)
end)
