-- chatmaid.core sessions: argument checks, lifetime, and the raw transfer results.
local core = require "chatmaid.core"
local F = require "spec.support.fixtures"

describe("chatmaid.core", function()
  describe("session()", function()
    it("raises on bad option types", function()
      assert.has_error(function() core.session(5) end)
      assert.has_error(function() core.session{ timeout_ms = "x" } end,
                       "chatmaid.core.session: option 'timeout_ms' must be a number")
      assert.has_error(function() core.session{ timeout_ms = 0 } end,
                       "chatmaid.core.session: option 'timeout_ms' must be 1..86400000")
      assert.has_error(function() core.session{ user_agent = 1 } end,
                       "chatmaid.core.session: option 'user_agent' must be a string")
      assert.has_error(function() core.session{ http_version = "3" } end,
                       'chatmaid.core.session: option \'http_version\' must be "1.1" or "2"')
      assert.has_error(function() core.session{ proxy = 1 } end,
                       "chatmaid.core.session: option 'proxy' must be a string or false")
    end)

    it("checks request arguments before doing anything", function()
      local s = core.session()
      assert.has_error(function() s:request("GET") end)
      assert.has_error(function() s:request("GET", "http://127.0.0.1:1/", { 1 }) end)
      assert.has_error(function() s:request("GET", "http://127.0.0.1:1/", {}, {}) end)
      assert.has_error(function() s:request("GET", "http://127.0.0.1:1/", {}, nil, 0) end)
      local many = {}
      for i = 1, 65 do many[i] = "X-H" .. i .. ": v" end
      assert.has_error(function() s:request("GET", "http://127.0.0.1:1/", many) end)
      s:close()
    end)

    it("closes idempotently, raises after close, and says so in tostring", function()
      local s = core.session()
      assert.truthy(tostring(s):find("^chatmaid.session %(open%)"))
      assert.is_true(s:close())
      assert.is_true(s:close())
      assert.truthy(tostring(s):find("^chatmaid.session %(closed%)"))
      assert.has_error(function() s:request("GET", "http://127.0.0.1:1/", {}) end,
                       "attempt to use a closed session")
      assert.has_error(function() s:stats() end, "attempt to use a closed session")
    end)

    it("is collected when unreferenced", function()
      local weak = setmetatable({}, { __mode = "v" })
      weak[1] = core.session()
      collectgarbage()
      collectgarbage()
      assert.is_nil(weak[1])
    end)

    it("reports unsupported protocols as transport failures", function()
      local s = core.session()
      local st, kind, msg, code = s:request("GET", "file:///etc/hostname", {})
      assert.is_nil(st)
      assert.equal("transport", kind)
      assert.is_string(msg)
      assert.equal(1, code)   -- CURLE_UNSUPPORTED_PROTOCOL: only http and https are enabled
      s:close()
    end)
  end)

  describe("requests #integration", function()
    local sb = F.block_sandbox({ rate_limit = false }, { reset = false })

    it("returns status, exact body bytes and lowercase headers", function()
      local s = core.session{ timeout_ms = 5000 }
      local body = "bin\0ary\r\n\255" .. string.rep("x", 300000)
      local status, got, headers = s:request("POST", sb.url .. "/__sandbox/echo",
                                             { "Content-Type: application/octet-stream",
                                               "X-Chatmaid-Sandbox: 1" }, body)
      assert.equal(200, status)
      assert.equal(#body, #got)
      assert.equal(body, got)
      assert.is_string(headers["content-length"])
      s:close()
    end)

    it("counts one connection for many requests", function()
      local s = core.session()
      for _ = 1, 10 do
        local st = s:request("GET", sb.url .. "/v1/account",
                             { "Authorization: Bearer " .. F.TEST_KEY })
        assert.equal(200, st)
      end
      assert.same({ connects = 1, requests = 10 }, s:stats())
      s:close()
    end)

    it("opens a new connection for a fresh_connect request", function()
      local s = core.session()
      local auth = { "Authorization: Bearer " .. F.TEST_KEY }
      assert.equal(200, (s:request("GET", sb.url .. "/v1/account", auth)))
      assert.equal(200, (s:request("GET", sb.url .. "/v1/account", auth, nil, nil, true)))
      assert.equal(200, (s:request("GET", sb.url .. "/v1/account", auth, nil, nil, true)))
      assert.equal(3, s:stats().connects)
      s:close()
    end)

    it("runs concurrent transfers through multi and returns each by token", function()
      local s = core.session()
      for i = 1, 8 do
        assert.is_true(s:multi_add(i, "GET", sb.url .. "/v1/account",
                                   { "Authorization: Bearer " .. F.TEST_KEY }))
      end
      assert(s:multi_add(99, "GET", "http://127.0.0.1:1/", {}))
      assert.equal(9, s:multi_pending())
      local got, tries = {}, 0
      while s:multi_pending() > 0 and tries < 500 do
        tries = tries + 1
        for _, r in ipairs(s:multi_poll(50)) do got[r.token] = r end
      end
      for i = 1, 8 do
        assert.equal(200, got[i].status)
        assert.truthy(got[i].body:find('"Sandbox Inc"', 1, true))
      end
      assert.is_nil(got[99].status)
      assert.equal("connect", got[99].kind)
      assert.equal(0, s:multi_pending())
      s:close()
    end)

    it("aborts one transfer by token (multi_remove) and reports the others", function()
      sb:fault{ path = "/v1/phone-numbers", type = "delay", seconds = 2, count = 1 }
      local s = core.session()
      local auth = { "Authorization: Bearer " .. F.TEST_KEY }
      assert.equal(-1, s:multi_timeout())
      assert.same({}, s:multi_fds())
      assert(s:multi_add(1, "GET", sb.url .. "/v1/phone-numbers", auth))
      assert(s:multi_add(2, "GET", sb.url .. "/v1/account", auth))
      assert.is_true(s:multi_timeout() >= 0)
      local got, seen_fd, t0 = {}, false, core.monotime()
      while not got[2] and core.monotime() - t0 < 5 do
        for _, r in ipairs(s:multi_poll(20)) do got[r.token] = r end
        for fd, ev in pairs(s:multi_fds()) do
          assert.is_true(fd >= 0)
          assert.truthy(ev == "r" or ev == "w" or ev == "rw")
          seen_fd = true
        end
      end
      assert.equal(200, got[2].status)
      assert.is_true(seen_fd)
      assert.equal(1, s:multi_pending())
      assert.is_true(s:multi_remove(1))
      assert.is_false(s:multi_remove(1))
      assert.is_false(s:multi_remove(42))
      assert.equal(0, s:multi_pending())
      assert.same({}, s:multi_poll(0))
      assert.equal(-1, s:multi_timeout())
      -- the pooled handle serves the next transfer
      assert(s:multi_add(3, "GET", sb.url .. "/v1/account", auth))
      got = {}
      t0 = core.monotime()
      while not got[3] and core.monotime() - t0 < 5 do
        for _, r in ipairs(s:multi_poll(20)) do got[r.token] = r end
      end
      assert.equal(200, got[3].status)
      assert.has_error(function() s:multi_remove("x") end)
      s:close()
      assert.has_error(function() s:multi_fds() end, "attempt to use a closed session")
      assert.has_error(function() s:multi_timeout() end, "attempt to use a closed session")
    end)

    it("frees transfers still in flight on close", function()
      sb:fault{ path = "/v1/phone-numbers", type = "delay", seconds = 1, count = 2 }
      local s = core.session()
      assert(s:multi_add(1, "GET", sb.url .. "/v1/phone-numbers",
                         { "Authorization: Bearer " .. F.TEST_KEY }))
      s:multi_poll(10)
      assert.is_true(s:close())
    end)
  end)

  describe("uuid4()", function()
    it("makes RFC 4122 version 4 ids that do not repeat", function()
      local seen = {}
      for _ = 1, 1000 do
        local u = core.uuid4()
        assert.truthy(u:find("^%x+%-%x+%-4%x%x%x%-[89ab]%x%x%x%-%x+$"), u)
        assert.equal(36, #u)
        assert.is_nil(seen[u])
        seen[u] = true
      end
    end)
  end)
end)
