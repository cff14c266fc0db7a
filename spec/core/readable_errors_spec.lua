-- Two unreadable messages (issue 13 item 12): a 3xx with a JSON body said
-- "HTTP 302 with table: 0x55...", and an endless header line said "nomem".
local raw_script = require "spec.support.raw_script"

local function client(srv)
  return assert(require("chatmaid").new{ api_key = "sk_test_sandbox_0000000000000001",
                                         base_url = srv.url, max_retries = 0 })
end

describe("readable errors for hostile answers #integration", function()
  local srv
  after_each(function() if srv then srv:stop() end srv = nil end)

  local function redirect(body)
    return raw_script.start(([[
      while read() do
        local body = %q
        c:send("HTTP/1.1 302 Found\r\nLocation: https://elsewhere.example/v1/account\r\n"
               .. "Content-Type: application/json\r\nContent-Length: " .. #body
               .. "\r\n\r\n" .. body)
      end
    ]]):format(body))
  end

  it("a 302 with a JSON body names the redirect target", function()
    srv = redirect('{"success":true,"data":{"id":"x"}}')
    local acc, err = client(srv):account()
    assert.is_nil(acc)
    assert.equal(302, err.status)
    assert.equal("HTTP 302 redirect to https://elsewhere.example/v1/account (redirects are "
                 .. "not followed)", err.message)
    assert.is_nil(err.message:find("table:", 1, true))
  end)

  it("a 302 with a bare JSON object names the redirect target too", function()
    srv = redirect('{"moved":true}')
    local _, err = client(srv):account()
    assert.equal("HTTP 302 redirect to https://elsewhere.example/v1/account (redirects are "
                 .. "not followed)", err.message)
  end)

  it("a 302 with an error envelope keeps the envelope's message", function()
    srv = redirect('{"success":false,"error":"Found","message":"moved elsewhere"}')
    local _, err = client(srv):account()
    assert.equal("moved elsewhere", err.message)
  end)

  it("a 3xx without Location still says it is a redirect", function()
    srv = raw_script.start[[
      while read() do
        c:send('HTTP/1.1 307 Temporary Redirect\r\nContent-Length: 9\r\n\r\n{"a":[1]}')
      end
    ]]
    local _, err = client(srv):account()
    assert.equal("HTTP 307 redirect (redirects are not followed)", err.message)
  end)

  it("an endless header line is too_large, not nomem", function()
    srv = raw_script.start[[
      if not read() then return end
      c:send("HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nX-Long: ")
      local chunk = string.rep("a", 65536)
      for _ = 1, 100 do if not c:send(chunk) then return end end
    ]]
    local acc, err = client(srv):account()
    assert.is_nil(acc)
    assert.equal("transport", err.kind)
    assert.equal("too_large", err.reason)
    assert.is_false(err.retryable)
    assert.truthy(err.message:find("header line is longer than libcurl's", 1, true),
                  err.message)
  end)

  it("a flood of header lines is too_large, naming the limit", function()
    srv = raw_script.start[[
      if not read() then return end
      c:send("HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n")
      local h = "X-H: " .. string.rep("a", 1000) .. "\r\n"
      for _ = 1, 1000 do if not c:send(h) then return end end
    ]]
    local _, err = client(srv):account()
    assert.equal("transport", err.kind)
    assert.equal("too_large", err.reason)
    assert.truthy(err.message:find("response headers are larger than the 262144 byte limit",
                                   1, true), err.message)
  end)
end)
