-- SPDX-License-Identifier: MIT
-- chatmaid.loop.luv against the sandbox, on a real libuv loop (lua-luv): sends complete with
-- uv.run(), spawn and cancel from callbacks wake the loop, reset connections and reused
-- descriptors print nothing, stop() releases every handle, uv.run() returns when the work is
-- done. sched.MAX_WAIT (step_timeout's safety net) is raised to 30 s here, so a socket the
-- adapter failed to watch would stall a test instead of being rescued within a second.
local F = require "spec.support.fixtures"
local run = require "spec.cli.run"
local core = require "chatmaid.core"
local sched = require "chatmaid.sched"
local fd_reuse = require "spec.support.fd_reuse"

local has_luv, uv = pcall(require, "luv")
if not has_luv then
  describe("chatmaid.loop.luv #integration", function()
    pending("lua-luv is not installed for " .. _VERSION .. " (Debian: apt-get install lua-luv)")
  end)
  return
end
local luv_loop = require "chatmaid.loop.luv"

-- libuv finishes closing a handle in the loop's next iteration (and luv 1.44 crashes at exit
-- on a handle still closing): every count and every test ends with one.
local function handles()
  uv.run("nowait")
  local n = 0
  uv.walk(function() n = n + 1 end)
  return n
end

-- uv.run() with a watchdog: fails the test instead of hanging when the loop never returns.
local function run_loop(limit)
  local t0 = core.monotime()
  local dog = uv.new_timer()
  local fired = false
  dog:start(math.floor((limit or 10) * 1000), 0, function()
    fired = true
    uv.stop()
  end)
  dog:unref()                -- the watchdog alone must not keep the loop running
  uv.run()
  dog:close()
  uv.run("nowait")           -- let the close finish
  assert.is_false(fired, "uv.run() did not return within " .. (limit or 10) .. " s")
  return core.monotime() - t0
end

local function send(c, i)
  return c:spawn(function()
    return c:send{ from = F.PHONE, to = "+1555765432" .. (i % 10), content = "luv " .. i }
  end)
end

local BACKENDS = core.fdwatch and { "epoll", "sockets" } or { "sockets" }

