-- SPDX-License-Identifier: MIT
-- Tasks (client:spawn/step/timeout/fds, task:done/result/cancel/on_done) against the sandbox:
-- the guarantees of the README section "Games and apps: non-blocking use".
local F = require "spec.support.fixtures"
local core = require "chatmaid.core"
local conversations = require "chatmaid.conversations"


-- Steps until no task runs (or `limit` seconds pass); returns the worst step() time.
local function drive(c, limit)
  local deadline = core.monotime() + (limit or 20)
  local worst = 0
  while core.monotime() < deadline do
    local t0 = core.monotime()
    local left = c:step(0)
    local d = core.monotime() - t0
    if d > worst then worst = d end
    if left == 0 then return worst end
    core.sleep(0.002)
  end
  error("tasks still running after " .. (limit or 20) .. " s")
end

local function send_params(to)
  return { from = F.PHONE, to = to or "+15557654321", content = "hi" }
end

describe("tasks #integration", function()
  local sb = F.block_sandbox{ rate_limit = false }

  describe("client:spawn() and client:step()", function()
    it("runs fn(...) inside step and keeps what it returned", function()
      local c = F.client(sb, { sleep = core.sleep })
      local t = c:spawn(function(a, b) return a + b, "x", nil end, 2, 3)
      assert.is_false(t:done())
      assert.equal(0, c:step(0))
      assert.is_true(t:done())
      local r = table.pack and table.pack(t:result()) or { n = select("#", t:result()),
                                                            t:result() }
      assert.equal(3, r.n)
      assert.equal(5, r[1])
      assert.equal("x", r[2])
      c:close()
    end)

    it("returns the number of tasks still running", function()
      local c = F.client(sb, { sleep = core.sleep })
      local a = c:spawn(function() return c:account() end)
      local b = c:spawn(function() return c:phone_numbers() end)
      assert.equal(2, c:step(0))
      drive(c)
      assert.equal("table", type((a:result())))
      assert.equal("table", type((b:result())))
      assert.equal(0, c:step(0))
      c:close()
    end)

    it("sends without blocking: step(0) stays short while the sandbox holds sends 2 s",
       function()
      local c = F.client(sb, { sleep = core.sleep })
      assert(sb:fault{ path = "/v1/messages/send", method = "POST", count = 3, type = "delay",
                       seconds = 2 })
      local t0 = core.monotime()
      local tasks = {}
      for i = 1, 3 do tasks[i] = c:spawn(c.send, c, send_params("+1555765432" .. i)) end
      local worst = drive(c)
      local total = core.monotime() - t0
      -- three 2 s sends ran side by side, and no step waited for them
      assert.is_true(total >= 1.9 and total < 6, "total " .. total)
      assert.is_true(worst < 0.25, "worst step " .. worst * 1000 .. " ms")
      for i = 1, 3 do
        local msg, err = tasks[i]:result()
        assert.is_nil(err)
        assert.equal("+1555765432" .. i, msg.to)
      end
      c:close()
    end)

    it("raises on programmer mistakes", function()
      local c = F.client(sb)
      assert.has_error(function() c:spawn(42) end,
                       "chatmaid: spawn expects a function (got number)")
      assert.has_error(function() c:step(-1) end,
                       "chatmaid: step expects a timeout in seconds >= 0 (got -1)")
      assert.has_error(function() c:step("x") end,
                       "chatmaid: step expects a timeout in seconds >= 0 (got x)")
      local t = c:spawn(function() end)
      assert.has_error(function() t:result() end,
        "chatmaid: task:result() called before the task is done (check task:done())")
      assert.has_error(function() t:on_done(1) end,
                       "chatmaid: task:on_done expects a function (got number)")
      local inner
      c:spawn(function() inner = select(2, pcall(c.step, c, 0)) end)
      c:step(0)
      assert.truthy(tostring(inner):find("step called from inside a task", 1, true))
      c:close()
      assert.has_error(function() c:spawn(function() end) end,
                       "chatmaid: attempt to use a closed client (spawn)")
      assert.has_error(function() c:step() end,
                       "chatmaid: attempt to use a closed client (step)")
    end)

    it("keeps what fn raised: result() is nil and the error; step() does not raise", function()
      local c = F.client(sb)
      local t = c:spawn(function() error("boom", 0) end)
      local u = c:spawn(function() error({ code = 7 }) end)
      assert.equal(0, c:step(0))
      local v, e = t:result()
      assert.is_nil(v)
      assert.equal("boom", e)
      v, e = u:result()
      assert.is_nil(v)
      assert.equal(7, e.code)
      c:close()
    end)

    it("runs tasks spawned by tasks (nested spawn) in the same step", function()
      local c = F.client(sb, { sleep = core.sleep })
      local order = {}
      local child
      local parent = c:spawn(function()
        order[#order + 1] = "parent"
        child = c:spawn(function()
          order[#order + 1] = "child"
          return (c:account())
        end)
        return "p"
      end)
      drive(c)
      assert.same({ "parent", "child" }, order)
      assert.equal("p", parent:result())
      assert.equal("table", type(child:result()))
      c:close()
    end)

    it("resumes a task that yields by itself at the next step", function()
      local c = F.client(sb)
      local n = 0
      local t = c:spawn(function()
        for _ = 1, 3 do n = n + 1; coroutine.yield() end
        return n
      end)
      assert.equal(1, c:step(0)); assert.equal(1, n)
      assert.equal(1, c:step(0)); assert.equal(2, n)
      assert.equal(1, c:step(0)); assert.equal(3, n)
      assert.equal(0, c:step(0))
      assert.equal(3, t:result())
      c:close()
    end)

    it("runs retries inside a task on timers, without blocking", function()
      local c = F.client(sb, { sleep = function() error("client.sleep must not run") end,
                               max_retries = 2 })
      assert(sb:fault{ path = "/v1/account", method = "GET", count = 2, type = "json_502" })
      local t = c:spawn(function() return c:account() end)
      drive(c)
      local acct, err = t:result()
      assert.is_nil(err)
      assert.equal("table", type(acct))
      assert.equal(3, c:last_response().attempt)
      c:close()
    end)

    it("polls with wait() and walks messages inside a task", function()
      local c = F.client(sb, { sleep = core.sleep })
      local t = c:spawn(function()
        local msg = assert(c:send(send_params()))
        local final = assert(c:wait(msg.id, { interval = 0.05, timeout = 10 }))
        local seen = 0
        local nxt = c:messages{ page_size = 2, max_items = 5 }  -- called, not for-in (Lua 5.1)
        while true do
          local m, e = nxt()
          if m == nil then break end
          assert(m, e)
          seen = seen + 1
        end
        return final.status, seen
      end)
      drive(c)
      local status, seen = t:result()
      assert.equal("sent", status)
      assert.equal(1, seen)
      c:close()
    end)

    it("runs send_batch inside a task without blocking, next to other tasks", function()
      local c = F.client(sb, { sleep = core.sleep })
      assert(sb:fault{ path = "/v1/messages/send", method = "POST", count = 6, type = "delay",
                       seconds = 1 })
      local items = {}
      for i = 1, 6 do items[i] = send_params("+155576500" .. i .. "0") end
      local b = c:spawn(function()
        return c:send_batch(items, { concurrency = 3, rate_per_minute = false })
      end)
      local other = c:spawn(function() return c:account() end)
      local t0 = core.monotime()
      local worst = drive(c)
      local took = core.monotime() - t0
      local results, summary = b:result()
      assert.equal(6, summary.sent)
      assert.equal("+15557650060", results[6].message.to)
      assert.equal("table", type(other:result()))
      assert.is_true(took >= 1.9 and took < 5, "took " .. took)   -- 2 rounds of 3
      assert.is_true(worst < 0.25, "worst step " .. worst * 1000 .. " ms")
      c:close()
    end)

    it("runs two batches in two tasks side by side", function()
      local c = F.client(sb, { sleep = core.sleep })
      local function items(base_no)
        local t = {}
        for i = 1, 5 do t[i] = send_params("+15557652" .. base_no .. i .. "0") end
        return t
      end
      local a = c:spawn(c.send_batch, c, items(1), { concurrency = 2, rate_per_minute = false })
      local b = c:spawn(c.send_batch, c, items(2), { concurrency = 2, rate_per_minute = false })
      drive(c)
      local ra, sa = a:result()
      local rb, sbm = b:result()
      assert.equal(5, sa.sent)
      assert.equal(5, sbm.sent)
      assert.equal("+15557652150", ra[5].message.to)
      assert.equal("+15557652250", rb[5].message.to)
      c:close()
    end)

    it("client:close() from a batch callback interrupts the batch (reason closed)", function()
      local c = F.client(sb, { sleep = core.sleep })
      local items = {}
      for i = 1, 10 do items[i] = send_params("+155576530" .. (i - 1) .. "0") end
      local res, err = c:send_batch(items, { concurrency = 2, rate_per_minute = false,
        on_progress = function(done) if done == 2 then c:close() end end })
      assert.is_nil(res)   -- a runtime stop returns nil, err
      assert.equal("interrupted", err.kind)
      assert.equal("closed", err.reason)
      assert.equal(10, #err.results)
      assert.equal(10, err.summary.sent + err.summary.interrupted)
      assert.is_true(err.summary.sent >= 2)
    end)

    it("cancelling a task that runs send_batch cancels its items", function()
      local c = F.client(sb, { sleep = core.sleep })
      assert(sb:fault{ path = "/v1/messages/send", method = "POST", count = 4, type = "delay",
                       seconds = 3 })
      local items = {}
      for i = 1, 4 do items[i] = send_params("+155576510" .. i .. "0") end
      local b = c:spawn(function() return c:send_batch(items, { rate_per_minute = false }) end)
      local t0 = core.monotime()
      while (sb:stats().byPath["POST /v1/messages/send"] or 0) < 4
            and core.monotime() - t0 < 5 do
        c:step(0.05)
      end
      assert.is_true(b:cancel())
      assert.equal("cancelled", select(2, b:result()).kind)
      assert.equal(0, c:step(0))
      assert.equal(0, c.transport:pending())
      c:close()
    end)

    it("lets a blocking call drive the running tasks", function()
      local c = F.client(sb, { sleep = core.sleep })
      assert(sb:fault{ path = "/v1/account", method = "GET", count = 1, type = "delay",
                       seconds = 0.5 })
      local t = c:spawn(function() return c:account() end)
      assert(c:phone_numbers())   -- blocking; the task's request runs meanwhile
      local t0 = core.monotime()
      drive(c)
      assert.is_true(core.monotime() - t0 < 0.6)
      assert.equal("table", type(t:result()))
      c:close()
    end)

    it("is on the conversations client too", function()
      local c = assert(conversations.new{ api_key = F.TEST_KEY, base_url = sb.url,
                                          sleep = core.sleep })
      local t = c:spawn(function()
        return c:send_text{ to = "+15557654321", text = "hi" }
      end)
      drive(c)
      local res, err = t:result()
      assert.is_nil(err)
      assert.equal("table", type(res))
      c:close()
    end)
  end)

  describe("task:cancel()", function()
    it("aborts the request in flight: err.kind cancelled, nothing more is sent", function()
      local c = F.client(sb, { sleep = core.sleep })
      assert(sb:fault{ path = "/v1/account", method = "GET", count = 1, type = "delay",
                       seconds = 3 })
      local t = c:spawn(function() return c:account() end)
      local t0 = core.monotime()
      while sb:stats().byPath["GET /v1/account"] == nil and core.monotime() - t0 < 5 do
        c:step(0.05)
      end
      assert.equal(1, c:step(0))
      assert.is_true(t:cancel())
      assert.is_false(t:cancel())
      assert.is_true(t:done())
      local v, err = t:result()
      assert.is_nil(v)
      assert.equal("cancelled", err.kind)
      assert.is_false(err.retryable)
      assert.equal(0, c:step(0))
      assert.same({}, c:fds())
      assert.is_true(core.monotime() - t0 < 2.5)
      assert.equal(0, c.transport:pending())
      c:close()
    end)

    it("stops a retry during its backoff sleep", function()
      local c = F.client(sb, { max_retries = 3, random = function() return 1 end,
                               sleep = core.sleep })
      assert(sb:fault{ path = "/v1/account", method = "GET", count = 5, type = "json_502" })
      local t = c:spawn(function() return c:account() end)
      local t0 = core.monotime()
      while (sb:stats().byPath["GET /v1/account"] or 0) < 1 and core.monotime() - t0 < 5 do
        c:step(0.01)
      end
      c:step(0.05)          -- the 503 arrives; the task sleeps 0.5 s on a timer
      assert.is_false(t:done())
      assert.is_true(c:step_timeout() > 0.2)
      t:cancel()
      assert.equal("cancelled", select(2, t:result()).kind)
      core.sleep(0.7)
      assert.equal(0, c:step(0))
      assert.equal(1, sb:stats().byPath["GET /v1/account"])
      c:close()
    end)

    it("from inside the task ends it at its next wait", function()
      local c = F.client(sb, { sleep = core.sleep })
      local t
      local reached = false
      t = c:spawn(function()
        t:cancel()
        c:account()
        reached = true
      end)
      c:step(0)
      assert.is_true(t:done())
      assert.equal("cancelled", select(2, t:result()).kind)
      assert.equal(0, c:step(0.1))
      assert.is_false(reached)
      c:close()
    end)
  end)

  describe("task:on_done()", function()
    it("is called from inside step, in the order the tasks finished", function()
      local c = F.client(sb, { sleep = core.sleep })
      local calls = {}
      local slow = c:spawn(function() coroutine.yield(); coroutine.yield(); return "slow" end)
      local fast = c:spawn(function() return "fast" end)
      slow:on_done(function(t) calls[#calls + 1] = "slow:" .. t:result() end)
      fast:on_done(function(t) calls[#calls + 1] = "fast1:" .. t:result() end)
      fast:on_done(function() calls[#calls + 1] = "fast2" end)
      assert.same({}, calls)
      c:step(0)
      assert.same({ "fast1:fast", "fast2" }, calls)
      c:step(0)
      c:step(0)
      assert.same({ "fast1:fast", "fast2", "slow:slow" }, calls)
      -- registered after the end: called at the next step, not at once
      fast:on_done(function() calls[#calls + 1] = "late" end)
      assert.equal(4, #calls + 1)
      c:step(0)
      assert.equal("late", calls[4])
      c:close()
    end)

    it("lets a callback's error out of step, and keeps the scheduler usable", function()
      local c = F.client(sb)
      c:spawn(function() end):on_done(function() error("cb failed", 0) end)
      assert.has_error(function() c:step(0) end, "cb failed")
      local t = c:spawn(function() return 1 end)
      c:step(0)
      assert.equal(1, t:result())
      c:close()
    end)
  end)

  describe("client:close() and collection", function()
    it("close() cancels the running tasks and calls their on_done", function()
      local c = F.client(sb, { sleep = core.sleep })
      assert(sb:fault{ path = "/v1/account", method = "GET", count = 1, type = "delay",
                       seconds = 3 })
      local t = c:spawn(function() return c:account() end)
      local u = c:spawn(function() while true do coroutine.yield() end end)
      c:step(0.05)
      local seen = {}
      t:on_done(function(x) seen[#seen + 1] = select(2, x:result()).message end)
      c:close()
      assert.is_true(t:done())
      assert.is_true(u:done())
      assert.equal("cancelled", select(2, u:result()).kind)
      assert.same({ "client closed" }, seen)
    end)

    it("a client dropped with tasks in flight is collected with them", function()
      local weak = setmetatable({}, { __mode = "v" })
      do
        local c = F.client(sb, { sleep = core.sleep })
        assert(sb:fault{ path = "/v1/account", method = "GET", count = 1, type = "delay",
                         seconds = 2 })
        local t = c:spawn(function() return c:account() end)
        c:step(0.05)
        weak[1], weak[2] = c, t
      end
      collectgarbage()
      collectgarbage()
      assert.is_nil(weak[1])
      assert.is_nil(weak[2])
    end)
  end)

  describe("event loop support", function()
    it("step_timeout() and fds() say when and on what step() has work", function()
      local c = F.client(sb, { sleep = core.sleep })
      assert.is_nil(c:step_timeout())
      assert.same({}, c:fds())
      assert(sb:fault{ path = "/v1/account", method = "GET", count = 1, type = "delay",
                       seconds = 1 })
      local t = c:spawn(function() return c:account() end)
      assert.equal(0, c:step_timeout())        -- a new task is ready
      local t0 = core.monotime()
      local n_fds = 0
      while not t:done() and core.monotime() - t0 < 5 do
        c:step(0)
        local fds = c:fds()
        for fd, ev in pairs(fds) do
          assert.is_number(fd)
          assert.truthy(ev == "r" or ev == "w" or ev == "rw")
          n_fds = n_fds + 1
        end
        local to = c:step_timeout()
        if not t:done() then assert.is_true(to >= 0 and to <= 1) end
        core.sleep(0.02)
      end
      assert.is_true(n_fds > 0)
      assert.is_true(t:done())
      assert.is_nil(c:step_timeout())
      c:close()
    end)

    it("step() with nothing to do is cheap enough for every frame", function()
      local c = F.client(sb)
      c:spawn(function() end)
      c:step(0)
      local n = 100000
      local t0 = os.clock()
      for _ = 1, n do c:step(0) end
      local per = (os.clock() - t0) / n
      assert.is_true(per < 5e-6, "idle step " .. per * 1e6 .. " us")
      c:close()
    end)
  end)
end)
