-- core.decode_envelope: every documented envelope shape, nulls, arrays, and non-envelopes.
local core = require "chatmaid.core"

describe("core.decode_envelope()", function()
  local decode = core.decode_envelope

  it("returns data of a success envelope", function()
    local ok, data, enveloped = decode(200, '{"success":true,"data":{"id":"msg_1","n":3}}')
    assert.is_true(ok)
    assert.is_true(enveloped)
    assert.same({ id = "msg_1", n = 3 }, data)
  end)

  it("drops nulls from objects and arrays", function()
    local _, d = decode(200, '{"success":true,"data":{"a":null,"b":[1,null,2],"c":{"d":null}}}')
    assert.is_nil(d.a)
    assert.same({ 1, 2 }, { d.b[1], d.b[2] })
    assert.equal(2, #d.b)
    assert.is_nil(next(d.c))
  end)

  it("marks arrays, empty ones too, and leaves objects unmarked", function()
    local _, d = decode(200, '{"success":true,"data":{"e":[],"s":[ \n ],"o":{},"x":["[]"]}}')
    assert.equal(core.array_mt, getmetatable(d.e))
    assert.equal(core.array_mt, getmetatable(d.s))
    assert.is_nil(next(d.e))
    assert.is_nil(getmetatable(d.o))
    assert.equal("[]", d.x[1])   -- inside strings nothing is rewritten
  end)

  it("keeps strings that look like JSON intact, with escapes", function()
    local _, d = decode(200, [[{"success":true,"data":{"s":"a \"[]\" \\ [ ]"}}]])
    assert.equal('a "[]" \\ [ ]', d.s)
  end)

  it("gives integers for integral numbers", function()
    local _, d = decode(200, '{"success":true,"data":{"page":1,"x":2.5}}')
    assert.equal("1", tostring(d.page))
    assert.equal(2.5, d.x)
  end)

  it("flattens the validation error envelope", function()
    local ok, f = decode(400, [[{"success":false,"error":"Bad Request","message":
      ["Phone number must be in E.164 format (e.g., +1987654321)","to must be a string"],
      "statusCode":400,"timestamp":"2026-02-06T14:22:30.000Z","path":"/v1/messages/send"}]])
    assert.is_false(ok)
    assert.equal("Bad Request", f.error)
    assert.equal(2, #f.messages)
    assert.equal("Phone number must be in E.164 format (e.g., +1987654321); to must be a string",
                 f.message)
    assert.equal(400, f.status_code)
    assert.equal("/v1/messages/send", f.path)
    assert.equal("2026-02-06T14:22:30.000Z", f.timestamp)
  end)

  it("flattens the rate limit envelope", function()
    local ok, f = decode(429, '{"success":false,"error":"Rate limit exceeded","retryAfter":60}')
    assert.is_false(ok)
    assert.equal(60, f.retry_after)
    assert.equal("Rate limit exceeded", f.message)
    assert.equal(0, #f.messages)
    assert.equal(core.array_mt, getmetatable(f.messages))
  end)

  it("keeps the conversations API's details", function()
    local ok, f = decode(502, [[{"success":false,
      "error":"WhatsApp API error: Message failed to send",
      "details":{"code":131047,"title":"Re-engagement message"}}]])
    assert.is_false(ok)
    assert.equal(131047, f.details.code)
    assert.equal("Re-engagement message", f.details.title)
  end)

  it("accepts a single message string", function()
    local _, f = decode(404, '{"success":false,"error":"Not Found","message":"gone"}')
    assert.same({ "gone" }, { f.messages[1] })
    assert.equal("gone", f.message)
  end)

  it("treats a bare JSON object as unenveloped data on 2xx", function()
    local ok, d, enveloped = decode(200, '{"data":[],"total":0,"hasNext":false}')
    assert.is_true(ok)
    assert.is_false(enveloped)
    assert.is_false(d.hasNext)
  end)

  it("reads a bare object on an error status as an error", function()
    local ok, f = decode(500, '{"oops":1}')
    assert.is_false(ok)
    assert.is_nil(f.error)
  end)

  local bad = {
    { "", "empty body" },
    { "  \r\n ", "empty body" },
    { "<html><body>502 Bad Gateway</body></html>", "an HTML page instead of JSON" },
    { "[1,2]", "the body is not a JSON object" },
    { "null", "the body is not a JSON object" },
    { '{"success":tru', "invalid JSON" },
    { '{"success":"yes"}', "the envelope's success field is not a boolean" },
    { string.rep("[", 200), "the body is not a JSON object" },
    { '{"a":' .. string.rep("[", 300) .. string.rep("]", 300) .. "}", "invalid JSON" },
  }
  for _, case in ipairs(bad) do
    it("rejects " .. case[2] .. " (" .. case[1]:sub(1, 20):gsub("%c", "") .. ")", function()
      local ok, reason = decode(200, case[1])
      assert.is_nil(ok)
      assert.truthy(reason:find(case[2], 1, true), reason)
    end)
  end

  it("raises on wrong argument types", function()
    assert.has_error(function() decode("200", {}) end)
    assert.has_error(function() decode(200) end)
  end)
end)

describe("core.decode_json()", function()
  it("decodes an object with the envelope's rules", function()
    local t = core.decode_json('{"a":null,"b":[],"c":1,"d":{"e":[null,2]}}')
    assert.is_nil(t.a)
    assert.equal(core.array_mt, getmetatable(t.b))
    assert.equal("1", tostring(t.c))
    assert.same({ 2 }, { t.d.e[1] })
    assert.equal(1, #t.d.e)
  end)

  it("rejects non-objects, invalid JSON and JSON's non-numbers", function()
    assert.same({ nil, "the body is not a JSON object" }, { core.decode_json("[1]") })
    local t, why = core.decode_json('{"n":NaN}')
    assert.is_nil(t)
    assert.truthy(why:find("^invalid JSON"))
    assert.has_error(function() core.decode_json(nil) end)
  end)
end)
