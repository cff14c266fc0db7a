-- SPDX-License-Identifier: MIT
-- A configuration error (no `thread_pool` in nginx.conf) is reported once, not retried: it
-- would fail the same way on every attempt.
local H = require "spec.nginx.harness"
local F = require "spec.support.fixtures"

local NAME = "chatmaid.resty configuration errors #nginx"
if H.skip(NAME) then return end

describe(NAME, function()
  local srv = H.serve{
    -- no thread_pool line
    server = [[
location = /send { content_by_lua_block {
  local attempts = 0
  local c = require("chatmaid").new{ api_key = "${KEY}", base_url = "http://127.0.0.1:1",
                                     max_retries = 3,
                                     on_request = function() attempts = attempts + 1 end }
  local _, err = c:account()
  ngx.say(err.kind, "|", tostring(err.reason), "|", tostring(err.retryable), "|",
          err.attempts, "|", attempts, "|", err.message)
} }
]],
    vars = { KEY = F.TEST_KEY },
  }

  it("no thread_pool: kind transport, reason config, one attempt, the line to add", function()
    local status, body = H.raw(srv.port, "GET", "/send")
    assert.equal(200, status)
    local kind, reason, retryable, attempts, calls, message =
      body:match("([%a_]+)|([^|]*)|([^|]*)|([^|]*)|([^|]*)|([^\r\n]*)")   -- body is chunked
    assert.equal("transport", kind, body)
    assert.equal("config", reason)
    assert.equal("false", retryable)
    assert.equal("1", attempts)
    assert.equal("1", calls)
    assert.truthy(message:find("thread_pool chatmaid threads=16;", 1, true), message)
  end)
end)
