-- chatmaid.redis.rate_limiter against a real redis-server (spec/support/redis_helper.lua):
-- the same answers as the two local limiters, pauses shared by every sharer, and what
-- happens when Redis is down or silent.
local redis = require "chatmaid.redis"
local ratelimit = require "chatmaid.ratelimit"
local core = require "chatmaid.core"
local socket = require "socket"
local rh = require "spec.support.redis_helper"

describe("chatmaid.redis.rate_limiter #integration #redis", function()
  local srv = rh.serve()

  local n = 0
  local function fresh_key() n = n + 1 return "spec-" .. n .. "-" .. core.uuid4() end

  -- a deterministic sequence of (time step, n) pairs: bursts, idle gaps, and pauses
  local function sequence(len, max_n)
    local seed, out = 12345, {}
    local function rnd(m) seed = (seed * 1103515245 + 12345) % 2147483648 return seed % m end
    for i = 1, len do
      local r = rnd(10)
      local step = r < 5 and 0 or r < 8 and rnd(400) / 1000 or rnd(3000) / 1000
      out[i] = { step = step, n = 1 + rnd(max_n), pause = rnd(17) == 0 and rnd(2500) / 1000 }
    end
    return out
  end

  describe("gives the same answers as the local limiters", function()
    it("as chatmaid.ratelimit (the sliding window of send_batch) with burst = limit",
       function()
      local clock = 1000
      local lim = redis.rate_limiter{ url = srv.url, key = fresh_key(), limit = 7, burst = 7,
                                      window = 3, margin = 0.5,
                                      time = function() return clock end }
      local loc = ratelimit.new(7, { window = 3, margin = 0.5 })
      local answers = 0
      for _, s in ipairs(sequence(300, 1)) do
        clock = clock + s.step
        if s.pause then
          assert.is_true(lim:pause_until(clock + s.pause))
          loc:pause_until(clock + s.pause)
        end
        local t = loc:ready_at(clock)
        loc:take(t)
        local w = assert(lim:try_take(1))
        assert.near(t - clock, w, 1e-5)
        if w > 0 then answers = answers + 1 end
      end
      assert.truthy(answers > 50, answers)   -- the sequence did make callers wait
    end)

    -- take(1) only: resty's take(n) books n starts at one time for n slots of pacing, which
    -- can put more than per_minute starts in a window; the Redis limiter's log refuses that.
    it("as chatmaid.resty's shared-dict limiter with burst = 1 and margin = 0", function()
      local clock = 1000
      local store = {}
      local dict = {
        get = function(_, k) return store[k] end,
        set = function(_, k, v) store[k] = v return true end,
        add = function(_, k, v)
          if store[k] ~= nil then return false, "exists" end
          store[k] = v
          return true
        end,
        delete = function(_, k) store[k] = nil end,
      }
      -- chatmaid.resty.limiter keeps the ngx it saw at load time: give it a stand-in and
      -- take it away again, so chatmaid.redis does not think it runs inside nginx.
      package.loaded["chatmaid.resty.limiter"] = nil
      _G.ngx = { shared = { rl = dict }, now = function() return clock end,
                 get_phase = function() return "content" end, sleep = function() end }
      local resty_limiter = require "chatmaid.resty.limiter"
      _G.ngx = nil
      package.loaded["chatmaid.resty.limiter"] = nil
      local loc = resty_limiter.new{ shared_dict = "rl", key = "k", per_minute = 6, window = 2 }
      local lim = redis.rate_limiter{ url = srv.url, key = fresh_key(), per_minute = 6,
                                      window = 2, margin = 0,
                                      time = function() return clock end }
      local waited = 0
      for _, s in ipairs(sequence(300, 1)) do
        clock = clock + s.step
        if s.pause then
          loc:pause_until(clock + s.pause)
          assert.is_true(lim:pause_until(clock + s.pause))
        end
        local expect = loc:take(s.n)
        local w = assert(lim:try_take(s.n))
        assert.near(expect, w, 1e-5)
        if w > 0 then waited = waited + 1 end
      end
      assert.truthy(waited > 50, waited)
    end)
  end)

  it("keeps time on the Redis server: a fresh limiter answers 0 and then spaces starts",
     function()
    local lim = redis.rate_limiter{ url = srv.url, key = fresh_key(), per_minute = 600 }
    assert.equal(0, lim:take())
    local w = lim:take()
    assert.truthy(w > 0.05 and w <= 0.1, w)     -- 60 s / 600, minus the time between takes
    -- (generous: a loaded machine or a sanitizer build can take tens of ms between takes)
  end)

  it("never allows more than the limit in a window, whatever burst says", function()
    local clock = 0
    local lim = redis.rate_limiter{ url = srv.url, key = fresh_key(), per_minute = 5, burst = 5,
                                    window = 10, margin = 1,
                                    time = function() return clock end }
    local starts = {}
    for i = 1, 12 do starts[i] = clock + lim:take(1) end
    for i = 6, 12 do assert.truthy(starts[i] >= starts[i - 5] + 11 - 1e-6) end
    assert.same({ 0, 0, 0, 0, 0, 11, 11, 11, 11, 11, 22, 22 }, starts)
  end)

  it("a 429 on one machine pauses every sharer of the key", function()
    local key = fresh_key()
    local a = redis.rate_limiter{ url = srv.url, key = key, per_minute = 6000 }
    local b = redis.rate_limiter{ url = srv.url, key = key, per_minute = 6000 }
    assert.equal(0, a:take())
    assert.is_true(a:pause_until(core.monotime() + 2))
    local w = b:take()
    assert.truthy(w > 1.5 and w <= 2, w)
  end)

  it("wait(n) sleeps for what take(n) says", function()
    local slept = {}
    local lim = redis.rate_limiter{ url = srv.url, key = fresh_key(), per_minute = 60,
                                    sleep = function(s) slept[#slept + 1] = s end }
    assert.equal(0, lim:wait())
    local w = lim:wait()
    assert.truthy(w > 0.5 and w <= 1, w)
    assert.same({ w }, slept)
  end)

  it("runs its script again after SCRIPT FLUSH (EVALSHA answered NOSCRIPT)", function()
    local lim = redis.rate_limiter{ url = srv.url, key = fresh_key(), per_minute = 60 }
    assert.equal(0, lim:take())
    assert.equal("OK", srv:cli("SCRIPT", "FLUSH"))
    local w = assert(lim:try_take())
    assert.truthy(w > 0.9)
  end)

  describe("options", function()
    local function raises(opts, msg)
      assert.has_error(function() redis.rate_limiter(opts) end,
                       "chatmaid.redis.rate_limiter: " .. msg)
    end
    it("requires url and per_minute", function()
      raises({ per_minute = 1 }, "url is required (redis://host:port/db)")
      raises({ url = "redis://x" }, "per_minute (starts per window) must be an integer >= 1")
    end)
    it("rejects unknown options and wrong types", function()
      raises({ url = "redis://x", per_minute = 1, rate = 2 }, "unknown option 'rate'")
      raises({ url = "redis://x", per_minute = "5" },
             "option 'per_minute' must be a number (got string)")
    end)
    it("rejects per_minute with limit, bad burst, window and fail", function()
      raises({ url = "redis://x", per_minute = 5, limit = 5 },
             "give per_minute or limit, not both (they are the same number)")
      raises({ url = "redis://x", per_minute = 5, burst = 6 },
             "burst must be an integer from 1 to per_minute")
      raises({ url = "redis://x", per_minute = 5, window = 0 },
             "window must be a positive number of seconds")
      raises({ url = "redis://x", per_minute = 5, fail = "maybe" },
             'fail must be "closed" (wait for Redis) or "open" (pace locally)')
    end)
    it("rejects a malformed URL without showing its password", function()
      local ok, e = pcall(redis.rate_limiter, { url = "redis://u:s3cret@host:99999/0",
                                                per_minute = 5 })
      assert.is_false(ok)
      assert.truthy(e:find("bad url 'redis://u:***@host:99999/0': port out of range", 1, true), e)
      assert.falsy(e:find("s3cret", 1, true))
      raises({ url = "rediss://h", per_minute = 5 },
             "bad url 'rediss://h': TLS (rediss://) is not supported; use a local TLS proxy "
             .. "(stunnel, spiped or a sidecar such as redis behind haproxy) and give its plain "
             .. "redis://127.0.0.1:port address")
    end)
    it("rejects take(n) over the limit", function()
      local lim = redis.rate_limiter{ url = srv.url, per_minute = 3 }
      assert.has_error(function() lim:take(4) end, "chatmaid.redis.rate_limiter: take(n): n "
                       .. "is over per_minute (3): it could never fit in a window")
      assert.has_error(function() lim:take(0) end,
                       "chatmaid.redis.rate_limiter: take(n): n must be a positive integer")
    end)
  end)

  describe("parse_url", function()
    it("reads host, port, db, username and password", function()
      assert.same({ host = "10.0.0.5", port = 6380, db = 3, password = "p@ss:w" },
                  redis.parse_url("redis://:p%40ss%3Aw@10.0.0.5:6380/3"))
      assert.same({ host = "::1", port = 6379, db = 0, username = "app", password = "pw" },
                  redis.parse_url("redis://app:pw@[::1]"))
      assert.same({ host = "/run/redis.sock", port = 0, db = 2 },
                  redis.parse_url("unix:///run/redis.sock?db=2"))
    end)
  end)

  describe("with a password", function()
    local secured = rh.serve{ password = "s3cret-pw" }

    it("authenticates from the URL", function()
      local lim = redis.rate_limiter{ url = secured.url, key = fresh_key(), per_minute = 60 }
      assert.equal(0, lim:try_take())
    end)

    it("a wrong password is kind transport, and no message shows it", function()
      local url = "redis://:wrong-pw@127.0.0.1:" .. secured.port .. "/0"
      local lim = redis.rate_limiter{ url = url, per_minute = 60 }
      local w, err = lim:try_take()
      assert.is_nil(w)
      assert.equal("transport", err.kind)
      assert.equal("redis", err.reason)
      assert.truthy(tostring(err):find("AUTH", 1, true), tostring(err))
      assert.falsy(tostring(err):find("wrong-pw", 1, true))
      assert.truthy(tostring(err):find("redis://:***@127.0.0.1", 1, true), tostring(err))
    end)
  end)

  describe("when Redis is down or silent", function()
    it("down: kind transport (reason connect) at once", function()
      local port = rh.free_port()
      local lim = redis.rate_limiter{ url = "redis://127.0.0.1:" .. port, per_minute = 60 }
      local t0 = socket.gettime()
      local w, err = lim:try_take()
      assert.is_nil(w)
      assert.equal("transport", err.kind)
      assert.equal("connect", err.reason)
      assert.truthy(socket.gettime() - t0 < 1)
    end)

    it("silent (accepts, never answers): kind transport (reason timeout) within the timeout",
       function()
      local mute = rh.silent()
      local lim = redis.rate_limiter{ url = "redis://127.0.0.1:" .. mute.port, per_minute = 60,
                                      timeout = 0.3 }
      local t0 = socket.gettime()
      local w, err = lim:try_take()
      local took = socket.gettime() - t0
      mute:stop()
      assert.is_nil(w)
      assert.equal("transport", err.kind)
      assert.equal("timeout", err.reason)
      assert.truthy(err.message:find("no answer within 300 ms", 1, true), err.message)
      assert.truthy(took >= 0.25 and took < 2, took)
    end)

    it("fail = closed (default): take() retries until Redis answers, reporting each failure",
       function()
      local port = rh.free_port()
      local errs, slept = {}, 0
      local lim = redis.rate_limiter{ url = "redis://127.0.0.1:" .. port, per_minute = 60,
                                      sleep = function(s) slept = slept + s end,
                                      on_error = function(e)
                                        errs[#errs + 1] = e
                                        if #errs == 4 then error("give up", 0) end
                                      end }
      assert.has_error(function() lim:take() end, "give up")
      assert.equal(4, #errs)
      assert.equal("transport", errs[4].kind)
      assert.near(0.05 + 0.1 + 0.2, slept, 1e-9)
    end)

    it("fail = closed: resumes when Redis comes back", function()
      local late = rh.start()
      local url = late.url
      late:stop()
      local tries = 0
      local lim
      lim = redis.rate_limiter{ url = url, per_minute = 60,
                                on_error = function()
                                  tries = tries + 1
                                  if tries == 2 then
                                    late = rh.start{ port = tonumber(url:match(":(%d+)/")) }
                                  end
                                end }
      assert.equal(0, lim:take())
      assert.equal(2, tries)
      late:stop()
    end)

    it("fail = open: paces locally at the full rate until Redis is back", function()
      local port = rh.free_port()
      local clock = 50
      local lim = redis.rate_limiter{ url = "redis://127.0.0.1:" .. port, limit = 2,
                                      window = 10, margin = 0, fail = "open",
                                      now = function() return clock end }
      assert.same({ 0, 0, 10 }, { lim:take(), lim:take(), lim:take() })
    end)
  end)
end)
