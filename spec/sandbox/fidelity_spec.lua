-- SPDX-License-Identifier: MIT
-- The sandbox does not flatter (issue 14): what the documented service would refuse, the
-- sandbox refuses too. (a) fromPhoneId is a phone id, not a number; (b) JSON is read only
-- under Content-Type application/json; (c) messages carry the documented fields only;
-- (f) HEAD answers carry no body, the Bearer scheme is case-insensitive. (d), (e) and
-- chunked bodies: spec/sandbox/webhooks_spec.lua and server_spec.lua.
local sandbox = require "chatmaid.sandbox"
local H = require "spec.support.sandbox_helper"
local cjson = require "cjson"

local MISSING = {   -- what the service says about an empty body (class-validator)
  "fromPhoneId should not be empty",
  "fromPhoneId must be a string",
  "Phone number must be in E.164 format (e.g., +1987654321)",
  "to must be a string",
  "content or mediaUrls is required",
}

-- The documented message fields (API reference; deliveredAt/readAt from the older page
-- appear only once a message has those statuses).
local MESSAGE_FIELDS = { "content", "createdAt", "environment", "errorCode", "errorMessage",
  "failedAt", "from", "id", "mediaUrls", "sentAt", "status", "to" }

local function keys(t)
  local k = {}
  for name in pairs(t) do k[#k + 1] = name end
  table.sort(k)
  return k
end

describe("chatmaid.sandbox fidelity", function()
  local sb
  setup(function() sb = sandbox.start{ port = 0, rate_limit = false } end)
  teardown(function() if sb then sb:stop() end end)
  before_each(function() assert(sb:reset()) end)

  local BODY = '{"fromPhoneId":"ph_primary","to":"+15557654321","content":"Hello"}'

  local function post(headers, body)
    headers.Authorization = headers.Authorization or ("Bearer " .. H.KEY)
    local r = H.exchange(sb.port, H.build("POST", "/v1/messages/send", headers, body))
    return r.status, H.decode(r.body), r
  end

  describe("(a) fromPhoneId", function()
    it("an E.164 number is answered as an unknown phone id, for test and live keys", function()
      for _, key in ipairs{ H.KEY, H.LIVE } do
        local st, b = H.call(sb, "POST", "/v1/messages/send",
                             H.send_body{ fromPhoneId = "+15551230001" }, key)
        assert.equal(404, st)
        assert.same({ "Phone number not found" }, b.message)
      end
      assert.equal(0, sb:stats().messagesCreated)
      -- GET /v1/phone-numbers/:id does take a number (documented)
      local st = H.call(sb, "GET", "/v1/phone-numbers/%2B15551230001")
      assert.equal(200, st)
    end)

    it("the library resolves a number to its id first, so sends from a number work", function()
      local c = assert(require("chatmaid").new{ api_key = H.KEY, base_url = sb.url })
      local m = assert(c:send{ from = "+15551230001", to = "+15557654321", content = "x" })
      assert.equal("+15551230001", m.from)
      c:close()
    end)
  end)

  describe("(b) Content-Type", function()
    it("application/json (with a charset too) is read", function()
      assert.equal(201, (post({ ["Content-Type"] = "application/json" }, BODY)))
      assert.equal(201, (post({ ["Content-Type"] = "Application/JSON; charset=utf-8" }, BODY)))
    end)

    it("text/plain, none, or another type: the body is not read: 400, missing fields",
       function()
      for _, ct in ipairs{ "text/plain", false, "application/octet-stream" } do
        local st, b = post({ ["Content-Type"] = ct or nil }, BODY)
        assert.equal(400, st, tostring(ct))
        assert.same(MISSING, b.message)
      end
      assert.equal(0, sb:stats().messagesCreated)
    end)

    it("form-encoded: read as a form, so a JSON text is one unknown property", function()
      local st, b = post({ ["Content-Type"] = "application/x-www-form-urlencoded" }, BODY)
      assert.equal(400, st)
      -- (form decoding turns its "+" into a space)
      assert.equal("property " .. BODY:gsub("%+", " ") .. " should not exist", b.message[1])
      for i, m in ipairs(MISSING) do assert.equal(m, b.message[i + 1]) end
      -- and a real form works, as it does on the service
      st = post({ ["Content-Type"] = "application/x-www-form-urlencoded" },
                "fromPhoneId=ph_primary&to=%2B15557654321&content=Hello+form")
      assert.equal(201, st)
    end)

    it("the conversations API too", function()
      local r = H.exchange(sb.port, H.build("POST", "/api/whatsapp/messages/send",
        { Authorization = "Bearer " .. H.KEY, ["Content-Type"] = "text/plain" },
        '{"to":"+15557654321","type":"text","text":{"body":"hi"}}'))
      assert.equal(400, r.status)
      assert.equal("Missing required field: to", H.decode(r.body).error)
    end)
  end)

  describe("(c) message objects", function()
    it("carry exactly the documented fields: send, get, list, idempotent replay", function()
      local _, sent = H.call(sb, "POST", "/v1/messages/send",
                             H.send_body{ idempotencyKey = "fid-1" })
      assert.same(MESSAGE_FIELDS, keys(sent.data))
      local _, again = H.call(sb, "POST", "/v1/messages/send",
                              H.send_body{ idempotencyKey = "fid-1" })
      assert.equal(sent.data.id, again.data.id)
      assert.same(MESSAGE_FIELDS, keys(again.data))
      local _, got = H.call(sb, "GET", "/v1/messages/" .. sent.data.id)
      assert.same(MESSAGE_FIELDS, keys(got.data))
      local _, list = H.call(sb, "GET", "/v1/messages")
      assert.same(MESSAGE_FIELDS, keys(list.data.data[1]))
    end)
  end)

  describe("(f) HTTP rules", function()
    it("HEAD answers with the GET headers and no body; the connection stays usable",
       function()
      local s = H.connect(sb.port)
      s:send(H.build("HEAD", "/v1/account", { Authorization = "Bearer " .. H.KEY }))
      local line = assert(s:receive("*l"))
      assert.equal("HTTP/1.1 200 OK", line)
      local headers = {}
      while true do
        local h = assert(s:receive("*l"))
        if h == "" then break end
        local k, v = h:match("^([^:]+):%s*(.*)$")
        headers[k:lower()] = v
      end
      assert.is_true(tonumber(headers["content-length"]) > 0)   -- what GET would send
      -- the next bytes on the connection are the next answer, not a body
      s:send(H.build("GET", "/v1/account", { Authorization = "Bearer " .. H.KEY }))
      local r = H.read_response(s)
      s:close()
      assert.equal(200, r.status)
      assert.equal(tonumber(headers["content-length"]), #r.body)
      assert.is_true(cjson.decode(r.body).success)
    end)

    it("HEAD of an unknown path: 404 without a body", function()
      local s = H.connect(sb.port)
      s:send(H.build("HEAD", "/v1/nope", { Authorization = "Bearer " .. H.KEY }))
      s:send(H.build("GET", "/v1/account", { Authorization = "Bearer " .. H.KEY }))
      local line = s:receive("*l")
      assert.equal("HTTP/1.1 404 Not Found", line)
      repeat line = s:receive("*l") until line == ""
      assert.equal("HTTP/1.1 200 OK", s:receive("*l"))
      s:close()
    end)

    it("the Bearer scheme is case-insensitive", function()
      for _, scheme in ipairs{ "Bearer", "bearer", "BEARER", "bEaReR" } do
        local r = H.exchange(sb.port, H.build("GET", "/v1/account",
                                              { Authorization = scheme .. " " .. H.KEY }))
        assert.equal(200, r.status, scheme)
      end
      local r = H.exchange(sb.port, H.build("GET", "/v1/account",
                                            { Authorization = "Basic " .. H.KEY }))
      assert.equal(401, r.status)
      r = H.exchange(sb.port, H.build("GET", "/api/whatsapp/messages?conversationId=x",
                                      { Authorization = "BEARER " .. H.KEY }))
      assert.are_not.equal(401, r.status)
    end)
  end)
end)
