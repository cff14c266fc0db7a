-- SPDX-License-Identifier: MIT
-- The Redis rate limiter under time and Redis faults (issue 23 items 5 and 4):
-- (5) a slot is a moment: a worker process and this one share one limiter at the
--     sandbox's exact limit; the worker is SIGSTOPped while it sleeps towards its booked
--     slot and wakes after it: the API never answers 429;
-- (4) with Redis SIGSTOPped, send_batch honours should_stop, the CLI honours SIGINT, and
--     the limiter gives up after max_outage instead of retrying forever.
local F = require "spec.support.fixtures"
local rh = require "spec.support.redis_helper"
local workers = require "spec.support.workers"
local R = require "spec.cli.run"
local redis = require "chatmaid.redis"
local conn = require "chatmaid.redis.conn"
local core = require "chatmaid.core"
local socket = require "socket"

describe("chatmaid.redis.rate_limiter faults #integration #redis", function()
  local srv = rh.serve()

  describe("a paused worker", function()
    local sb = F.block_sandbox{ config = { rate_limit = 10, rate_window = 1 } }
    -- margin 1 s: the API's window and ours may disagree by the requests' latency on a
    -- loaded machine; slot_grace is then 0.25 s
    local LIMIT = { limit = 10, burst = 10, window = 1, margin = 1, key = "paused-spec" }

    -- a worker process: once the go file exists, one send through the shared limiter
    local WORKER = [[
      local chatmaid = require "chatmaid"
      local redis = require "chatmaid.redis"
      local url, base, go = ...
      local c = assert(chatmaid.new{ api_key = "sk_test_sandbox_0000000000000001",
                                     base_url = base, timeout = 10 })
      local lim = redis.rate_limiter{ url = url, key = "paused-spec", limit = 10, burst = 10,
                                      window = 1, margin = 1 }
      io.stdout:setvbuf("line")
      print("started")
      while not io.open(go) do require("chatmaid.core").sleep(0.005) end
      local _, sum = c:send_batch({ { from = "ph_primary", to = "+15557990001",
                                      content = "late" } },
                                  { rate_limiter = lim, max_retries = 3 })
      print(string.format("sent=%d failed=%d rate_limited=%d", sum.sent, sum.failed,
                          sum.rate_limited))
    ]]

    -- Timeline (starts per 1 s window, bursts of 10, window + margin = 2 s apart):
    --   T0    this process starts 10;
    --   T0+   the worker books its slot: T0+2 (with 9 of this process's), then is
    --         SIGSTOPped for 3.2 s and wakes at about T0+3.5, well after its slot;
    --   T0+4  the next 10 of this process (booked behind the T0+2 burst).
    -- A worker that starts on its stale slot at T0+3.5 puts 11 starts in [T0+3.5, T0+4.5]:
    -- the API answers 429. A worker that books again starts at T0+6.
    it("SIGSTOP of a worker holding a slot never makes the API see more than the limit",
       function()
      local go = os.tmpname()
      os.remove(go)
      local w = workers.spawn(WORKER, { srv.url, sb.url, go })
      finally(function()
        os.execute("kill -CONT " .. w.pid .. " 2>/dev/null")
        if w.pipe then w:kill9() w:reap() end
        os.remove(go)
      end)
      assert.equal("started", w.pipe:read("*l"))
      local o = { url = srv.url }
      for k, v in pairs(LIMIT) do o[k] = v end
      local lim = redis.rate_limiter(o)
      local items = {}
      for i = 1, 29 do
        items[i] = { from = F.PHONE, to = string.format("+1555799%04d", i), content = "p" }
      end
      local c = F.client(sb, { sleep = core.sleep })
      local _, sum = c:send_batch(items, { rate_limiter = lim, concurrency = 10,
        max_retries = 3,
        on_progress = function(done)
          if done == 10 then
            assert(io.open(go, "w")):close()
            os.execute("(sleep 0.3; kill -STOP " .. w.pid .. "; sleep 3.2; kill -CONT " .. w.pid
                       .. ") >/dev/null 2>&1 &")
          end
        end })
      local out = w:wait()
      c:close()
      assert.equal(29, sum.sent)
      assert.equal(0, sum.rate_limited)
      assert.truthy(out:find("sent=1 failed=0 rate_limited=0", 1, true), out)
      local st = sb:stats()
      assert.equal(0, st.rateLimited)
      assert.equal(30, st.messagesCreated)
    end)
  end)

  -- Every test here needs redis-server stopped from its before_each to its end: pause()
  -- waits until the kernel shows it stopped, and still_stopped() checks it at the end. A
  -- stopped Redis answers nothing, so no take() can succeed; the one way a batch here gets
  -- its slots is a SIGCONT from outside the spec (CI saw it once: test 2's batch sent its
  -- items, tests 1 and 3 around it saw Redis stopped; a kill -CONT of the server 0.1 s into
  -- test 2 gives exactly that failure). still_stopped() names that cause instead of letting
  -- it read as the limiter's.
  describe("Redis stopped", function()
    local sb = F.block_sandbox({ rate_limit = false }, { reset = false })
    before_each(function() srv:pause() end)
    after_each(function() srv:resume() end)

    local function still_stopped(what)
      local conns = {}
      for shown, st in pairs(conn.stats()) do
        conns[#conns + 1] = shown .. " open=" .. st.open .. " idle=" .. st.idle
      end
      assert(srv:stopped(), "redis-server (pid " .. tostring(srv.pid) .. ") was continued "
             .. "during the test by a signal from outside the spec, so Redis answered: this "
             .. "run says nothing about the product (" .. what .. "; connections: "
             .. table.concat(conns, ", ") .. ")")
    end

    -- a batch result for a failure message: what each item got
    local function got(res, err)
      local out = {}
      for i, r in ipairs(res or (err and err.results) or {}) do
        out[i] = i .. ": " .. (r.message and ("sent " .. tostring(r.message.id))
                               or tostring(r.err))
      end
      return table.concat(out, "; ")
    end

    local function items(n, p)
      local t = {}
      for i = 1, n do
        t[i] = { from = F.PHONE, to = string.format("+155578%d%04d", p, i), content = "s" }
      end
      return t
    end

    it("send_batch with should_stop returns within 1.5 s (stop at 0.5 s)", function()
      local lim = redis.rate_limiter{ url = srv.url, key = "stopped-spec", per_minute = 600,
                                      timeout = 0.3 }
      local c = F.client(sb, { sleep = core.sleep })
      local t0 = socket.gettime()
      local res, err = c:send_batch(items(5, 1), { rate_limiter = lim,
        should_stop = function() return socket.gettime() - t0 > 0.5 and "enough" or nil end })
      local took = socket.gettime() - t0
      still_stopped("after the batch")
      assert.is_nil(res, got(res, err))
      assert.equal("interrupted", err.kind)
      assert.equal("stop", err.reason)
      assert.equal(5, err.summary.interrupted)
      assert.truthy(took < 1.5, took)
      c:close()
    end)

    it("the limiter gives up after max_outage: the batch stops with the Redis error",
       function()
      local lim = redis.rate_limiter{ url = srv.url, key = "stopped-spec", per_minute = 600,
                                      timeout = 0.2, max_outage = 0.6 }
      local c = F.client(sb, { sleep = core.sleep })
      local t0 = socket.gettime()
      local res, err = c:send_batch(items(3, 2), { rate_limiter = lim })
      local took = socket.gettime() - t0
      still_stopped("after the batch")
      assert.is_nil(res, got(res, err))
      assert.equal("interrupted", err.kind)
      assert.equal("limiter", err.reason)
      assert.equal("transport", err.cause.kind)
      assert.truthy(err.message:find("the rate limiter failed: chatmaid transport: redis:", 1,
                                     true), err.message)
      assert.truthy(err.message:find("max_outage", 1, true), err.message)
      assert.truthy(took < 2, took)
      -- take() alone: nil, err after max_outage, not forever
      local w, terr = lim:take()
      still_stopped("after take()")
      assert.is_nil(w, "take() got a slot: wait " .. tostring(w))
      assert.equal("transport", terr.kind)
      c:close()
    end)

    it("chatmaid batch --redis exits on SIGINT within 1 s (130)", function()
      local dir = os.tmpname()
      local file = dir .. ".csv"
      R.write(file, "to,content\n+15557900001,a\n+15557900002,b\n")
      local env = R.env(sb)
      env.LUA_PATH, env.LUA_CPATH = package.path, package.cpath
      local cmd = "exec " .. R.env_prefix(env) .. " " .. R.LUA .. " " .. R.BIN
                  .. " batch " .. file .. " --from ph_primary --redis " .. srv.url
                  .. " --out " .. dir .. ".out.csv"
      -- the inner shell prints its pid and execs the CLI; the outer one reports its status
      local inner = "sh -c " .. R.quote("echo $$; " .. cmd .. " 2>&1")
      local p = assert(io.popen("sh -c " .. R.quote(inner .. "; echo rc=$?")))
      local pid = tonumber(p:read("*l"))
      socket.sleep(0.8)       -- it is waiting for Redis now
      local t0 = socket.gettime()
      os.execute("kill -INT " .. pid)
      local out = p:read("*a")
      local took = socket.gettime() - t0
      p:close()
      os.remove(dir) os.remove(file) os.remove(dir .. ".out.csv")
      os.remove(dir .. ".out.csv.journal")
      still_stopped("after the CLI exited")
      assert.truthy(took < 1, took .. "\n" .. out)
      assert.truthy(out:find("rc=130", 1, true), out)
    end)
  end)
end)
