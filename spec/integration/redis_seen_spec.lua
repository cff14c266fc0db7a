-- chatmaid.redis.seen_set: webhook.seen_set's interface kept in Redis.
local redis = require "chatmaid.redis"
local rh = require "spec.support.redis_helper"

describe("chatmaid.redis.seen_set #integration #redis", function()
  local srv = rh.serve()

  it("seen() is false the first time and true after, across set objects", function()
    local a = redis.seen_set{ url = srv.url, prefix = "t1:" }
    local b = redis.seen_set{ url = srv.url, prefix = "t1:" }
    assert.is_false(a:seen("evt|1"))
    assert.is_true(b:seen("evt|1"))
    assert.is_true(a:seen("evt|1"))
    assert.is_false(b:seen("evt|2"))
  end)

  it("has() and add() as webhook.seen_set's", function()
    local s = redis.seen_set{ url = srv.url, prefix = "t2:" }
    assert.is_false(s:has("k"))
    assert.equal(s, s:add("k"))
    assert.is_true(s:has("k"))
    assert.is_true(s:seen("k"))
    assert.is_true(s:forget("k"))
    assert.is_false(s:has("k"))
  end)

  it("keys expire after ttl seconds and live under the prefix", function()
    local s = redis.seen_set{ url = srv.url, prefix = "t3:", ttl = 1 }
    assert.is_false(s:seen(42))
    local ttl = tonumber(srv:cli("TTL", "t3:42"))
    assert.equal(1, ttl)
    os.execute("sleep 1.2")
    assert.is_false(s:has(42))
    assert.is_false(s:seen(42))
  end)

  it("raises on bad options and keys", function()
    assert.has_error(function() redis.seen_set{ url = srv.url, size = 5 } end,
                     "chatmaid.redis.seen_set: unknown option 'size'")
    assert.has_error(function() redis.seen_set{ url = srv.url, tll = 5 } end,
                     "chatmaid.redis.seen_set: unknown option 'tll' (did you mean 'ttl'?)")
    assert.has_error(function() redis.seen_set{ url = srv.url, ttl = "5" } end,
                     "chatmaid.redis.seen_set: option 'ttl' must be a number (got string)")
    assert.has_error(function() redis.seen_set{ ttl = 5 } end,
                     "chatmaid.redis.seen_set: url is required (redis://host:port/db)")
    assert.has_error(function() redis.seen_set{ url = srv.url, ttl = 0.5 } end,
                     "chatmaid.redis.seen_set: ttl must be a whole number of seconds >= 1")
    local s = redis.seen_set{ url = srv.url }
    assert.has_error(function() s:seen({}) end,
                     "chatmaid.redis.seen_set:seen: key must be a string or a number (got table)")
  end)

  describe("when Redis is unreachable", function()
    local url
    setup(function() url = "redis://127.0.0.1:" .. rh.free_port() .. "/0" end)

    it("fail = closed (default): nil, err of kind transport from has, add and seen",
       function()
      local s = redis.seen_set{ url = url }
      for _, m in ipairs{ "has", "add", "seen" } do
        local v, err = s[m](s, "k")
        assert.is_nil(v)
        assert.equal("transport", err.kind)
        assert.equal("connect", err.reason)
      end
    end)

    it("a silent Redis: seen() gives up after the timeout with reason timeout", function()
      local mute = rh.silent()
      local s = redis.seen_set{ url = "redis://127.0.0.1:" .. mute.port, timeout = 0.2 }
      local t0 = os.clock()
      local v, err = s:seen("k")
      mute:stop()
      assert.is_nil(v)
      assert.equal("transport", err.kind)
      assert.equal("timeout", err.reason)
      assert.truthy(os.clock() - t0 < 1)
    end)

    it("fail = open: not seen, so the delivery is handled", function()
      local s = redis.seen_set{ url = url, fail = "open" }
      assert.is_false(s:seen("k"))
      assert.is_false(s:has("k"))
      assert.equal(s, s:add("k"))
    end)
  end)
end)
