local retry = require "chatmaid.retry"
local errors = require "chatmaid.errors"

describe("chatmaid.retry", function()
  local function one() return 1 end
  local function zero() return 0 end

  describe("backoff()", function()
    it("doubles from 0.5 s", function()
      assert.same({ 0.5, 1, 2, 4 }, { retry.backoff(1, one), retry.backoff(2, one),
                                     retry.backoff(3, one), retry.backoff(4, one) })
    end)
    it("caps the delay at 8 s", function()
      assert.equal(8, retry.backoff(5, one))
      assert.equal(8, retry.backoff(30, one))
    end)
    it("jitters down to half the delay", function()
      assert.equal(0.25, retry.backoff(1, zero))
      assert.equal(4, retry.backoff(10, zero))
    end)
  end)

  describe("decide()", function()
    local function err(kind, f) return errors.new(kind, "x", f) end
    it("stops for kinds that are not retryable", function()
      for _, k in ipairs{ "validation", "auth", "permission", "not_found", "invalid_request",
                          "decode" } do
        assert.equal("stop", (retry.decide(err(k), 1, 5, 60, one)))
      end
    end)
    it("retries server, timeout, transport and rate_limited while attempts remain", function()
      for _, k in ipairs{ "server", "timeout", "transport" } do
        assert.same({ "retry", 0.5 }, { retry.decide(err(k), 1, 2, 60, one) })
        assert.same({ "retry", 1 }, { retry.decide(err(k), 2, 2, 60, one) })
        assert.equal("stop", (retry.decide(err(k), 3, 2, 60, one)))
      end
    end)
    it("never retries with max_retries = 0", function()
      assert.equal("stop", (retry.decide(err("server"), 1, 0, 60, one)))
    end)
    it("honours retry_after on 429 and 503", function()
      assert.same({ "retry", 7 }, { retry.decide(err("rate_limited", { status = 429,
        retry_after = 7 }), 1, 2, 60, one) })
      assert.same({ "retry", 3 }, { retry.decide(err("server", { status = 503,
        retry_after = 3 }), 1, 2, 60, one) })
    end)
    it("gives up at once when retry_after is over max_retry_wait", function()
      assert.equal("give_up_wait", (retry.decide(err("rate_limited", { status = 429,
        retry_after = 3600 }), 1, 2, 60, one)))
    end)
    it("waits at least a second on a 429 without a hint", function()
      assert.same({ "retry", 1 }, { retry.decide(err("rate_limited", { status = 429 }), 1, 2,
                                                 60, zero) })
    end)
    it("does not retry TLS failures", function()
      assert.equal("stop", (retry.decide(err("transport", { retryable = false }), 1, 2, 60, one)))
    end)
  end)

  describe("parse_retry_after()", function()
    it("reads delay-seconds", function()
      assert.equal(120, retry.parse_retry_after("120"))
      assert.equal(5, retry.parse_retry_after(" 5 "))
    end)
    it("reads an HTTP-date relative to now", function()
      local now = os.time()
      local date = os.date("!%a, %d %b %Y %H:%M:%S GMT", now + 30)
      local s = retry.parse_retry_after(date, now)
      assert.truthy(s >= 29 and s <= 31, s)
    end)
    it("ignores garbage", function()
      assert.is_nil(retry.parse_retry_after("soon"))
      assert.is_nil(retry.parse_retry_after(nil))
      assert.is_nil(retry.parse_retry_after("-5"))
    end)
  end)
end)
