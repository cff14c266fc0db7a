-- SPDX-License-Identifier: MIT
local socket = require("socket")
local sandbox = require("chatmaid.sandbox")
local H = require("spec.support.sandbox_helper")

describe("chatmaid.sandbox faults", function()
  local sb

  setup(function() sb = sandbox.start{ port = 0 } end)
  teardown(function() if sb then sb:stop() end end)
  before_each(function() assert(sb:reset()) end)

  local auth = { Authorization = "Bearer " .. H.KEY, ["Content-Type"] = "application/json" }
  local SEND = '{"fromPhoneId":"ph_primary","to":"+15557654321","content":"Hi",'
    .. '"idempotencyKey":"fault-1"}'

  local function get(path) return H.build("GET", path or "/v1/account", auth) end
  local function send() return H.build("POST", "/v1/messages/send", auth, SEND) end

  local function fault(spec) assert(sb:fault(spec)) end

  it("html_500: 500 with an HTML body", function()
    fault{ type = "html_500", path = "/v1/account" }
    local r = H.exchange(sb.port, get())
    assert.equal(500, r.status)
    assert.equal("text/html", r.headers["content-type"])
    assert.truthy(r.body:match("^<html>"))
    assert.equal(200, H.exchange(sb.port, get()).status)
  end)

  it("json_502 and json_503 with retry_after", function()
    fault{ faults = { { type = "json_502", path = "/v1/account" },
      { type = "json_503", path = "/v1/account", retry_after = 7 } } }
    local r = H.exchange(sb.port, get())
    assert.equal(502, r.status)
    local b = H.decode(r.body)
    assert.equal("Bad Gateway", b.error)
    assert.equal(502, b.statusCode)
    r = H.exchange(sb.port, get())
    assert.equal(503, r.status)
    assert.equal("7", r.headers["retry-after"])
    assert.equal(7, H.decode(r.body).retryAfter)
    assert.equal("Service Unavailable", H.decode(r.body).error)
  end)

  it("rate_limit: 429 with retryAfter and Retry-After", function()
    fault{ type = "rate_limit", path = "/v1/account", retry_after = 3 }
    local r = H.exchange(sb.port, get())
    assert.equal(429, r.status)
    assert.equal("3", r.headers["retry-after"])
    assert.equal('{"success":false,"error":"Rate limit exceeded","retryAfter":3}', r.body)
  end)

  it("invalid_json, empty_200 and success_false_200", function()
    fault{ type = "invalid_json", path = "/v1/account" }
    fault{ type = "empty_200", path = "/v1/account" }
    fault{ type = "success_false_200", path = "/v1/account" }
    local a = H.exchange(sb.port, get())
    assert.equal(200, a.status)
    assert.equal('{"success":tru', a.body)
    local b = H.exchange(sb.port, get())
    assert.equal(200, b.status)
    assert.equal("0", b.headers["content-length"])
    assert.equal("", b.body)
    local c = H.exchange(sb.port, get())
    assert.equal('{"success":false,"error":"Something"}', c.body)
  end)

  it("delay: the normal response after S seconds", function()
    fault{ type = "delay", path = "/v1/account", seconds = 0.3 }
    local t0 = socket.gettime()
    local r = H.exchange(sb.port, get())
    local dt = socket.gettime() - t0
    assert.equal(200, r.status)
    assert.is_true(dt >= 0.29 and dt < 1.5)
  end)

  it("reset_before: the connection dies before any byte (the send is processed)", function()
    fault{ type = "reset_before", path = "/v1/messages/send", method = "POST" }
    local s = H.connect(sb.port)
    s:send(send())
    local data, err = H.read_all(s)
    s:close()
    assert.equal("", data)
    assert.truthy(err == "closed" or err == "connection reset by peer")
    local stats = sb:stats()
    assert.equal(1, stats.sendRequests)
    assert.equal(1, stats.messagesCreated)
    -- the retry with the same idempotency key gets the original message back
    local r = H.exchange(sb.port, send())
    assert.equal(201, r.status)
    stats = sb:stats()
    assert.equal(2, stats.sendRequests)
    assert.equal(1, stats.messagesCreated)
  end)

  it("reset_mid_body: headers and half the body, then the connection dies", function()
    fault{ type = "reset_mid_body", path = "/v1/account" }
    local s = H.connect(sb.port)
    s:send(get())
    local r, err, partial, status, headers = H.read_response(s)
    s:close()
    assert.is_nil(r)
    assert.truthy(err == "closed" or err == "connection reset by peer")
    assert.equal(200, status)
    local n = tonumber(headers["content-length"])
    assert.equal(math.floor(n / 2), #partial)
  end)

  it("short_body: fewer bytes than Content-Length, then close", function()
    fault{ type = "short_body", path = "/v1/account" }
    local s = H.connect(sb.port)
    s:send(get())
    local r, err, partial, status, headers = H.read_response(s)
    s:close()
    assert.is_nil(r)
    assert.equal("closed", err)
    assert.equal(200, status)
    assert.equal(tonumber(headers["content-length"]) - 100, #partial)
    assert.truthy(partial:match('^{"success":true'))
  end)

  it("truncated_chunked: one chunk and no last chunk", function()
    fault{ type = "truncated_chunked", path = "/v1/account" }
    local s = H.connect(sb.port)
    s:send(get())
    local data, err = H.read_all(s)
    s:close()
    assert.equal("closed", err)
    local head, body = data:match("^(.-\r\n\r\n)(.*)$")
    assert.truthy(head:find("Transfer-Encoding: chunked\r\n", 1, true))
    assert.is_nil(head:find("Content-Length", 1, true))
    local size, chunk = body:match("^(%x+)\r\n(.*)\r\n$")
    assert.equal(tonumber(size, 16), #chunk)
    assert.is_nil(body:find("0\r\n\r\n$"))
  end)

  it("huge_body: a valid-looking body of the given size", function()
    fault{ type = "huge_body", path = "/v1/account", size = 3 * 1024 * 1024 }
    local s = H.connect(sb.port, 10)
    s:send(get())
    local r = H.read_response(s)
    s:close()
    assert.equal(200, r.status)
    assert.equal(3 * 1024 * 1024, #r.body)
    assert.equal(3 * 1024 * 1024, tonumber(r.headers["content-length"]))
    assert.truthy(r.body:match('^{"success":true,"data":{"padding":"x'))
    assert.truthy(r.body:match('x"}}$'))
  end)

  it("huge_body with chunked=true: chunked framing with a last chunk", function()
    fault{ type = "huge_body", path = "/v1/account", size = 300000, chunked = true }
    local s = H.connect(sb.port, 10)
    s:send(get() .. get())
    local line = s:receive("*l")
    assert.equal("HTTP/1.1 200 OK", line)
    local head = {}
    repeat
      line = s:receive("*l")
      if line ~= "" then head[#head + 1] = line end
    until line == ""
    assert.truthy(table.concat(head, "\n"):find("Transfer-Encoding: chunked", 1, true))
    local total, chunks = 0, 0
    while true do
      local size = tonumber(s:receive("*l"), 16)
      if size == 0 then assert.equal("", s:receive("*l")); break end
      local piece = s:receive(size)
      assert.equal(size, #piece)
      assert.equal("", s:receive("*l"))
      total, chunks = total + size, chunks + 1
    end
    assert.equal(300000, total)
    assert.is_true(chunks > 2)
    -- the connection stays usable afterwards
    local r = H.read_response(s)
    s:close()
    assert.equal(200, r.status)
  end)

  it("never_answer: reads the request and never responds", function()
    fault{ type = "never_answer", path = "/v1/messages/send" }
    local s = H.connect(sb.port, 0.5)
    s:send(send())
    local data, err, partial = s:receive(1)
    s:close()
    assert.is_nil(data)
    assert.equal("timeout", err)
    assert.equal("", partial)
    assert.equal(1, sb:stats().messagesCreated)
  end)

  it("trickle: about one byte per interval", function()
    fault{ type = "trickle", path = "/v1/account", seconds = 0.2 }
    local s = H.connect(sb.port, 0.7)
    s:send(get())
    local data, err, partial = s:receive(100)
    s:close()
    assert.is_nil(data)
    assert.equal("timeout", err)
    assert.is_true(#partial >= 3 and #partial <= 5)
    assert.equal(("HTTP/1.1 200"):sub(1, #partial), partial)
  end)

  describe("matching", function()
    it("applies to the next N requests on the path and method only", function()
      fault{ type = "json_502", path = "/v1/account", method = "GET", count = 2 }
      assert.equal(200, H.exchange(sb.port, get("/v1/phone-numbers")).status)
      assert.equal(502, H.exchange(sb.port, get()).status)
      assert.equal(502, H.exchange(sb.port, get()).status)
      assert.equal(200, H.exchange(sb.port, get()).status)
      assert.equal(2, sb:stats().faultsApplied)
    end)
    it("matches a prefix with a trailing *", function()
      fault{ type = "json_503", path = "/v1/phone-numbers*" }
      assert.equal(503, H.exchange(sb.port, get("/v1/phone-numbers/ph_primary/status")).status)
      assert.equal(200, H.exchange(sb.port, get("/v1/phone-numbers")).status)
    end)
    it("refuses an unknown fault type", function()
      local ok, err = sb:fault{ type = "explode", path = "*" }
      assert.is_nil(ok)
      assert.truthy(err:find("unknown fault type: explode", 1, true))
    end)
  end)

  describe("processing of sends", function()
    it("does not create the message for response faults (json_503)", function()
      fault{ type = "json_503", path = "/v1/messages/send" }
      assert.equal(503, H.exchange(sb.port, send()).status)
      local stats = sb:stats()
      assert.equal(1, stats.sendRequests)
      assert.equal(0, stats.messagesCreated)
    end)
    it("honours process=true", function()
      fault{ type = "json_503", path = "/v1/messages/send", process = true }
      assert.equal(503, H.exchange(sb.port, send()).status)
      assert.equal(1, sb:stats().messagesCreated)
    end)
    it("honours process=false for a reset", function()
      fault{ type = "reset_before", path = "/v1/messages/send", process = false }
      local s = H.connect(sb.port)
      s:send(send())
      local data = H.read_all(s)
      s:close()
      assert.equal("", data)
      assert.equal(0, sb:stats().messagesCreated)
    end)
    it("processes short_body sends (a retry finds the original)", function()
      fault{ type = "short_body", path = "/v1/messages/send" }
      local s = H.connect(sb.port)
      s:send(send())
      local _, _, partial = H.read_response(s)
      s:close()
      local first = partial:match('"id":"(msg_%x+)"')
      local r = H.exchange(sb.port, send())
      assert.equal(first, H.decode(r.body).data.id)
      assert.equal(1, sb:stats().messagesCreated)
    end)
  end)
end)
