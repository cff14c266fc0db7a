-- chatmaid.redis.core, the libhiredis binding (csrc/redis.c, its own C module): replies to Lua
-- values, argument checks, lifetime, failures as nil, kind, message.
local core = require "chatmaid.redis.core"
local rh = require "spec.support.redis_helper"

describe("chatmaid.redis.core #redis", function()
  local srv = rh.serve()

  local function connect()
    return assert(core.redis_connect("127.0.0.1", srv.port, 1000, 1000))
  end

  describe("command()", function()
    it("turns replies into strings, integers, false and arrays", function()
      local c = connect()
      assert.equal("OK", c:command({ "SET", "k", "v\0x" }, 1000))
      assert.equal("v\0x", c:command({ "GET", "k" }, 1000))
      assert.equal(false, c:command({ "GET", "missing" }, 1000))
      assert.equal(3, c:command({ "RPUSH", "l", "a", 2, "c" }, 1000))
      assert.same({ "a", "2", "c" }, c:command({ "LRANGE", "l", 0, -1 }, 1000))
      assert.same({ 1, { "x", false } }, c:command({ "EVAL",
        "return {1, {'x', false}}", 0 }, 1000))
      c:close()
    end)

    it("returns nil, 'redis', text for an error reply and stays usable", function()
      local c = connect()
      local r, kind, msg = c:command({ "NOSUCHCMD" }, 1000)
      assert.is_nil(r)
      assert.equal("redis", kind)
      assert.truthy(msg:find("^ERR unknown command"), msg)
      assert.equal("PONG", c:command({ "PING" }, 1000))
      c:close()
    end)

    it("raises on bad arguments", function()
      local c = connect()
      assert.has_error(function() c:command({}, 1000) end,
                       "bad argument #1 to 'command' (expected 1 to 1024 arguments)")
      assert.has_error(function() c:command({ "GET", {} }, 1000) end,
                       "bad argument #1 to 'command' (argument 2 is a table (expected "
                       .. "string or number))")
      assert.has_error(function() c:command({ "PING" }, 0) end,
                       "bad argument #2 to 'command' (timeout must be 1 ms to 1 day)")
      c:close()
    end)
  end)

  describe("redis_connect()", function()
    it("reports a refused connection as kind connect", function()
      local r, kind, msg = core.redis_connect("127.0.0.1", rh.free_port(), 500, 500)
      assert.is_nil(r)
      assert.equal("connect", kind)
      assert.equal("Connection refused", msg)
    end)

    it("raises on a bad port or timeout", function()
      assert.has_error(function() core.redis_connect("127.0.0.1", 0, 500, 500) end,
                       "bad argument #2 to 'redis_connect' (port out of range)")
      assert.has_error(function() core.redis_connect("127.0.0.1", 1, -1, 500) end,
                       "bad argument #3 to 'redis_connect' (timeout must be 1 ms to 1 day)")
    end)
  end)

  describe("lifetime", function()
    it("close() is idempotent and use after close raises", function()
      local c = connect()
      assert.is_true(c:close())
      assert.is_true(c:close())
      assert.is_false(c:connected())
      assert.has_error(function() c:command({ "PING" }, 1000) end,
                       "attempt to use a closed redis connection")
      assert.truthy(tostring(c):find("^chatmaid.redis %(closed%)"))
    end)

    it("an unclosed connection is released by the GC", function()
      local weak = setmetatable({}, { __mode = "v" })
      weak[1] = connect()
      collectgarbage()
      collectgarbage()
      assert.is_nil(weak[1])
    end)

    it("a timed-out command drops the connection (a late reply must not be read later)",
       function()
      local c = connect()
      local r, kind = c:command({ "EVAL", "local t = redis.call('TIME') "
        .. "while true do local u = redis.call('TIME') "
        .. "if (u[1] - t[1]) * 1000000 + (u[2] - t[2]) > 400000 then return 1 end end", 0 },
        100)
      assert.is_nil(r)
      assert.equal("timeout", kind)
      assert.is_false(c:connected())
      c:close()
    end)
  end)
end)
