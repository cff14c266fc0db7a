-- max_retries = 0 means one request on the wire (issue 13 item 5). libcurl re-sends a request
-- by itself when a reused connection dies before the first response byte; the core refuses
-- that second send, so only the client's own retry loop re-sends (counted in attempts and
-- seen by the hooks). The server here answers the first request of its first connection,
-- reads the second one and closes without answering; later connections answer everything.
local raw_script = require "spec.support.raw_script"

local SERVER = [[
  local function answer(line)
    log(n .. " " .. line)
    local body = '{"success":true,"data":{"id":"msg_1","status":"sent","n":' .. n .. '}}'
    c:send("HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: " .. #body
           .. "\r\n\r\n" .. body)
  end
  local line = read()
  if not line then return end
  answer(line)
  if n == 1 then
    line = read()
    if line then log(n .. " " .. line .. " (closed unanswered)") end
    return
  end
  while true do
    line = read()
    if not line then return end
    answer(line)
  end
]]

describe("a kept-alive connection that dies with a request in flight #integration", function()
  local srv

  before_each(function() srv = raw_script.start(SERVER) end)
  after_each(function() srv:stop() end)

  local function client(opts)
    local o = { api_key = "sk_test_sandbox_0000000000000001", base_url = srv.url,
                sleep = function() end }
    for k, v in pairs(opts) do o[k] = v end
    local hooks = {}
    o.on_request = function(e) hooks[#hooks + 1] = e.attempt end
    return assert(require("chatmaid").new(o)), hooks
  end

  it("max_retries = 0: a GET reaches the server once and fails with 1 attempt", function()
    local c, hooks = client{ max_retries = 0 }
    assert(c:account())
    local acc, err = c:account()
    assert.is_nil(acc)
    assert.equal("transport", err.kind)
    assert.equal(1, err.attempts)
    assert.truthy(err.message:find("not sent again", 1, true), err.message)
    assert.same({ 1, 1 }, hooks)
    assert.same({ "1 GET /v1/account HTTP/1.1",
                  "1 GET /v1/account HTTP/1.1 (closed unanswered)" }, srv:log())
    c:close()
  end)

  it("max_retries = 0: a send is POSTed once", function()
    local c = client{ max_retries = 0 }
    assert(c:send{ from = "ph_primary", to = "+15557654321", content = "one" })
    local m, err = c:send{ from = "ph_primary", to = "+15557654321", content = "two" }
    assert.is_nil(m)
    assert.equal("transport", err.kind)
    assert.equal(1, err.attempts)
    assert.is_string(err.idempotency_key)
    local log = srv:log()
    assert.equal(2, #log)
    assert.truthy(log[2]:find("POST /v1/messages/send", 1, true))
  end)

  it("max_retries = 1: the client's own retry re-sends it, and attempts says 2", function()
    local c, hooks = client{ max_retries = 1 }
    assert(c:account())
    local acc, err = c:account()
    assert.is_nil(err)
    assert.is_true(acc.n > 1)                    -- answered on a new connection
    assert.equal(2, c:last_response().attempt)
    assert.same({ 1, 1, 2 }, hooks)
    assert.equal(3, #srv:log())                  -- three requests for three attempts
    c:close()
  end)
end)
