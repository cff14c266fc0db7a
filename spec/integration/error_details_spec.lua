-- SPDX-License-Identifier: MIT
-- Errors that name the field and the thing (issue 14): err.fields on validation errors,
-- err.resource on not_found, err.request_id in tostring, the nearest name for an unknown
-- parameter, empty environment variables as unset, configuration errors never retried.
local chatmaid = require "chatmaid"
local conversations = require "chatmaid.conversations"
local transport = require "chatmaid.transport"
local F = require "spec.support.fixtures"

-- A transport that answers every request with the same canned response (or failure).
local function canned(status, body, raw_headers, fail_kind)
  local calls = 0
  return {
    request = function()
      calls = calls + 1
      if fail_kind then return nil, fail_kind, "canned failure" end
      return transport.response(status, body, raw_headers or "")
    end,
  }, function() return calls end
end

local function params_of(err)
  local t = {}
  for i, f in ipairs(err.fields) do t[i] = f.param end
  return t
end

describe("error details #integration", function()
  local sb = F.block_sandbox({ rate_limit = false }, { reset = false })
  local c

  setup(function() c = F.client(sb) end)
  teardown(function() c:close() end)

  describe("err.fields on validation errors", function()
    it("names every failing parameter of a send, with its message", function()
      local msg, err = c:send{ from = "ph_primary", to = "5557654321",
                               media_urls = { "https://example.com/a.png", "http://x/b.png" },
                               idempotency_key = string.rep("k", 65) }
      assert.is_nil(msg)
      assert.equal("validation", err.kind)
      assert.same({ "to", "media_urls", "idempotency_key" }, params_of(err))
      for i, f in ipairs(err.fields) do assert.equal(err.messages[i], f.message) end
      assert.truthy(err.fields[2].message:find("^media_urls%[2%]"))
    end)

    it("names from, content, api_key, message id, phone ref and list filters", function()
      local _, err = c:send{ from = "+1 555", to = "+15557654321" }
      assert.same({ "content", "from" }, params_of(err))
      local _, e2 = chatmaid.new{ api_key = "nope", base_url = sb.url }
      assert.same({ { param = "api_key", message = e2.message } }, e2.fields)
      local _, e3 = c:message("")
      assert.same({ "id" }, params_of(e3))
      local _, e4 = c:phone_number("+0")
      assert.same({ "ref" }, params_of(e4))
      local _, e5 = c:list_messages{ limit = 0, status = "lost" }
      assert.same({ "limit", "status" }, params_of(e5))
      local _, e6 = c:usage("year")
      assert.same({ "period" }, params_of(e6))
    end)

    it("on batch items too", function()
      local res = c:send_batch({ { from = "ph_primary", to = "+15557654321", content = "ok" },
                                 { from = "ph_primary", to = "bad", content = "" } })
      assert.truthy(res[1].message)
      local err = res[2].err
      assert.equal("validation", err.kind)
      assert.same({ "to", "content" }, params_of(err))
    end)

    it("on the conversations client", function()
      local cc = assert(conversations.new{ api_key = "k", base_url = sb.url })
      local _, err = cc:send_media{ to = "+15557654321", type = "audio",
                                    url = "ftp://x", caption = "c" }
      assert.same({ "url", "caption" }, params_of(err))
      cc:close()
    end)
  end)

  describe("err.resource on not_found", function()
    it("tells an unknown message from an unknown phone and an unknown sender", function()
      local _, err = c:message("msg_nope")
      assert.equal("not_found", err.kind)
      assert.equal("message", err.resource)
      assert.equal("msg_nope", err.resource_id)

      _, err = c:phone_number("ph_nope")
      assert.equal("phone_number", err.resource)
      assert.equal("ph_nope", err.resource_id)
      _, err = c:phone_status("+15559990000")
      assert.equal("phone_number", err.resource)

      _, err = c:send{ from = "ph_nope", to = "+15557654321", content = "x" }
      assert.equal("not_found", err.kind)
      assert.equal("sender_phone", err.resource)
      assert.equal("ph_nope", err.resource_id)

      _, err = c:send{ from = "+15559990000", to = "+15557654321", content = "x" }
      assert.equal("sender_phone", err.resource)
      assert.equal("+15559990000", err.resource_id)

      _, err = c:wait("msg_nope", { timeout = 1 })
      assert.equal("message", err.resource)
    end)

    it("on batch items whose sender is unknown", function()
      local res = c:send_batch({ { from = "ph_nope", to = "+15557654321", content = "x" } })
      assert.equal("not_found", res[1].err.kind)
      assert.equal("sender_phone", res[1].err.resource)
    end)

    it("conversations: an unknown contact on send", function()
      local tr = canned(404, '{"success":false,"error":"Contact not found for the given phone '
                             .. 'number"}')
      local cc = assert(conversations.new{ api_key = "k", base_url = "http://127.0.0.1:1",
                                           transport = tr })
      local _, err = cc:send_text{ to = "+15557654321", text = "hi" }
      assert.equal("not_found", err.kind)
      assert.equal("contact", err.resource)
      assert.equal("+15557654321", err.resource_id)
      cc:close()
    end)
  end)
end)

