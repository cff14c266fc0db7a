-- Long and many error messages: the joined message is exact, and nothing corrupts memory
-- (issue 13 item 1: a separator pushed above a luaL_Buffer in use lost "B" at 1 KiB and
-- crashed client:account() at 5000 bytes). Runs on every Lua CI tests and under make asan.
local core = require "chatmaid.core"
local cjson = require "cjson"
local raw_script = require "spec.support.raw_script"

local function envelope(status, messages)
  return cjson.encode{ success = false, error = "Bad Request", message = messages,
                       statusCode = status }
end

describe("core.decode_envelope() with long and many messages", function()
  it("joins 1023 A's, B and C exactly", function()
    local a = string.rep("A", 1023)
    local ok, f = core.decode_envelope(400, envelope(400, { a, "B", "C" }))
    assert.is_false(ok)
    assert.equal(a .. "; B; C", f.message)
    assert.equal(3, #f.messages)
  end)

  it("joins messages across many buffer blocks (sizes around every power of two)", function()
    for _, n in ipairs{ 1, 255, 256, 511, 512, 1022, 1024, 4095, 8192, 65537 } do
      local a = string.rep("A", n)
      local _, f = core.decode_envelope(400, envelope(400, { a, "B", a, "C" }))
      assert.equal(a .. "; B; " .. a .. "; C", f.message)
    end
  end)

  it("joins 10,000 messages of 100 bytes", function()
    local msgs = {}
    for i = 1, 10000 do msgs[i] = string.format("%05d", i) .. string.rep("x", 95) end
    local ok, f = core.decode_envelope(422, envelope(422, msgs))
    assert.is_false(ok)
    assert.equal(10000, #f.messages)
    assert.equal(table.concat(msgs, "; "), f.message)
    assert.equal(10000 * 100 + 9999 * 2, #f.message)
  end)

  it("skips entries that are not strings or numbers without a stray separator", function()
    local _, f = core.decode_envelope(400,
      '{"success":false,"message":[{"a":1},"x",[],2,null,true,"' .. string.rep("y", 3000) .. '"]}')
    assert.equal("x; 2; " .. string.rep("y", 3000), f.message)
  end)

  it("falls back to the error when no message is a string", function()
    local _, f = core.decode_envelope(400, '{"success":false,"error":"Bad","message":[{}]}')
    assert.equal("Bad", f.message)
  end)
end)

describe("client:account() against a server answering 400 with a long message #integration",
  function()
  local srv
  local long = string.rep("A", 5000)

  setup(function()
    srv = raw_script.start([[
      while true do
        local line = read()
        if not line then return end
        local body = '{"success":false,"error":"Bad Request","statusCode":400,"message":["'
                     .. string.rep("A", 5000) .. '","B","C"]}'
        c:send("HTTP/1.1 400 Bad Request\r\nContent-Type: application/json\r\n"
               .. "Content-Length: " .. #body .. "\r\n\r\n" .. body)
      end
    ]])
  end)
  teardown(function() srv:stop() end)

  it("returns invalid_request with the exact joined message, many times over", function()
    local c = assert(require("chatmaid").new{ api_key = "sk_test_sandbox_0000000000000001",
                                              base_url = srv.url, max_retries = 0 })
    for _ = 1, 50 do
      local acc, err = c:account()
      assert.is_nil(acc)
      assert.equal("invalid_request", err.kind)
      assert.equal(400, err.status)
      assert.equal(long .. "; B; C", err.message)
      assert.equal(3, #err.messages)
      collectgarbage()
    end
    c:close()
  end)
end)

describe("core.decode_envelope() with a message that is not a list", function()
  it("reads an object as no messages (found by fuzz/envelope_fuzz.c)", function()
    local ok, f = core.decode_envelope(502, '{"message":{},"error":"Bad Gateway"}')
    assert.is_false(ok)
    assert.equal(core.array_mt, getmetatable(f.messages))
    assert.equal(0, #f.messages)
    assert.equal("Bad Gateway", f.message)
    local _, g = core.decode_envelope(400, '{"success":false,"message":{"1":"x","a":"y"}}')
    assert.is_nil(next(g.messages))
    assert.is_nil(g.message)
  end)
end)