describe("chatmaid.loop.luv #integration", function()
  local sb = F.block_sandbox{ rate_limit = false }
  local max_wait

  before_each(function()
    max_wait = sched.MAX_WAIT
    sched.MAX_WAIT = 30
  end)
  after_each(function()
    sched.MAX_WAIT = max_wait
    uv.run("nowait")
  end)

  for _, watch in ipairs(BACKENDS) do
    describe("watch = " .. watch, function()
      it("40 concurrent sends held 0.5 s each complete with uv.run(), overlapping", function()
        assert(sb:fault{ path = "/v1/messages/send", method = "POST", count = 40,
                         type = "delay", seconds = 0.5 })
        -- no retries: each of the 40 must succeed on its one attempt. (The sandbox's request
        -- count cannot show that: a send the previous test's close() cut off may reach the
        -- sandbox after this test's reset, and CI once counted 41.)
        local c = F.client(sb, { max_retries = 0 })
        local loop = luv_loop(c, uv, { watch = watch })
        assert.equal(watch, loop.backend)
        local ok, bad = 0, {}
        for i = 1, 40 do
          send(c, i):on_done(function(t)
            local msg, err = t:result()
            if msg and msg.id then ok = ok + 1 else bad[#bad + 1] = tostring(err) end
          end)
        end
        local secs = run_loop(10)
        assert.same({}, bad)
        assert.equal(40, ok)
        assert.is_true(secs < 3, "40 held sends took " .. secs .. " s")  -- not 20 s
        assert.is_true(sb:stats().byPath["POST /v1/messages/send"] >= 40)
        assert.is_nil(c:step_timeout())
        loop:stop()
        c:close()
      end)

      -- (the sockets backend's resets are run in a child process below: luv prints them)
      local it_epoll = watch == "epoll" and it or function() end
      it_epoll("connections reset by the server and reused descriptors: every send completes",
         function()
        local c = F.client(sb, { random = function() return 0 end })  -- shortest backoff
        local loop = luv_loop(c, uv, { watch = watch })
        local reused = fd_reuse(c, uv)
        local results = {}
        local function chain(i)
          if i > 4 then return end
          -- this send's first attempt is reset; its retry opens a new socket, usually on the
          -- number just closed
          assert(sb:fault{ path = "/v1/messages/send", method = "POST", count = 1,
                           type = "reset_before" })
          send(c, i):on_done(function(t)
            local msg, err = t:result()
            results[#results + 1] = msg and msg.status or tostring(err)
            chain(i + 1)
          end)
        end
        chain(1)
        local secs = run_loop(10)
        assert.equal(4, #results)
        for _, r in ipairs(results) do assert.is_not_nil(r:match("^%a+$"), r) end
        assert.is_true(reused() > 0, "no descriptor number was reused")
        assert.is_true(secs < 5, secs)
        assert.equal(8, sb:stats().byPath["POST /v1/messages/send"])
        loop:stop()
        c:close()
      end)

      it("spawn from inside an on_done callback and from another handle's callback wakes it",
         function()
        local c = F.client(sb)
        local loop = luv_loop(c, uv, { watch = watch })
        assert.is_false(uv.loop_alive())          -- nothing to do: no active handle
        local order = {}
        local timer = uv.new_timer()
        timer:start(50, 0, function()             -- the adapter is idle when this spawns
          timer:close()
          send(c, 1):on_done(function(t)
            order[#order + 1] = (t:result()) and "first" or "first failed"
            send(c, 2):on_done(function(t2)       -- spawned inside the loop's step
              order[#order + 1] = (t2:result()) and "second" or "second failed"
            end)
          end)
        end)
        local secs = run_loop(10)
        assert.same({ "first", "second" }, order)
        assert.is_true(secs < 2, secs)            -- woken, not found by a 30 s safety net
        loop:stop()
        c:close()
      end)

      it("cancel from another handle's callback ends the send at once", function()
        assert(sb:fault{ path = "/v1/messages/send", method = "POST", count = 1,
                         type = "delay", seconds = 5 })
        local c = F.client(sb)
        local loop = luv_loop(c, uv, { watch = watch })
        local kind
        local t = send(c, 1):on_done(function(t)
          local _, err = t:result()
          kind = err and err.kind
        end)
        local timer = uv.new_timer()
        timer:start(100, 0, function()
          timer:close()
          assert.is_true(t:cancel())
        end)
        local secs = run_loop(10)
        assert.equal("cancelled", kind)
        assert.is_true(secs < 2, secs)
        loop:stop()
        c:close()
      end)

      it("stop() closes every handle it made, and is idempotent", function()
        assert(sb:fault{ path = "/v1/messages/send", method = "POST", count = 3,
                         type = "delay", seconds = 2 })
        local before = handles()
        local c = F.client(sb)
        local loop = luv_loop(c, uv, { watch = watch })
        local tasks = { send(c, 1), send(c, 2), send(c, 3) }
        local timer = uv.new_timer()
        local during
        timer:start(200, 0, function()            -- the sends are in flight now
          timer:close()
          during = handles()
          assert.is_true(loop:stop())
          assert.is_true(loop:stop())
        end)
        run_loop(5)                               -- returns: stop() left nothing active
        assert.is_true(during > before + 1, "handles while sending: " .. tostring(during))
        assert.equal(before, handles())
        assert.equal("chatmaid.loop.luv (stopped)", tostring(loop))
        for _, t in ipairs(tasks) do assert.is_false(t:done()) end
        c:close()                                 -- the client is still usable, and closable
        for _, t in ipairs(tasks) do assert.equal("cancelled", select(2, t:result()).kind) end
      end)

      it("client:close() from inside on_done stops the loop and releases its handles",
         function()
        local before = handles()
        local c = F.client(sb)
        local loop = luv_loop(c, uv, { watch = watch })
        local second
        send(c, 1):on_done(function() c:close() end)
        second = send(c, 2)
        run_loop(5)
        assert.equal("chatmaid.loop.luv (stopped)", tostring(loop))
        assert.equal(before, handles())
        assert.is_true(second:done())
      end)
    end)
  end

  it("uv.run() returns at once when the client has nothing to do", function()
    local c = F.client(sb)
    local loop = luv_loop(c, uv)
    assert.is_false(uv.loop_alive())
    local secs = run_loop(5)
    assert.is_true(secs < 0.5, secs)
    send(c, 1)                                    -- a spawn arms it again
    assert.is_true(uv.loop_alive())
    run_loop(5)
    assert.is_false(uv.loop_alive())
    loop:stop()
    c:close()
  end)

  it("a raise in on_done goes to opts.on_error; the other sends go on", function()
    local c = F.client(sb)
    local errs = {}
    local loop = luv_loop(c, uv, { on_error = function(e) errs[#errs + 1] = tostring(e) end })
    local ok = 0
    send(c, 1):on_done(function() error("boom from on_done", 0) end)
    for i = 2, 4 do send(c, i):on_done(function(t) if t:result() then ok = ok + 1 end end) end
    run_loop(5)
    assert.equal(3, ok)
    assert.same({ "boom from on_done" }, errs)
    loop:stop()
    c:close()
  end)

  -- A child process: 4 sends one after another, the first one's first two attempts reset
  -- by the server (its third opens a third socket). -> stdout, stderr
  local function child(watch)
    assert(sb:fault{ path = "/v1/messages/send", method = "POST", count = 2,
                     type = "reset_before" })
    local err = os.tmpname()
    local cmd = run.env_prefix{ CHATMAID_API_KEY = F.TEST_KEY, CHATMAID_BASE_URL = sb.url,
                                LUA_PATH = package.path, LUA_CPATH = package.cpath }
                .. " " .. run.LUA .. " " .. run.root .. "spec/support/luv_child.lua 4 " .. watch
                .. " 2>" .. run.quote(err)
    local p = assert(io.popen(cmd))
    local out = p:read("*a")
    p:close()
    local stderr = run.read(err)
    os.remove(err)
    local sent, failed, reused = out:match("sent (%d+) failed (%d+) reused (%d+)")
    assert.equal("4", sent, out .. stderr)
    assert.equal("0", failed, out)
    assert.is_true(tonumber(reused) > 0, out)
    assert.equal(6, sb:stats().byPath["POST /v1/messages/send"])
    return out, stderr
  end

  if core.fdwatch then
    it("watch = epoll: reset connections and reused descriptors print nothing on stderr",
       function()
      local _, stderr = child("epoll")
      assert.equal("", stderr)
    end)
  end

  it("watch = sockets: the same sends complete; luv itself reports each reset", function()
    local _, stderr = child("sockets")
    -- luv 1.44 prints a poll error (EPOLLERR) as EBADF; nothing else may appear
    assert.equal("", (stderr:gsub("EBADF: bad file descriptor\n", "")))
  end)

  describe("misuse", function()
    it("raises on a second loop for the same client, and on bad arguments", function()
      local c = F.client(sb)
      local loop = luv_loop(c, uv)
      assert.has_error(function() luv_loop(c, uv) end,
        "chatmaid.loop.luv: this client is already driven by an event loop (stop that one first)")
      loop:stop()
      luv_loop(c, uv):stop()                      -- after stop() another may drive it
      assert.has_error(function() luv_loop({}, uv) end,
        "chatmaid.loop.luv expects a chatmaid client (got table)")
      assert.has_error(function() luv_loop(c, uv, { wach = "epoll" }) end,
        "chatmaid.loop.luv: unknown option 'wach' (watch, on_error)")
      assert.has_error(function() luv_loop(c, uv, { watch = "select" }) end)
      c:close()
      assert.has_error(function() luv_loop(c, uv) end, "chatmaid.loop.luv: the client is closed")
      assert.equal(luv_loop, require("chatmaid").loop.luv)
    end)

    it("uv defaults to require \"luv\", with a clear error where luv is missing", function()
      local c = F.client(sb)
      local loop = luv_loop(c)                    -- the default: the same module as `uv`
      assert.is_false(uv.loop_alive())
      send(c, 1)
      assert.is_true(uv.loop_alive())             -- armed on the default loop
      run_loop(5)
      loop:stop()
      local saved = package.loaded.luv
      package.loaded.luv = nil
      package.preload.luv = function() error("module 'luv' not found") end
      local ok, err = pcall(luv_loop, c)
      package.preload.luv, package.loaded.luv = nil, saved
      assert.is_false(ok)
      assert.equal("chatmaid.loop.luv: luv is not installed (Debian: lua-luv; LuaRocks: luv); "
                   .. "pass the uv module as the second argument (Neovim: vim.uv)",
                   (tostring(err):gsub("^.-:%d+: ", "")))
      c:close()
    end)
  end)
end)
