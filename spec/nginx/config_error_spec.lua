-- SPDX-License-Identifier: MIT
-- A configuration error is reported once, not retried: it would fail the same way on every
-- attempt. Inside nginx, ca_file (a libcurl option) cannot be honoured by cosockets: the
-- error names the nginx.conf directive to use instead.
local H = require "spec.nginx.harness"
local F = require "spec.support.fixtures"

local NAME = "chatmaid.resty configuration errors #nginx"
if H.skip(NAME) then return end

describe(NAME, function()
  local srv = H.serve{
    server = [[
location = /send { content_by_lua_block {
  local attempts = 0
  local c = require("chatmaid").new{ api_key = "${KEY}", base_url = "http://127.0.0.1:1",
                                     max_retries = 3, ca_file = "/etc/ssl/private-ca.pem",
                                     on_request = function() attempts = attempts + 1 end }
  local _, err = c:account()
  ngx.say(err.kind, "|", tostring(err.reason), "|", tostring(err.retryable), "|",
          err.attempts, "|", attempts, "|", err.message)
} }
]],
    vars = { KEY = F.TEST_KEY },
  }

  it("ca_file inside nginx: kind transport, reason config, one attempt, the directive", function()
    local status, body = H.raw(srv.port, "GET", "/send")
    assert.equal(200, status)
    local kind, reason, retryable, attempts, calls, message =
      body:match("([%a_]+)|([^|]*)|([^|]*)|([^|]*)|([^|]*)|([^\r\n]*)")   -- body is chunked
    assert.equal("transport", kind, body)
    assert.equal("config", reason)
    assert.equal("false", retryable)
    assert.equal("1", attempts)
    assert.equal("1", calls)
    assert.truthy(message:find("lua_ssl_trusted_certificate", 1, true), message)
  end)
end)
