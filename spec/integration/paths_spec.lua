-- Issue 13 item 2: the path on the wire is the path built and reported. libcurl removes dot
-- segments ("." and ".."), so ids that are dot segments are refused before anything is sent,
-- and every other id reaches the server exactly as hooks and last_response() report it.
local raw_server = require "spec.support.raw_server"
local chatmaid = require "chatmaid"
local conversations = require "chatmaid.conversations"
local url = require "chatmaid.url"

local BODY = '{"success":true,"data":{"id":"msg_1","status":"sent","connectionStatus":'
             .. '"connected"}}'

local function start()
  local resp = os.tmpname()
  local f = assert(io.open(resp, "wb"))
  f:write("HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: " .. #BODY
          .. "\r\n\r\n" .. BODY)
  f:close()
  local log = os.tmpname()
  local srv = raw_server.start(resp, log)
  srv.resp = resp
  return srv
end

local function stop(srv)
  srv:stop()
  os.remove(srv.resp)
  os.remove(srv.log_file)
end

describe("dot segments and the path on the wire #integration", function()
  local srv, c, reported
  before_each(function()
    srv = start()
    reported = {}
    c = assert(chatmaid.new{ api_key = "sk_test_paths_0001", base_url = srv.url,
                             max_retries = 0,
                             on_request = function(r) reported[#reported + 1] = r.path end })
  end)
  after_each(function()
    c:close()
    stop(srv)
  end)

  local refused = {
    { "message", function(cl, id) return cl:message(id) end },
    { "phone_number", function(cl, id) return cl:phone_number(id) end },
    { "phone_status", function(cl, id) return cl:phone_status(id) end },
    { "wait", function(cl, id) return cl:wait(id, { timeout = 1 }) end },
    { "send from", function(cl, id)
        return cl:send{ from = id, to = "+15557654321", content = "hi" }
      end },
    { "list_messages phone_number_id", function(cl, id)
        return cl:list_messages{ phone_number_id = id }
      end },
  }
  for _, case in ipairs(refused) do
    for _, id in ipairs{ ".", ".." } do
      it(case[1] .. "(" .. id .. ") is a validation error and sends nothing", function()
        local v, err = case[2](c, id)
        assert.is_nil(v)
        assert.equal("validation", err.kind)
        assert.truthy(err.message:find("dot segment", 1, true))
        assert.same({}, reported)
        -- the server is still up and saw nothing: one real request proves both
                assert.truthy(c:account())
        assert.same({ "GET /v1/account HTTP/1.1" }, srv:requests())
      end)
    end
  end

  it("sends ids with dots, slashes and percent signs exactly as reported", function()
    local ids = { "a.b", "...", ".a", "a..", "%2e", "%2E%2E", "./..", "../x", "a/../b", "?.#" }
    for _, id in ipairs(ids) do
      assert.truthy(c:message(id))
      assert.truthy(c:phone_status(id))
    end
    local lines = srv:requests()
    assert.equal(2 * #ids, #lines)
    for i, line in ipairs(lines) do
      assert.equal("GET " .. reported[i] .. " HTTP/1.1", line)
    end
    assert.equal("GET /v1/messages/a.b HTTP/1.1", lines[1])
    assert.equal("GET /v1/messages/%252e HTTP/1.1", lines[9])
    assert.equal("GET /v1/phone-numbers/a%2F..%2Fb/status HTTP/1.1", lines[18])
    assert.equal("/v1/phone-numbers/%3F.%23/status", c:last_response().path)
  end)

  it("conversations: dot ids are refused too, and query values go out as built", function()
    local cv = assert(conversations.new{ api_key = "k_paths", base_url = srv.url,
                                         max_retries = 0 })
    local _, err = cv:list_messages{ conversation_id = ".." }
    assert.equal("validation", err.kind)
    _, err = cv:list_messages{ conversation_id = "c1", before = "." }
    assert.equal("validation", err.kind)
    assert.same({}, srv:requests())
    cv:list_messages{ conversation_id = "../c", before = "a.b" }
    assert.equal(cv:last_response().path, srv:requests()[1]:match("^GET (%S+) HTTP/1%.1$"))
    assert.equal("/api/whatsapp/messages?conversationId=..%2Fc&before=a.b",
                 cv:last_response().path)
    cv:close()
  end)
end)

describe("base_url with dot segments #unit", function()
  for _, bad in ipairs{ "http://127.0.0.1:1/a/../b", "http://127.0.0.1:1/./v", "https://x.test/..",
                        "https://x.test/a/%2e%2E/b", "https://x.test/%2E" } do
    it("refuses " .. bad, function()
      local c, err = chatmaid.new{ api_key = "sk_test_paths_0001", base_url = bad }
      assert.is_nil(c)
      assert.equal("validation", err.kind)
      assert.truthy(err.message:find("path segments", 1, true))
    end)
  end
  it("keeps other dots", function()
    local c = assert(chatmaid.new{ api_key = "sk_test_paths_0001",
                                   base_url = "https://x.test/v.1/...a/" })
    assert.equal("https://x.test/v.1/...a", c.base_url)
    c:close()
  end)
  it("url.segment never yields a dot segment", function()
    assert.equal("%2E", url.segment("."))
    assert.equal("%2E%2E", url.segment(".."))
    assert.equal("...", url.segment("..."))
    assert.equal("a.b", url.segment("a.b"))
    assert.equal("%252E", url.segment("%2E"))
  end)
end)
