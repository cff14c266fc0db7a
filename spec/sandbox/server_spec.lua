-- SPDX-License-Identifier: MIT
local socket = require("socket")
local sandbox = require("chatmaid.sandbox")
local H = require("spec.support.sandbox_helper")

describe("chatmaid.sandbox server", function()
  local sb

  setup(function() sb = sandbox.start{ port = 0 } end)
  teardown(function() if sb then sb:stop() end end)
  before_each(function() assert(sb:reset()) end)

  local auth = { Authorization = "Bearer " .. H.KEY }

  it("serves two requests on one keep-alive connection", function()
    local s = H.connect(sb.port)
    s:send(H.build("GET", "/v1/account", auth))
    local a = H.read_response(s)
    assert.equal(200, a.status)
    assert.equal("keep-alive", a.headers["connection"])
    s:send(H.build("GET", "/v1/phone-numbers", auth))
    local b = H.read_response(s)
    assert.equal(200, b.status)
    s:send(H.build("GET", "/__sandbox/stats", { Connection = "close" }))
    local st = H.read_response(s)
    s:close()
    local stats = H.decode(st.body).data
    assert.equal(1, stats.connectionsAccepted)
    assert.equal(2, stats.requests)
    assert.same({ ["GET /v1/account"] = 1, ["GET /v1/phone-numbers"] = 1 }, stats.byPath)
    assert.equal("close", st.headers["connection"])
  end)

  it("reads bodies exactly by Content-Length (binary bytes, CRLF, then the next request)",
    function()
      local bytes = {}
      for i = 0, 255 do bytes[#bytes + 1] = string.char(i) end
      local body = table.concat(bytes) .. "\r\n\r\nGET / HTTP/1.1\r\n\r\n" .. "\0\0end"
      local s = H.connect(sb.port)
      s:send(H.build("POST", "/__sandbox/echo", {}, body) .. H.build("GET", "/v1/account", auth))
      local r = H.read_response(s)
      assert.equal(200, r.status)
      assert.equal(#body, #r.body)
      assert.equal(body, r.body)
      local r2 = H.read_response(s)
      s:close()
      assert.equal(200, r2.status)
    end)

  it("reads a 500 KB body", function()
    local parts = {}
    for i = 1, 500 * 1024 / 8 do parts[i] = string.format("%07d\n", i) end
    local body = table.concat(parts)
    local s = H.connect(sb.port)
    s:send(H.build("POST", "/__sandbox/echo", {}, body))
    local r = H.read_response(s)
    s:close()
    assert.equal(512000, #r.body)
    assert.equal(body, r.body)
  end)

  it("answers 100 Continue when asked", function()
    local s = H.connect(sb.port)
    s:send(H.build("POST", "/__sandbox/echo", { Expect = "100-continue",
      ["Content-Length"] = "5" }))
    assert.equal("HTTP/1.1 100 Continue", s:receive("*l"))
    assert.equal("", s:receive("*l"))
    s:send("hello")
    local r = H.read_response(s)
    s:close()
    assert.equal("hello", r.body)
  end)

  it("refuses a body over 1 MiB with a 413 envelope", function()
    local s = H.connect(sb.port)
    s:send(H.build("POST", "/v1/messages/send", { ["Content-Length"] = "1048577" }))
    local r = H.read_response(s)
    s:close()
    assert.equal(413, r.status)
    local b = H.decode(r.body)
    assert.equal("Payload Too Large", b.error)
    assert.same({ "Request body is larger than 1048576 bytes" }, b.message)
  end)

  it("reads chunked request bodies (as the service does), keeping the connection", function()
    local s = H.connect(sb.port)
    local body = '{"fromPhoneId":"ph_primary","to":"+15557654321","content":"chunked"}'
    s:send("POST /v1/messages/send HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n"
      .. "Authorization: Bearer " .. H.KEY .. "\r\nContent-Type: application/json\r\n\r\n"
      .. string.format("%x", 10) .. ";ext=1\r\n" .. body:sub(1, 10) .. "\r\n"
      .. string.format("%x", #body - 10) .. "\r\n" .. body:sub(11) .. "\r\n"
      .. "0\r\nX-Trailer: t\r\n\r\n")
    local r = H.read_response(s)
    assert.equal(201, r.status)
    assert.equal("chunked", H.decode(r.body).data.content)
    assert.equal("keep-alive", r.headers["connection"])
    s:send(H.build("GET", "/v1/account", { Authorization = "Bearer " .. H.KEY }))
    assert.equal(200, H.read_response(s).status)
    s:close()
  end)

  it("answers 400 to a bad chunk size and 413 to a chunked body over max_body", function()
    local r = H.exchange(sb.port, "POST /v1/messages/send HTTP/1.1\r\nHost: x\r\n"
      .. "Transfer-Encoding: chunked\r\n\r\nzz\r\n")
    assert.equal(400, r.status)
    assert.same({ "Invalid chunk size" }, H.decode(r.body).message)
    r = H.exchange(sb.port, "POST /v1/messages/send HTTP/1.1\r\nHost: x\r\n"
      .. "Transfer-Encoding: chunked\r\n\r\n100001\r\n")
    assert.equal(413, r.status)
    assert.equal("close", r.headers["connection"])
  end)

  it("answers 400 to a malformed request line and keeps serving", function()
    local r = H.exchange(sb.port, "HELLO\r\n\r\n")
    assert.equal(400, r.status)
    assert.same({ "Malformed request line" }, H.decode(r.body).message)
    assert.equal(200, (H.call(sb, "GET", "/v1/account")))
  end)

  it("survives clients that disconnect in the middle of a request", function()
    for _ = 1, 5 do
      local s = H.connect(sb.port)
      s:send("POST /v1/messages/send HTTP/1.1\r\nContent-Length: 100\r\n\r\n{\"to\":")
      s:close()
      local s2 = H.connect(sb.port)
      s2:send("GET /v1/acc")
      s2:close()
    end
    assert.equal(200, (H.call(sb, "GET", "/v1/account")))
  end)

  it("handles 64 concurrent connections", function()
    local socks = {}
    for i = 1, 64 do socks[i] = H.connect(sb.port) end
    for i = 1, 64 do socks[i]:send(H.build("GET", "/v1/phone-numbers", auth)) end
    for i = 64, 1, -1 do
      local r = H.read_response(socks[i])
      assert.equal(200, r.status)
      socks[i]:close()
    end
    local stats = sb:stats()
    assert.equal(64, stats.byPath["GET /v1/phone-numbers"])
    assert.equal(65, stats.connectionsAccepted)
  end)

  it("does not let a delayed response block other connections", function()
    assert(sb:fault{ type = "delay", path = "/v1/account", seconds = 2 })
    local slow = H.connect(sb.port)
    local t0 = socket.gettime()
    slow:send(H.build("GET", "/v1/account", auth))
    socket.sleep(0.05)
    local fast = H.connect(sb.port)
    fast:send(H.build("GET", "/v1/phone-numbers", auth))
    local r = H.read_response(fast)
    local fast_elapsed = socket.gettime() - t0
    fast:close()
    assert.equal(200, r.status)
    assert.is_true(fast_elapsed < 0.5)
    local rs = H.read_response(slow)
    local slow_elapsed = socket.gettime() - t0
    slow:close()
    assert.equal(200, rs.status)
    assert.is_true(slow_elapsed >= 1.95 and slow_elapsed < 3)
  end)
end)

describe("chatmaid.sandbox control endpoints without --control", function()
  it("are refused with 404", function()
    local sb = sandbox.start{ port = 0, control = false }
    finally(function() sb:stop() end)
    local st, b = sb:request("GET", "/__sandbox/stats")
    assert.equal(404, st)
    assert.same({ "Cannot GET /__sandbox/stats" }, b.message)
    st = sb:request("POST", "/__sandbox/faults", { type = "html_500", path = "*" })
    assert.equal(404, st)
    assert.equal(200, (H.call(sb, "GET", "/v1/account")))
  end)
end)

describe("chatmaid.sandbox.app dispatch", function()
  it("turns a handler error into a 500 envelope", function()
    local api = require("chatmaid.sandbox.api")
    local app = require("chatmaid.sandbox.app").new{ control = true }
    local orig = api.handle
    api.handle = function() error("boom") end
    finally(function() api.handle = orig end)
    local resp = app:dispatch{ method = "GET", path = "/v1/account", query = {}, headers = {},
      body = "" }
    assert.equal(500, resp.status)
    local b = H.decode(resp.body)
    assert.equal("Internal Server Error", b.error)
    assert.same({ "Internal server error" }, b.message)
    assert.equal("/v1/account", b.path)
  end)
end)
