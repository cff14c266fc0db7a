-- SPDX-License-Identifier: MIT
-- Shared campaigns when Redis loses their state (chatmaid.redis.campaign, issue 23 item 1):
-- redis-server restarted without persistence in the middle of a 300-item campaign with 4
-- worker processes. No worker may report the campaign finished while items are unsent; a
-- worker that notices says so (err.kind "state_lost"), the resume sends every remaining item
-- once (the API replays the keys it has) and the summaries add up exactly.
local F = require "spec.support.fixtures"
local rh = require "spec.support.redis_helper"
local workers = require "spec.support.workers"
local redis = require "chatmaid.redis"
local socket = require "socket"

local function by_recipient(sb)
  sb:config{ rate_limit = false }
  local c = F.client(sb)
  local msgs = assert(c:collect_messages{ max_items = 10000 })
  c:close()
  local out = {}
  for _, m in ipairs(msgs) do out[m.to] = (out[m.to] or 0) + 1 end
  return out
end

describe("chatmaid.redis.campaign when Redis loses its state #integration #redis", function()
  local srv = rh.serve()
  local sb = F.block_sandbox{ rate_limit = false }

  -- A worker as an operator writes one: run; on state_lost resume; on a transport error
  -- (Redis restarting) try again shortly. Prints one line per run and the totals.
  local WORKER = [[
    local chatmaid = require "chatmaid"
    local redis = require "chatmaid.redis"
    local url, base, id, n, per_sec = ...
    local items = {}
    for i = 1, tonumber(n) do
      items[i] = { from = "ph_primary", to = string.format("+1555700%04d", i),
                   content = "lost-state item " .. i }
    end
    local c = assert(chatmaid.new{ api_key = "sk_test_sandbox_0000000000000001",
                                   base_url = base, timeout = 10 })
    local camp = redis.campaign{ url = url, id = id, lease = 1, poll = 0.05, timeout = 0.5 }
    local lim = redis.rate_limiter{ url = url, key = "lost-spec", limit = tonumber(per_sec),
                                    window = 1, margin = 0, timeout = 0.5 }
    io.stdout:setvbuf("line")
    local tot = { sent = 0, replayed = 0, failed = 0, claimed = 0 }
    local function add(s)
      for f in pairs(tot) do tot[f] = tot[f] + ((s and s[f]) or 0) end
    end
    local resume = false
    for _ = 1, 200 do
      local res, sum = camp:run(c, items, { rate_limiter = lim, concurrency = 4,
                                            resume = resume })
      if res then
        add(sum)
        print(string.format("finished done=%d", sum.done))
        break
      end
      local err = sum
      add(err.summary)
      if err.kind == "state_lost" then
        print("state_lost " .. err.message)
        resume = true
      elseif err.kind == "transport" then
        print("transport " .. tostring(err.reason))
        require("chatmaid.core").sleep(0.05)
      else
        print("error " .. tostring(err))
        break
      end
    end
    print(string.format("total sent=%d replayed=%d failed=%d claimed=%d",
                        tot.sent, tot.replayed, tot.failed, tot.claimed))
  ]]

  it("a restart without persistence mid-run: never finished early, every item once",
     function()
    local N, id = 300, "lost-" .. os.time()
    local procs = {}
    for w = 1, 4 do procs[w] = workers.spawn(WORKER, { srv.url, sb.url, id, N, 150 }) end
    finally(function()   -- a failed assertion must not leave workers behind
      for w = 1, 4 do
        if procs[w].pipe then procs[w]:kill9() procs[w]:reap() end
      end
    end)
    local camp = redis.campaign{ url = srv.url, id = id }
    local deadline = socket.gettime() + 20
    local st
    repeat
      socket.sleep(0.02)
      st = camp:status()
    until (st and st.done >= N / 3) or socket.gettime() > deadline
    assert.truthy(st and st.done < N, "the campaign ended before the restart")
    srv:restart()
    local lost, finished = 0, 0
    local sum = { sent = 0, replayed = 0, failed = 0, claimed = 0 }
    for w = 1, 4 do
      local out = procs[w]:wait()
      if out:find("state_lost Redis lost the state of campaign", 1, true) then
        lost = lost + 1
        assert.truthy(out:find("restarted without persistence?", 1, true), out)
      end
      for done in out:gmatch("finished done=(%d+)") do
        finished = finished + 1
        assert.equal(N, tonumber(done), "a worker finished with items unsent:\n" .. out)
      end
      local s, r, f, c = out:match("total sent=(%d+) replayed=(%d+) failed=(%d+) claimed=(%d+)")
      assert.truthy(s, out)
      sum.sent, sum.replayed = sum.sent + tonumber(s), sum.replayed + tonumber(r)
      sum.failed, sum.claimed = sum.failed + tonumber(f), sum.claimed + tonumber(c)
      assert.falsy(out:find("error ", 1, true), out)
    end
    assert.equal(4, finished)
    assert.truthy(lost >= 1, "no worker noticed the lost state")
    -- every recipient exactly one message, the summaries exact: each new message counted
    -- once as sent, each item sent again after the restart counted as replayed
    local got = by_recipient(sb)
    for i = 1, N do
      local to = string.format("+1555700%04d", i)
      assert.equal(1, got[to], "messages to " .. to)
    end
    assert.equal(N, sb:stats().messagesCreated)
    assert.equal(N, sum.sent)
    assert.equal(0, sum.failed)
    assert.truthy(sum.replayed >= 1, "nothing was sent again after the restart")
    assert.equal(sum.claimed, sum.sent + sum.replayed + sum.failed)
    st = assert(redis.campaign{ url = srv.url, id = id }:status())   -- a fresh connection
    assert.same({ total = N, pending = 0, leased = 0, done = N, sent = N, failed = 0 }, st)
  end)

  it("a rate limiter that gives up on its Redis: nil, err; the rest stays leased",
     function()
    local id = "limgone-" .. os.time()
    local items = {}
    for i = 1, 4 do
      items[i] = { from = F.PHONE, to = string.format("+1555702%04d", i), content = "g" .. i }
    end
    local c = F.client(sb)
    local lim = redis.rate_limiter{ url = "redis://127.0.0.1:" .. rh.free_port() .. "/0",
                                    per_minute = 600, timeout = 0.1, max_outage = 0.3 }
    local camp = redis.campaign{ url = srv.url, id = id }
    local res, err = camp:run(c, items, { rate_limiter = lim, chunk = 4 })
    assert.is_nil(res)
    assert.same({ "interrupted", "limiter" }, { err.kind, err.reason })
    assert.equal(0, err.summary.sent)
    local st = assert(camp:status())
    assert.same({ 4, 0, 0 }, { st.leased, st.done, sb:stats().messagesCreated })
    c:close()
  end)

  it("an evicted key is detected: not finished, state_lost; resume completes it", function()
    local id = "evict-" .. os.time()
    local items = {}
    for i = 1, 6 do
      items[i] = { from = F.PHONE, to = string.format("+1555701%04d", i), content = "e" .. i }
    end
    local c = F.client(sb)
    local camp = redis.campaign{ url = srv.url, id = id, poll = 0.05 }
    -- items 1 and 2 sent once with the campaign's keys, the campaign forgotten; then a run
    -- whose done hash is evicted after 4 outcomes
    local _, s1 = assert(camp:run(c, { items[1], items[2] }))
    assert.equal(2, s1.sent)
    assert(camp:reset())
    local calls = 0
    local res, err = camp:run(c, items, { chunk = 2, on_progress = function()
      calls = calls + 1
      if calls == 4 then srv:cli("DEL", "chatmaid:camp:{" .. id .. "}:done") end
    end })
    assert.is_nil(res)
    assert.equal("state_lost", err.kind)
    assert.truthy(err.message:find("holds 2/6", 1, true), err.message)
    -- a plain run on the same object refuses to read the broken state as anything
    local again, err2 = camp:run(c, items)
    assert.is_nil(again)
    assert.equal("state_lost", err2.kind)
    local out, sum = assert(camp:run(c, items, { resume = true }))
    for i = 1, 6 do assert.truthy(out[i].message) end
    -- items 1-4 were sent before (warm-up, broken run): replays; 5 and 6 are new
    assert.same({ 6, 2, 4 }, { sum.claimed, sum.sent, sum.replayed })
    assert.equal(6, sb:stats().messagesCreated)
    c:close()
  end)
end)
