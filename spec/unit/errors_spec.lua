local errors = require "chatmaid.errors"
local url = require "chatmaid.url"

describe("chatmaid.errors", function()
  it("formats one readable line", function()
    local e = errors.new("not_found", "Message not found",
                         { method = "GET", path = "/v1/messages/x", status = 404 })
    assert.equal("chatmaid not_found: Message not found (GET /v1/messages/x, HTTP 404)",
                 tostring(e))
    assert.is_false(e.retryable)
    assert.is_true(errors.is(e))
    assert.is_false(errors.is({ kind = "x" }))
  end)
  it("mentions the attempts when there were several", function()
    local e = errors.new("server", "boom", { attempts = 3 })
    assert.equal("chatmaid server: boom (3 attempts)", tostring(e))
    assert.is_true(e.retryable)
  end)
  it("raises on an unknown kind", function()
    assert.has_error(function() errors.new("oops", "x") end,
                     "chatmaid.errors: unknown error kind 'oops'")
  end)
  it("maps statuses to kinds", function()
    assert.same({ "auth", "permission", "not_found", "rate_limited", "invalid_request",
                  "invalid_request", "server", "server" },
                { errors.kind_for_status(401), errors.kind_for_status(403),
                  errors.kind_for_status(404), errors.kind_for_status(429),
                  errors.kind_for_status(400), errors.kind_for_status(409),
                  errors.kind_for_status(500), errors.kind_for_status(503) })
  end)
end)

describe("chatmaid.url", function()
  it("percent-encodes everything but the unreserved set", function()
    assert.equal("%2B15551234567", url.encode("+15551234567"))
    assert.equal("a%2Fb%3Fc%20d~_.-", url.encode("a/b?c d~_.-"))
  end)
  it("builds stable query strings and skips nils", function()
    assert.equal("?page=2&status=sent", url.query{ { "page", 2 }, { "limit", nil },
                                                   { "status", "sent" } })
    assert.equal("", url.query{})
  end)
end)