describe("error details (canned transport)", function()
  local function client(tr, extra)
    local o = { api_key = F.TEST_KEY, base_url = "http://127.0.0.1:1", transport = tr,
                sleep = function() end }
    for k, v in pairs(extra or {}) do o[k] = v end
    return assert(chatmaid.new(o))
  end

  it("carries the X-Request-Id of an answer and shows it in tostring", function()
    local c = client((canned(404, '{"success":false,"error":"Not Found","message":'
                             .. '["Message not found"]}', "X-Request-Id: req_42\r\n")))
    local _, err = c:message("msg_x")
    assert.equal("req_42", err.request_id)
    assert.equal("chatmaid not_found: Message not found (GET /v1/messages/msg_x, HTTP 404, "
                 .. "request id req_42)", tostring(err))
    local c2 = client((canned(200, "<html>oops</html>", "X-Request-Id: req_43\r\n")))
    local _, e2 = c2:account()
    assert.equal("decode", e2.kind)
    assert.equal("req_43", e2.request_id)
    assert.truthy(tostring(e2):find("request id req_43", 1, true))
  end)

  it("never retries a configuration error", function()
    local tr, calls = canned(nil, nil, nil, "config")
    local c = client(tr, { max_retries = 3 })
    local _, err = c:account()
    assert.equal("transport", err.kind)
    assert.equal("config", err.reason)
    assert.is_false(err.retryable)
    assert.equal(1, err.attempts)
    assert.equal(1, calls())
  end)

  it("suggests the nearest known parameter name", function()
    local c = client((canned(200, '{"success":true,"data":{}}')))
    assert.has_error(function()
      c:send{ to = "+15557654321", mediaUrls = { "https://x/a.png" } }
    end, "chatmaid: send: unknown parameter 'mediaUrls' (did you mean 'media_urls'?)")
    assert.has_error(function() c:send{ to = "+15557654321", idempotencyKey = "k" } end,
      "chatmaid: send: unknown parameter 'idempotencyKey' (did you mean 'idempotency_key'?)")
    assert.has_error(function() c:list_messages{ phoneNumberId = "ph" } end,
      "chatmaid: list_messages: unknown parameter 'phoneNumberId' (did you mean "
      .. "'phone_number_id'?)")
    assert.has_error(function() c:send{ to = "+15557654321", xyz = 1 } end,
      "chatmaid: send: unknown parameter 'xyz'")
    assert.has_error(function() chatmaid.new{ apiKey = "x" } end,
      "chatmaid: new: unknown parameter 'apiKey' (did you mean 'api_key'?)")
  end)
end)

describe("empty environment variables #integration", function()
  local lua = os.getenv("CHATMAID_LUA") or "lua5.4"
  -- os.getenv cannot be set from Lua: a child with the variables, this process's paths
  local function run(env, code)
    local prelude = "package.path = " .. string.format("%q", "lua/?.lua;lua/?/init.lua;"
                    .. package.path) .. " package.cpath = " .. string.format("%q", package.cpath)
    -- stdout only: under `make asan` the child's exit-time LeakSanitizer pass can crash
    -- (a GCC 12 runtime bug) and print to stderr; stderr is kept for failure messages
    local errfile = os.tmpname()
    -- ASAN_OPTIONS: the child needs no leak pass (its crash would also lose buffered stdout)
    local f = assert(io.popen("ASAN_OPTIONS=detect_leaks=0 " .. env .. " " .. lua .. " -e '"
                              .. prelude .. " " .. code .. " io.stdout:flush()' 2>" .. errfile))
    local out = f:read("*a")
    f:close()
    local ef = io.open(errfile)
    local err = ef and ef:read("*a") or ""
    if ef then ef:close() end
    os.remove(errfile)
    return out, err
  end

  it("CHATMAID_BASE_URL= counts as unset: the default host", function()
    local out, err = run("CHATMAID_API_KEY=" .. F.TEST_KEY .. " CHATMAID_BASE_URL=",
                         'local c = assert(require("chatmaid").new()) io.write(c.base_url)')
    assert.equal("https://developers-api.chatmaid.net", out, err)
  end)

  it("CHATMAID_API_KEY= counts as unset: no API key", function()
    local out = run("CHATMAID_API_KEY= CHATMAID_BASE_URL=",
                    'local c, e = require("chatmaid").new() io.write(e.fields[1].param, " ", '
                    .. 'e.message)')
    assert.equal("api_key no API key: pass api_key to chatmaid.new or set CHATMAID_API_KEY", out)
  end)

  it("the conversations variables too", function()
    local out = run("CHATMAID_CONVERSATIONS_API_KEY=k CHATMAID_CONVERSATIONS_BASE_URL=",
                    'local c, e = require("chatmaid.conversations").new() io.write(e.message)')
    assert.truthy(out:find("^base_url is required"))
  end)
end)
