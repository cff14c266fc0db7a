-- One account, many machines: worker processes coordinated through one redis-server
-- (spec/support/redis_helper.lua) against one sandbox. (a) a shared rate limiter; the
-- shared campaign is further down.
local F = require "spec.support.fixtures"
local rh = require "spec.support.redis_helper"
local workers = require "spec.support.workers"

-- Creation times (ms) of every message the sandbox holds, ascending.
local function created_ms(c)
  local msgs = assert(c:collect_messages{ max_items = 10000 })
  local out = {}
  for _, m in ipairs(msgs) do
    local y, mo, d, h, mi, s, ms =
      m.createdAt:match("^(%d+)%-(%d+)%-(%d+)T(%d+):(%d+):(%d+)%.(%d+)Z$")
    out[#out + 1] = os.time{ year = tonumber(y), month = tonumber(mo), day = tonumber(d),
                             hour = tonumber(h), min = tonumber(mi), sec = tonumber(s) } * 1000
                    + tonumber(ms)
  end
  table.sort(out)
  return out, msgs
end

-- The most starts in any window of `ms` milliseconds, as the sandbox counts: (t - ms, t].
local function max_in_window(times, ms)
  local best, lo = 0, 1
  for hi = 1, #times do
    while times[hi] - times[lo] >= ms do lo = lo + 1 end
    if hi - lo + 1 > best then best = hi - lo + 1 end
  end
  return best
end

describe("many machines through Redis #integration #redis", function()
  local srv = rh.serve()

  describe("(a) one rate limiter shared by 4 worker processes", function()
    local LIMIT, WINDOW, PER_WORKER = 8, 2, 5   -- 3 rounds of 8, window + margin (4 s) apart
    local sb = F.block_sandbox({ config = { rate_limit = LIMIT, rate_window = WINDOW } },
                               { reset = false })

    local WORKER = [[
      local chatmaid = require "chatmaid"
      local redis = require "chatmaid.redis"
      local url, base, w, n, limit, window = ...
      local lim = redis.rate_limiter{ url = url, key = "sk_test_sandbox_0000000000000001",
                                      per_minute = tonumber(limit), window = tonumber(window),
                                      margin = 2 }   -- generous: the machine is loaded
      local c = assert(chatmaid.new{ api_key = "sk_test_sandbox_0000000000000001",
                                     base_url = base, timeout = 10 })
      local items = {}
      for i = 1, tonumber(n) do
        items[i] = { from = "ph_primary", to = string.format("+1555%03d%04d", tonumber(w), i),
                     content = "worker " .. w .. " item " .. i }
      end
      local _, sum = c:send_batch(items, { rate_limiter = lim, concurrency = 4 })
      print(string.format("sent=%d rate_limited=%d", sum.sent, sum.rate_limited))
    ]]

    it("the sandbox never counts more than the limit in a window, and answers no 429",
       function()
      local procs = {}
      for w = 1, 4 do
        procs[w] = workers.spawn(WORKER, { srv.url, sb.url, w, PER_WORKER, LIMIT, WINDOW })
      end
      for w = 1, 4 do
        local out = procs[w]:wait()
        assert.truthy(out:find("sent=" .. PER_WORKER .. " rate_limited=0", 1, true), out)
      end
      local stats = sb:stats()
      assert.equal(4 * PER_WORKER, stats.messagesCreated)
      assert.equal(0, stats.rateLimited)
      sb:config{ rate_limit = false }   -- so that listing the messages is not limited
      local c = F.client(sb)
      local times = created_ms(c)
      c:close()
      assert.equal(4 * PER_WORKER, #times)
      local most = max_in_window(times, WINDOW * 1000)
      assert.truthy(most <= LIMIT, most)
      -- and the limit was really the bottleneck: 20 starts at 8 per window take > 2 windows
      assert.truthy(times[#times] - times[1] >= 2 * WINDOW * 1000, times[#times] - times[1])
    end)
  end)
end)
