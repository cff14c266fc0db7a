-- send_batch with a limiter shared across processes (chatmaid.resty's rate_limiter inside
-- nginx): every request start takes a slot from it, and a 429 pauses it for all sharers.
local F = require "spec.support.fixtures"

describe("send_batch rate_limiter #integration", function()
  local sb = F.block_sandbox{ rate_limit = false }

  -- A stand-in for the shared-dict bucket: one start every 0.5 s on a fake clock.
  local function fake_limiter(clock)
    local lim = { takes = 0, next_at = 0, pauses = {} }
    function lim:take(n)
      self.takes = self.takes + n
      local now = clock.t
      local at = math.max(now, self.next_at)
      self.next_at = at + 0.5 * n
      return at - now
    end
    function lim:pause_until(t) self.pauses[#self.pauses + 1] = t end
    return lim
  end

  local function items(n)
    local t = {}
    for i = 1, n do t[i] = { from = F.PHONE, to = "+1555765" .. string.format("%04d", i),
                             content = "m" .. i } end
    return t
  end

  it("takes one slot per request and waits as the shared limiter says", function()
    local clock = { t = 1000 }
    local lim = fake_limiter(clock)
    local c = F.client(sb, {
      now = function() return clock.t end,
      sleep = function(s) clock.t = clock.t + s end,
    })
    local results, summary = c:send_batch(items(6), { rate_limiter = lim, concurrency = 4 })
    for i = 1, 6 do assert.truthy(results[i].message, tostring(results[i].err)) end
    assert.equal(6, lim.takes)
    assert.equal(6, summary.requests)
    assert.equal(6, sb:stats().messagesCreated)
    -- six starts, 0.5 s apart: the last one at +2.5 s
    assert.truthy(clock.t >= 1002.5, clock.t)
    c:close()
  end)

  it("pauses the shared limiter after a 429", function()
    sb:fault{ path = "/v1/messages/send", type = "rate_limit", retry_after = 2, count = 1 }
    local clock = { t = 1000 }
    local lim = fake_limiter(clock)
    local c = F.client(sb, {
      now = function() return clock.t end,
      sleep = function(s) clock.t = clock.t + s end,
    })
    local results = c:send_batch(items(3), { rate_limiter = lim, concurrency = 1 })
    for i = 1, 3 do assert.truthy(results[i].message) end
    assert.equal(1, #lim.pauses)
    assert.equal(3, sb:stats().messagesCreated)
    c:close()
  end)

  it("raises when the limiter has no take method", function()
    local c = F.client(sb)
    assert.has_error(function() c:send_batch(items(1), { rate_limiter = {} }) end,
                     "chatmaid: send_batch: rate_limiter must have a take(n) method")
    c:close()
  end)
end)
