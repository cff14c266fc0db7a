-- SPDX-License-Identifier: MIT
-- chatmaid.redis against hostile or broken servers and URLs (issue 23, item 6): nothing
-- raises, no message shows a secret, every command ends by its deadline and costs little CPU.
local conn = require "chatmaid.redis.conn"
local redis = require "chatmaid.redis"
local core = require "chatmaid.core"
local rh = require "spec.support.redis_helper"
local faults = require "spec.support.redis_faults"

local SECRET = "S3cr@t/pw:x"
local ENC = "S3cr%40t%2Fpw%3Ax"

-- Runs f() and returns its results, the wall time and the CPU time it took.
local function timed(f)
  local t0, c0 = core.monotime(), os.clock()
  local r = table.pack(pcall(f))
  return r, core.monotime() - t0, os.clock() - c0
end

local function no_secret(text)
  text = tostring(text)
  for _, s in ipairs({ SECRET, ENC, "S3cr", "t/pw", "pw:x", "S3cr%40t" }) do
    assert.falsy(text:find(s, 1, true), "secret '" .. s .. "' in: " .. text)
  end
end

describe("chatmaid.redis with hostile servers #integration #redis", function()
  describe("URLs", function()
    local good = {
      { "redis://:" .. SECRET .. "@127.0.0.1:6379/0", { password = SECRET, port = 6379 } },
      { "redis://app:" .. SECRET .. "@127.0.0.1:6380/2", { username = "app",
                                                           password = SECRET, db = 2 } },
      { "redis://:" .. ENC .. "@127.0.0.1", { password = SECRET } },
      { "redis://:a@b@c@[::1]:7000", { password = "a@b@c", host = "::1", port = 7000 } },
      { "redis://h:6379?db=3", { host = "h", db = 3 } },
    }
    it("parse passwords holding @, / and : (raw or percent-escaped)", function()
      for _, case in ipairs(good) do
        local u = conn.parse_url(case[1])
        for k, v in pairs(case[2]) do assert.equal(v, u[k], case[1] .. " " .. k) end
      end
    end)

    local bad = {
      "redis://:" .. SECRET .. "@",                    -- no host
      "redis://:" .. SECRET .. "@127.0.0.1:99999/0",   -- port
      "redis://:" .. SECRET .. "@127.0.0.1:6379/x",    -- db
      "redis://:" .. SECRET .. "@h:6379/0?foo=bar",    -- query
      "redis://:" .. ENC .. "@h:port/0",
      "redis://u:" .. SECRET,                          -- forgot the @host
      "redis://:S3cr/t/pw:x",                          -- "/" and ":" without an @
      "rediss://:" .. SECRET .. "@h:6379/0",
      "redis+sentinel://:" .. SECRET .. "@h:26379/mymaster",
      "redis://:" .. SECRET .. "@h:6379/0?ssl=true",
      "http://:" .. SECRET .. "@h",
      ":" .. SECRET .. "@h:6379",
      "h:" .. SECRET,
      "redis://h:6379/0?password=" .. SECRET,
      "redis://h:6379/99999999999",
    }
    it("bad URLs of every shape raise a clear message without the secret", function()
      for _, url in ipairs(bad) do
        local ok, e = pcall(redis.seen_set, { url = url })
        assert.is_false(ok, url)
        assert.truthy(tostring(e):find("chatmaid.redis.seen_set: bad url '", 1, true), e)
        no_secret(e)
        no_secret(conn.redact(url))
      end
    end)

    it("says what to do about TLS and Sentinel (not 'bad db path')", function()
      local function msg(url) return select(2, pcall(conn.parse_url, url)) end
      assert.truthy(msg("redis://h:6379/0?ssl=true"):find("TLS (rediss://) is not supported; "
                    .. "use a local TLS proxy", 1, true))
      assert.truthy(msg("rediss://h"):find("stunnel", 1, true))
      assert.truthy(msg("redis+sentinel://h:26379/m"):find("Redis Sentinel URLs are not "
                    .. "supported: give a redis:// address that always reaches the primary",
                    1, true))
    end)
  end)

  describe("answers", function()
    local function url(port) return "redis://:" .. SECRET .. "@127.0.0.1:" .. port .. "/0" end

    -- The server answers AUTH +OK, then `rest` for everything else.
    local function server(rest)
      return faults.hostile([[
        if cmd == "AUTH" then return "+OK\r\n" end
      ]] .. rest)
    end

    -- One call through conn with a 0.5 s deadline: -> r, err, wall, cpu
    local function one(port, f)
      local c = conn.new{ url = url(port), timeout = 0.5 }
      local r, wall, cpu = timed(function() return f(c) end)
      assert.is_true(r[1], tostring(r[2]))    -- never raises
      return r[2], r[3], wall, cpu
    end

    local cases = {
      { "an array of 536870912 elements", [[return "*536870912\r\n"]], "protocol",
        "array of more than 1048576 elements" },
      { "a 1 GiB bulk string", [[return { "$1073741824\r\n", string.rep("x", 1048576),
        string.rep("x", 1048576) }]], "timeout" },
      { "a reply trickling one byte every 0.3 s", [[return { "+", "O", "K", "\r", "\n",
        delay = 0.3 }]], "timeout", "no answer within 500 ms" },
      { "garbage", [[return "!?garbage\r\n"]], "protocol", "Protocol error" },
      { "replies nested 12 deep", [[return string.rep("*1\r\n", 12) .. ":1\r\n"]],
        "protocol" },
      { "an error echoing the password", [[return "-ERR bad password ]] .. SECRET
        .. [[ and ]] .. SECRET .. [[\r\n"]], "redis" },
      { "a close", [[return nil]], "closed" },
    }
    for _, case in ipairs(cases) do
      it(case[1] .. ": nil, err (" .. case[3] .. ") in bounded time and CPU", function()
        local srv = server(case[2])
        local r, err, wall, cpu = one(srv.port, function(c) return c:call{ "GET", "k" } end)
        srv:stop()
        assert.is_nil(r)
        assert.equal("transport", err.kind)
        assert.equal(case[3], err.reason, tostring(err))
        if case[4] then assert.truthy(tostring(err):find(case[4], 1, true), tostring(err)) end
        no_secret(tostring(err))
        no_secret(err.redis_error)
        assert.truthy(wall < 0.9, wall)
        assert.truthy(cpu < 0.4, cpu)
      end)
    end

    it("a 64 MiB reply stream is cut at 64 MiB (protocol), without waiting for the rest",
       function()
      -- 9 chunks of 8 MiB: over the cap long before the deadline
      local srv = faults.hostile([[
        if cmd == "AUTH" then return "+OK\r\n" end
        local t = { "$1073741824\r\n" }
        for i = 2, 10 do t[i] = string.rep("x", 8 * 1048576) end
        return t]])
      local c = conn.new{ url = url(srv.port), timeout = 10 }
      local r, wall, cpu = timed(function() return c:call{ "GET", "k" } end)
      srv:stop()
      assert.is_true(r[1])
      assert.is_nil(r[2])
      assert.equal("protocol", r[3].reason, tostring(r[3]))
      assert.truthy(tostring(r[3]):find("a reply of more than 64 MiB", 1, true))
      assert.truthy(wall < 8, wall)     -- the cap, not the deadline
      assert.truthy(cpu < 2, cpu)
    end)

    it("a reply of more than 4194304 values, or of many strings over 64 MiB in all: "
       .. "protocol", function()
      for _, case in ipairs({
        { [[local one = "*1048576\r\n" .. string.rep(":1\r\n", 1048576)
            return "*5\r\n" .. string.rep(one, 5)]], "more than 4194304 values in one reply" },
        { [[local one = "$" .. (4 * 1048576) .. "\r\n" .. string.rep("x", 4 * 1048576) .. "\r\n"
            local t = { "*20\r\n" }
            for i = 2, 21 do t[i] = one end
            return t]], "a reply of more than 64 MiB" },
      }) do
        local srv = faults.hostile([[if cmd == "AUTH" then return "+OK\r\n" end ]] .. case[1])
        local c = conn.new{ url = url(srv.port), timeout = 10 }
        local r, wall = timed(function() return c:call{ "GET", "k" } end)
        srv:stop()
        assert.is_true(r[1])
        assert.is_nil(r[2])
        assert.equal("protocol", r[3].reason, tostring(r[3]))
        assert.truthy(tostring(r[3]):find(case[2], 1, true), tostring(r[3]))
        assert.truthy(wall < 8, wall)
      end
    end)

    it("a server redirecting forever (MOVED to itself): reason cluster after 5 hops",
       function()
      local srv = faults.hostile([[
        if cmd == "AUTH" then return "+OK\r\n" end
        return "-MOVED 866 127.0.0.1:" .. PORT .. "\r\n"]])
      local c = conn.new{ url = url(srv.port), timeout = 0.5 }
      local r, wall = timed(function() return c:call{ "GET", "k" } end)
      srv:stop()
      assert.is_true(r[1])
      assert.is_nil(r[2])
      assert.equal("cluster", r[3].reason, tostring(r[3]))
      assert.truthy(tostring(r[3]):find("more than 5 MOVED/ASK redirects", 1, true))
      no_secret(r[3])
      assert.truthy(wall < 0.9, wall)
    end)

    it("SCRIPT LOAD answered with an array or nil: protocol, and the SHA cache is not "
       .. "poisoned for a healthy server", function()
      for _, answer in ipairs({ [[return "*1\r\n$1\r\nx\r\n"]], [[return "$-1\r\n"]],
                                [[return "+" .. string.rep("z", 40) .. "\r\n"]] }) do
        local srv = server(answer)
        local lim = redis.rate_limiter{ url = url(srv.port), per_minute = 60, timeout = 0.5 }
        local ok, w, err = pcall(lim.try_take, lim)
        srv:stop()
        assert.is_true(ok, tostring(w))
        assert.is_nil(w)
        assert.equal("protocol", err.reason, tostring(err))
        assert.truthy(tostring(err):find("SCRIPT LOAD answered ", 1, true), tostring(err))
        no_secret(err)
      end
      local real = rh.start()
      local lim = redis.rate_limiter{ url = real.url, key = "healthy", per_minute = 60 }
      local w, err = lim:try_take()
      real:stop()
      assert.equal(0, w, tostring(err))
    end)

    -- A server that runs no script but answers each of ours with what `by_script` says: the
    -- SHA1 it gives for SCRIPT LOAD is the script's length in 40 digits, so EVALSHA names it.
    local function script_server(by_script)
      local lines = {}
      for len, reply in pairs(by_script) do
        lines[#lines + 1] = ("if len == %d then return %q end"):format(len, reply)
      end
      return server([[
        local n = data:match("LOAD\r\n%$(%d+)\r\n")
        if cmd == "SCRIPT" and n then return "+" .. string.format("%040d", n) .. "\r\n" end
        local len = tonumber(data:match("EVALSHA\r\n%$40\r\n(%d+)\r\n") or "")
        ]] .. table.concat(lines, "\n") .. [[

        return "+OK\r\n"
      ]])
    end

    it("a limiter script answering 1e309 to a pause: protocol, never a sleep", function()
      local limiter = require "chatmaid.redis.limiter"
      local srv = script_server{ [#limiter.SCRIPT] = "$5\r\n1e309\r\n" }
      local lim = redis.rate_limiter{ url = url(srv.port), per_minute = 60, timeout = 0.5 }
      local r = timed(function() return lim:pause_until(lim.now() + 5) end)
      srv:stop()
      assert.is_true(r[1], tostring(r[2]))
      local ok, err = r[2], r[3]
      assert.is_nil(ok)
      assert.equal("protocol", err.reason, tostring(err))
      no_secret(err)
    end)

    it("a campaign whose CLAIM answer is not the script's shape: protocol, no raise",
       function()
      local campaign = require "chatmaid.redis.campaign"
      local chatmaid = require "chatmaid"
      for _, bad in ipairs({ ":5\r\n", "*2\r\n:1\r\n:2\r\n", "$3\r\nabc\r\n",
                             "*6\r\n:1\r\n:0\r\n:0\r\n:0\r\n:0\r\n:0\r\n" }) do
        local srv = script_server{ [#campaign.INIT] = "+fresh e1\r\n",
                                   [#campaign.CLAIM] = bad }
        local c = redis.campaign{ url = url(srv.port), id = "hostile", timeout = 0.5 }
        local client = chatmaid.new{ api_key = "sk_test_x1", base_url = "http://127.0.0.1:9" }
        local r = table.pack(pcall(c.run, c, client, { { from = "ph_1", to = "+15550001111",
                                                          content = "hi" } }))
        srv:stop()
        client:close()
        assert.is_true(r[1], tostring(r[2]))
        assert.is_nil(r[2])
        assert.equal("protocol", r[3].reason, tostring(r[3]))
        no_secret(r[3])
      end
    end)

    it("expect() turns a script's 1e309, NaN or text into protocol errors", function()
      assert.equal(1.5, conn.expect("1.5", "number", "x"))
      assert.equal(7, conn.expect(7, "integer", "x"))
      for _, bad in ipairs({ "1e309", "-1e309", "nan", "inf", "abc", false, { 1 },
                             string.rep("1", 50) }) do
        local v, err = conn.expect(bad, "number", "the limiter script")
        assert.is_nil(v)
        assert.equal("protocol", err.reason)
        assert.truthy(tostring(err):find("the limiter script answered", 1, true))
      end
      local _, e = conn.expect({}, "integer", "EXISTS")
      assert.equal("redis: EXISTS answered an array of 0 where an integer was expected (is "
                   .. "this a Redis server?)", e.message)
      _, e = conn.expect(false, "array", "HGETALL")
      assert.equal("redis: HGETALL answered a nil reply where an array was expected (is "
                   .. "this a Redis server?)", e.message)
      assert.is_nil((conn.expect("1.5", "integer", "x")))
      assert.is_nil((conn.expect(1, "string", "x")))
      assert.is_nil((conn.expect("QUEUED", "ok", "x")))
    end)
  end)
end)
