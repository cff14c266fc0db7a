-- chatmaid.base response mapping, through a canned transport (no network: the transport
-- itself is covered by the integration specs).
local chatmaid = require "chatmaid"

local function client_with(status, body, headers)
  local raw = ""
  for k, v in pairs(headers or {}) do raw = raw .. k .. ": " .. v .. "\r\n" end
  local calls = 0
  local transport = {
    request = function()
      calls = calls + 1
      return require("chatmaid.transport").response(status, body, raw)
    end,
  }
  local c = assert(chatmaid.new{ api_key = "sk_test_unit_0001", base_url = "http://127.0.0.1:1",
                                 transport = transport, sleep = function() end })
  return c, function() return calls end
end

describe("chatmaid.base", function()
  describe("interpret()", function()
    it("never returns nil, nil: a success envelope without data is a decode error", function()
      local c = client_with(200, '{"success":true}')
      local v, err = c:account()
      assert.is_nil(v)
      assert.equal("decode", err.kind)
      assert.equal("HTTP 200 envelope says success but has no data", err.message)
    end)

    it("reads Retry-After from the header when the envelope has no retryAfter", function()
      local c, calls = client_with(429, '{"success":false,"error":"Slow down"}',
                                   { ["Retry-After"] = "7" })
      local _, err = c:account{ max_retries = 1, max_retry_wait = 5 }
      assert.equal("rate_limited", err.kind)
      assert.equal(7, err.retry_after)
      assert.equal(1, calls())   -- 7 s is over max_retry_wait: returned at once
    end)

    it("keeps the request id of an error response", function()
      local c = client_with(500, '{"success":false,"error":"Boom"}', { ["X-Request-Id"] = "req_1" })
      local _, err = c:account{ max_retries = 0 }
      assert.equal("server", err.kind)
      assert.equal("req_1", err.request_id)
      assert.equal("Boom", err.message)
    end)

    it("maps a 2xx JSON object without the envelope to decode", function()
      local c = client_with(200, '{"id":"x"}')
      local _, err = c:account()
      assert.equal("decode", err.kind)
      assert.truthy(err.message:find("not the Chatmaid envelope", 1, true))
    end)
  end)
end)
