-- SPDX-License-Identifier: MIT
-- chatmaid.redis when the topology moves (issue 23, item 7): a failover behind one address
-- (READONLY: drop and reconnect, recovered within the command), and a local 3-master Redis
-- Cluster (MOVED and ASK followed) used by a limiter, a seen set and a campaign.
local redis = require "chatmaid.redis"
local conn = require "chatmaid.redis.conn"
local core = require "chatmaid.core"
local F = require "spec.support.fixtures"
local rh = require "spec.support.redis_helper"
local faults = require "spec.support.redis_faults"

local function wait_until(f, limit, what)
  local deadline = core.monotime() + (limit or 10)
  while core.monotime() < deadline do
    if f() then return end
    core.sleep(0.05)
  end
  error("timed out waiting for " .. what)
end

describe("chatmaid.redis topology #integration #redis", function()
  describe("failover behind one address", function()
    local a, b, vip
    before_each(function()
      a, b = rh.start(), rh.start()
      vip = faults.proxy(a.port)
    end)
    after_each(function()
      vip:stop()
      a:stop()
      b:stop()
    end)

    it("READONLY from the old primary: the connection is dropped and the next command "
       .. "recovers on the new primary (no error)", function()
      local url = "redis://127.0.0.1:" .. vip.port .. "/0"
      local set = redis.seen_set{ url = url, prefix = "fo:" }
      local lim = redis.rate_limiter{ url = url, key = "fo", per_minute = 600 }
      assert.is_false(set:seen("before"))
      assert.equal(0, lim:try_take())
      -- the failover: b is promoted, a follows it, the address moves to b
      assert.equal("OK", a:cli("REPLICAOF", "127.0.0.1", b.port))
      wait_until(function() return a:cli("SET", "probe", "1"):find("READONLY") end, 5,
                 "a to answer READONLY")
      vip:switch(b.port)
      local first, err = set:seen("after")
      assert.equal(false, first, tostring(err))
      assert.equal("1", b:cli("GET", "fo:after"))
      local w, err2 = lim:try_take()
      assert.truthy(w and w >= 0, tostring(err2))
      assert.equal("1", b:cli("LLEN", "chatmaid:rl:{fo}:log"))
    end)

    it("a server that stays a replica: reason readonly with what to do, at once", function()
      assert.equal("OK", a:cli("REPLICAOF", "127.0.0.1", b.port))
      wait_until(function() return a:cli("SET", "probe", "1"):find("READONLY") end, 5,
                 "a to answer READONLY")
      local set = redis.seen_set{ url = "redis://127.0.0.1:" .. vip.port .. "/0" }
      local t0 = core.monotime()
      local r, err = set:seen("x")
      assert.is_nil(r)
      assert.equal("transport", err.kind)
      assert.equal("readonly", err.reason)
      assert.truthy(tostring(err):find("the server is a read-only replica", 1, true))
      assert.truthy(tostring(err):find("point the URL at the primary", 1, true))
      assert.truthy(core.monotime() - t0 < 0.5)
    end)
  end)

  describe("a local 3-master Redis Cluster", function()
    local nodes = {}
    local sb = F.block_sandbox{ rate_limit = false }

    setup(function()
      local addrs = {}
      for i = 1, 3 do
        -- the bus port is a free one too (by default port + 10000: taken, or past 65535)
        nodes[i] = rh.start{ args = "--cluster-enabled yes --cluster-config-file nodes.conf "
                                    .. "--cluster-node-timeout 2000 --cluster-port "
                                    .. rh.free_port() }
        addrs[i] = "127.0.0.1:" .. nodes[i].port
      end
      local p = io.popen("redis-cli --cluster create " .. table.concat(addrs, " ")
                         .. " --cluster-replicas 0 --cluster-yes 2>&1")
      local out = p:read("*a")
      p:close()
      assert(out:find("All 16384 slots covered", 1, true), out)
      wait_until(function()
        for i = 1, 3 do
          if not nodes[i]:cli("CLUSTER", "INFO"):find("cluster_state:ok", 1, true) then
            return false
          end
        end
        return true
      end, 10, "cluster_state:ok")
    end)
    teardown(function() for i = 1, 3 do nodes[i]:stop() end end)

    local function total(key_pattern)
      local n = 0
      for i = 1, 3 do
        n = n + select(2, nodes[i]:cli("--scan", "--pattern", key_pattern):gsub("[^\n]+", ""))
      end
      return n
    end

    it("limiters and seen sets on keys of every node: MOVED followed", function()
      local url = "redis://127.0.0.1:" .. nodes[1].port
      for i = 1, 12 do
        local lim = redis.rate_limiter{ url = url, key = "cl" .. i, per_minute = 60 }
        local w, err = lim:try_take()
        assert.equal(0, w, tostring(err))
        assert.truthy(lim:try_take() > 0)
      end
      local set = redis.seen_set{ url = url, prefix = "cl:" }
      for i = 1, 30 do assert.is_false(set:seen("evt" .. i)) end
      for i = 1, 30 do assert.is_true(set:seen("evt" .. i)) end
      assert.equal(30, total("cl:evt*"))
      -- the keys are spread over the three masters, so redirects were followed
      local spread = 0
      for i = 1, 3 do
        if nodes[i]:cli("--scan", "--pattern", "cl:evt*") ~= "" then spread = spread + 1 end
      end
      assert.equal(3, spread)
    end)

    it("ASK during a slot migration: ASKING then the command on the importing node",
       function()
      local url = "redis://127.0.0.1:" .. nodes[1].port
      local key = "ask:evt"
      local slot = nodes[1]:cli("CLUSTER", "KEYSLOT", key)
      for i = 1, 3 do nodes[i].id = nodes[i]:cli("CLUSTER", "MYID") end
      -- the owner: the node whose own CLUSTER NODES line ("myself") holds the slot
      local owner
      for i = 1, 3 do
        local line = nodes[i]:cli("CLUSTER", "NODES"):match("[^\n]*myself[^\n]*")
        for lo, hi in line:gmatch("(%d+)%-(%d+)") do
          if tonumber(slot) >= tonumber(lo) and tonumber(slot) <= tonumber(hi) then owner = i end
        end
      end
      assert.truthy(owner)
      local target = owner % 3 + 1
      assert.equal("OK", nodes[target]:cli("CLUSTER", "SETSLOT", slot, "IMPORTING",
                                           nodes[owner].id))
      assert.equal("OK", nodes[owner]:cli("CLUSTER", "SETSLOT", slot, "MIGRATING",
                                          nodes[target].id))
      local set = redis.seen_set{ url = url, prefix = "ask:" }
      assert.is_false(set:seen("evt"))
      -- the new key went to the importing node, as the ASK said
      assert.equal("", nodes[owner]:cli("--scan", "--pattern", "ask:*"))
      assert.equal("1", nodes[target]:cli("CLUSTER", "COUNTKEYSINSLOT", slot))
      -- finish the migration so the teardown leaves a sane cluster
      for i = 1, 3 do nodes[i]:cli("CLUSTER", "SETSLOT", slot, "NODE", nodes[target].id) end
    end)

    it("a campaign runs through the cluster: every item sent once", function()
      local url = "redis://127.0.0.1:" .. nodes[2].port
      local c = F.client(sb, { sleep = core.sleep })
      local items = {}
      for i = 1, 20 do
        items[i] = { from = F.PHONE, to = string.format("+1555700%04d", i),
                     content = "cluster item " .. i }
      end
      local camp = redis.campaign{ url = url, id = "cluster-" .. os.time(), lease = 5 }
      local res, sum = camp:run(c, items, { concurrency = 4 })
      assert.truthy(res, tostring(sum))
      assert.equal(20, sum.sent, tostring(sum))
      assert.equal(0, sum.failed)
      assert.equal(20, sb:stats().messagesCreated)
      c:close()
    end)

    it("a database other than 0 is refused clearly", function()
      local set = redis.seen_set{ url = "redis://127.0.0.1:" .. nodes[1].port .. "/2" }
      conn.close_all()
      local r, err = set:seen("x")
      assert.is_nil(r)
      assert.equal("cluster", err.reason, tostring(err))
      assert.truthy(tostring(err):find("Redis Cluster has only database 0", 1, true))
    end)
  end)
end)
