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

    it("sends a command larger than the socket buffer whose bytes are NULs", function()
      -- written in parts (16 MiB: over loopback's 4 MiB send buffer): what is left after a
      -- part may start with a NUL byte
      local c = connect()
      local v = string.rep("\0", 16 * 1024 * 1024)
      assert.equal("OK", c:command({ "SET", "big", v }, 5000))
      assert.equal(#v, c:command({ "STRLEN", "big" }, 1000))
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

    it("the socket is close-on-exec: a program the host runs does not inherit it", function()
      -- an inherited copy would keep the connection open at the server after close()
      for _, c in ipairs({ connect(), assert(core.open("127.0.0.1", srv.port)) }) do
        local fd = c:fd()
        assert.is_true(fd > 2)
        local p = io.popen("test -e /proc/self/fd/" .. fd .. " && echo inherited || echo no")
        local out = p:read("*a")
        p:close()
        assert.equal("no\n", out)
        c:close()
      end
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

  describe("non-blocking use: open, send, pump, fd, poll", function()
    it("connects and answers through pump without blocking", function()
      local c = assert(core.open("127.0.0.1", srv.port))
      assert.is_true(c:busy())                  -- connecting
      local r, kind, ev
      repeat
        r, kind, ev = c:pump(0)
        if r == nil then
          assert.equal("again", kind)
          assert.equal("w", ev)
          core.poll({ [c:fd()] = ev }, 100)
        end
      until r ~= nil
      assert.is_true(r)
      assert.is_true(c:send({ "SET", "nb", "1" }))
      assert.has_error(function() c:send({ "PING" }) end,
                       "redis connection busy: a reply is still due")
      assert.equal("OK", c:pump(1000))
      assert.is_false(c:busy())
      assert.is_true(c:pump(0))                 -- nothing pending
      assert.is_true(c:send({ "GET", "nb" }))
      r, kind, ev = c:pump(0)
      if r == nil then
        assert.equal("again", kind)
        assert.equal("r", ev)
        assert.same({ [c:fd()] = true }, core.poll({ [c:fd()] = "r" }, 1000))
        r = c:pump(1000)
      end
      assert.equal("1", r)
      c:close()
      assert.equal(-1, c:fd())
    end)

    it("poll() answers an empty table when nothing is ready, and checks its arguments",
       function()
      local c = connect()
      assert.same({}, core.poll({ [c:fd()] = "r" }, 0))
      assert.has_error(function() core.poll({ x = "r" }, 0) end)
      assert.has_error(function() core.poll({}, -1) end,
                       "bad argument #2 to 'poll' (wait must be 0 ms to 1 day)")
      c:close()
    end)

    it("a refused connect is kind connect from pump", function()
      local c = assert(core.open("127.0.0.1", rh.free_port()))
      local r, kind, msg = c:pump(1000)
      assert.is_nil(r)
      assert.equal("connect", kind)
      assert.equal("Connection refused", msg)
    end)
  end)

  describe("hostile replies", function()
    local faults = require "spec.support.redis_faults"

    local function against(answer, timeout_ms)
      local s = faults.hostile(answer)
      local c = assert(core.redis_connect("127.0.0.1", s.port, 1000, 1000))
      local t0, c0 = os.time(), os.clock()
      local r, kind, msg = c:command({ "GET", "k" }, timeout_ms or 500)
      local cpu = os.clock() - c0
      s:stop()
      c:close()
      assert.truthy(os.time() - t0 <= 2)
      assert.truthy(cpu < 0.5, cpu)
      return r, kind, msg
    end

    it("an array of 536870912 elements fails at once (protocol)", function()
      local r, kind, msg = against([[return "*536870912\r\n"]])
      assert.is_nil(r)
      assert.equal("protocol", kind)
      assert.equal("an array of more than 1048576 elements", msg)
    end)

    it("a server that closes while a large command is being written: kind closed, and no "
       .. "SIGPIPE kills the process", function()
      -- busted's LuaSocket ignores SIGPIPE, and children inherit that: this one runs with
      -- the default action (death) restored, as a host that never loads LuaSocket
      local s = faults.closer()
      local script = os.tmpname()
      local f = assert(io.open(script, "w"))
      f:write("package.cpath = ", string.format("%q", package.cpath), "\n", [[
        local core = require "chatmaid.redis.core"
        local c = assert(core.redis_connect("127.0.0.1", tonumber(arg[1]), 1000, 1000))
        os.execute("sleep 0.1")   -- the server's FIN has come: a write now is answered RST
        local r, kind = c:command({ "SET", "k", string.rep("x", 8 * 1048576) }, 2000)
        print(tostring(r) .. " " .. tostring(kind))
      ]])
      f:close()
      local p = assert(io.popen("env --default-signal=PIPE " .. (os.getenv("CHATMAID_LUA")
                                or "lua5.4") .. " " .. script .. " " .. s.port
                                .. " 2>&1; echo exit:$?"))
      local out = p:read("*a")
      p:close()
      s:stop()
      os.remove(script)
      assert.truthy(out:find("nil closed\nexit:0", 1, true), out)
    end)

    it("nesting deeper than hiredis reads is a protocol error", function()
      local r, kind = against([[return string.rep("*1\r\n", 12) .. ":1\r\n"]])
      assert.is_nil(r)
      assert.equal("protocol", kind)
    end)

    it("a reply trickling in ends at the command's deadline, not per read", function()
      local r, kind, msg = against([[return { "+", "O", "K", "\r", "\n", delay = 0.2 }]],
                                   500)
      assert.is_nil(r)
      assert.equal("timeout", kind)
      assert.equal("no answer within 500 ms", msg)
    end)
  end)
end)
