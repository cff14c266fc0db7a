-- Shared campaigns (chatmaid.redis.campaign): worker processes on one redis-server work
-- through one list; (c) one of three is killed with kill -9 half way and every recipient
-- still gets exactly one message, with the keys a single-machine batch would use.
local F = require "spec.support.fixtures"
local rh = require "spec.support.redis_helper"
local workers = require "spec.support.workers"
local redis = require "chatmaid.redis"
local socket = require "socket"

local function items_of(n, prefix)
  local t = {}
  for i = 1, n do
    t[i] = { from = F.PHONE, to = string.format("+1555%s%04d", prefix, i),
             content = "campaign item " .. i }
  end
  return t
end

-- every message the sandbox holds, by recipient
local function by_recipient(sb)
  sb:config{ rate_limit = false }
  local c = F.client(sb)
  local msgs = assert(c:collect_messages{ max_items = 10000 })
  c:close()
  local out = {}
  for _, m in ipairs(msgs) do
    out[m.to] = out[m.to] or {}
    table.insert(out[m.to], m)
  end
  return out
end

describe("chatmaid.redis.campaign #integration #redis", function()
  local srv = rh.serve()
  local sb = F.block_sandbox{ rate_limit = false }

  local WORKER = [[
    local chatmaid = require "chatmaid"
    local redis = require "chatmaid.redis"
    local url, base, id, n, prefix, per_sec = ...
    local items = {}
    for i = 1, tonumber(n) do
      items[i] = { from = "ph_primary", to = string.format("+1555%s%04d", prefix, i),
                   content = "campaign item " .. i }
    end
    local c = assert(chatmaid.new{ api_key = "sk_test_sandbox_0000000000000001",
                                   base_url = base, timeout = 10 })
    local camp = redis.campaign{ url = url, id = id, lease = 2 }
    local lim = redis.rate_limiter{ url = url, key = "campaign-spec", limit = tonumber(per_sec),
                                    window = 1, margin = 0 }
    io.stdout:setvbuf("line")
    print("started")
    local working = false
    local res, sum = camp:run(c, items, { rate_limiter = lim, concurrency = 4,
      on_progress = function()
        if not working then working = true print("working") end
      end })
    if not res then print("error " .. tostring(sum)) os.exit(1) end
    print(string.format("claimed=%d sent=%d replayed=%d failed=%d taken_over=%d",
                        sum.claimed, sum.sent, sum.replayed or 0, sum.failed, sum.taken_over))
  ]]

  it("(c) 300 items over 3 workers, one killed with kill -9 half way: one message each",
     function()
    local N, id = 300, "spec-c-" .. os.time()
    local procs = {}
    for w = 1, 3 do procs[w] = workers.spawn(WORKER, { srv.url, sb.url, id, N, "31", 60 }) end
    -- kill worker 1 once it is working (it has finished an item, so it holds leases from
    -- now on: on a loaded machine the others could otherwise do the first third before it
    -- even starts) and a third of the campaign is done
    repeat
      local line = procs[1].pipe:read("*l")
    until line == nil or line == "working"
    local camp = redis.campaign{ url = srv.url, id = id }
    local deadline = socket.gettime() + 60
    local st
    repeat
      socket.sleep(0.05)
      st = camp:status()
    until (st and st.done >= N / 3) or socket.gettime() > deadline
    assert.truthy(st and st.done < N, "the campaign ended before the kill")
    procs[1]:kill9()
    procs[1]:wait()
    local taken = 0
    for w = 2, 3 do
      local out = procs[w]:wait()
      local t = out:match("taken_over=(%d+)")
      assert.truthy(t, out)
      taken = taken + tonumber(t)
      assert.truthy(out:find("failed=0", 1, true), out)
    end
    assert.truthy(taken >= 1, "the survivors took over the dead worker's leases")
    -- every recipient exactly one message
    local items = items_of(N, "31")
    local got = by_recipient(sb)
    for i = 1, N do
      local list = got[items[i].to]
      assert.truthy(list, "no message to " .. items[i].to)
      assert.equal(1, #list, items[i].to)
    end
    assert.equal(N, sb:stats().messagesCreated)
    -- with the keys of a single-machine batch: the same batch sent from here creates nothing
    local c = F.client(sb)
    local _, again = c:send_batch(items, { batch_id = id, rate_per_minute = false,
                                           concurrency = 16 })
    c:close()
    assert.same({ 0, N, 0 }, { again.sent, again.replayed, again.failed })
    assert.equal(N, sb:stats().messagesCreated)
    st = camp:status()
    assert.same({ total = N, pending = 0, leased = 0, done = N, sent = N, failed = 0 }, st)
  end)

  it("an item a dead worker had sent is answered with the original message, not sent again",
     function()
    local id = "spec-replay-" .. os.time()
    local items = items_of(4, "35")
    local c = F.client(sb)
    -- a worker that claims all four, sends two and dies before recording them
    local dying = { send_batch = function(_, sub)
      for j = 1, 2 do
        local it = sub[j]
        assert(c:send{ from = it.from, to = it.to, content = it.content,
                       idempotency_key = it.idempotency_key })
      end
      error("died", 0)
    end }
    local dead = redis.campaign{ url = srv.url, id = id, lease = 1, worker = "dead" }
    assert.has_error(function() dead:run(dying, items, { chunk = 4 }) end, "died")
    assert.equal(2, sb:stats().messagesCreated)
    local st = assert(dead:status())
    assert.same({ 4, 0, 4, 0 }, { st.leased, st.pending, st.total, st.done })
    -- a live worker waits for the lease, takes the four over and sends them with their keys
    local t0 = socket.gettime()
    local res, sum = assert(redis.campaign{ url = srv.url, id = id, poll = 0.1 }:run(c, items))
    assert.truthy(socket.gettime() - t0 >= 0.9)
    assert.equal(4, sum.taken_over)
    assert.equal(2, sum.replayed)
    assert.equal(2, sum.sent)   -- new messages; the replayed two are not
    assert.equal(4, sb:stats().messagesCreated)
    for i = 1, 4 do assert.truthy(res[i].message) end
    for _, list in pairs(by_recipient(sb)) do assert.equal(1, #list) end
    c:close()
  end)

  it("refuses a worker whose item list differs", function()
    local id = "spec-mismatch-" .. os.time()
    local camp = redis.campaign{ url = srv.url, id = id }
    local c = F.client(sb)
    local res = assert(camp:run(c, items_of(3, "32")))
    assert.truthy(res[1].message)
    local again, err = redis.campaign{ url = srv.url, id = id }:run(c, items_of(4, "32"))
    assert.is_nil(again)
    assert.equal("validation", err.kind)
    assert.truthy(err.message:find("was started with another item list", 1, true))
    c:close()
  end)

  -- Tried with a test key, then run live under the same id: Redis holds the test run's
  -- outcomes, and the API (idempotency keys scoped per account) would answer the live keys
  -- with the test messages. The live worker is refused before anything is claimed.
  it("refuses a worker that sends elsewhere (a live key after a test key): reason"
     .. " destination, nothing sent; another id sends there", function()
    local id = "spec-dest-" .. os.time()
    local items = items_of(3, "35")
    local test = F.client(sb)
    local _, s1 = assert(redis.campaign{ url = srv.url, id = id }:run(test, items))
    assert.equal(3, s1.sent)
    local live = F.client(sb, { api_key = F.LIVE_KEY })
    local res, err = redis.campaign{ url = srv.url, id = id }:run(live, items)
    assert.is_nil(res)
    assert.are.same({ "validation", "destination", id }, { err.kind, err.reason, err.campaign })
    assert.equal("campaign '" .. id .. "' was started by workers that send with a test key at"
      .. " 127.0.0.1; this client sends with a live key at 127.0.0.1, where its items were"
      .. " never sent: use another campaign id for this destination (the API scopes"
      .. " idempotency keys per account, test and live alike)", err.message)
    assert.is_nil(tostring(err):find(F.LIVE_KEY, 1, true))
    assert.equal(3, sb:stats().messagesCreated)
    -- the test workers still join it (finished: nothing to claim)
    local _, s2 = assert(redis.campaign{ url = srv.url, id = id }:run(test, items))
    assert.equal(0, s2.claimed)
    local _, s3 = assert(redis.campaign{ url = srv.url, id = id .. "-live" }:run(live, items))
    assert.are.same({ 3, 0 }, { s3.sent, s3.replayed })
    assert.equal(6, sb:stats().messagesCreated)
    test:close(); live:close()
  end)

  it("a finished campaign run again sends nothing", function()
    local id = "spec-again-" .. os.time()
    local c = F.client(sb)
    local items = items_of(5, "33")
    local _, s1 = assert(redis.campaign{ url = srv.url, id = id }:run(c, items))
    local _, s2 = assert(redis.campaign{ url = srv.url, id = id }:run(c, items))
    assert.equal(5, s1.sent)
    assert.equal(0, s2.claimed)
    assert.equal(5, sb:stats().messagesCreated)
    c:close()
  end)

  it("Redis down: nil, err of kind transport", function()
    local c = F.client(sb)
    local camp = redis.campaign{ url = "redis://127.0.0.1:" .. rh.free_port(), id = "x" }
    local res, err = camp:run(c, items_of(2, "34"))
    assert.is_nil(res)
    assert.equal("transport", err.kind)
    assert.equal(0, sb:stats().messagesCreated)
    c:close()
  end)
end)
