-- Issue 13 item 8: everything is checked before it is sent. Lists are read raw as cjson
-- encodes them, so a hole, a string key or a fractional key can no longer carry an unchecked
-- value past validation: each is a validation error and nothing reaches the server (a raw
-- server records every request line it gets).
local raw_server = require "spec.support.raw_server"
local chatmaid = require "chatmaid"
local conversations = require "chatmaid.conversations"
local validate = require "chatmaid.validate"

local BODY = '{"success":true,"data":{"id":"msg_1","status":"pending"}}'

local function start()
  local resp = os.tmpname()
  local f = assert(io.open(resp, "wb"))
  f:write("HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: " .. #BODY
          .. "\r\n\r\n" .. BODY)
  f:close()
  local srv = raw_server.start(resp, os.tmpname())
  srv.resp = resp
  return srv
end

local OK = "https://cdn.example.com/a.png"
local METADATA = "http://169.254.169.254/latest/meta-data/"

local bad_lists = {
  { "a hole before javascript:", { OK, nil, "javascript:alert(1)" }, "media_urls[2] is nil" },
  { "file:// past a hole", { [1] = OK, [3] = "file:///etc/passwd" }, "media_urls[2] is nil" },
  { "the metadata URL under a string key", { OK, evil = METADATA }, 'key "evil"' },
  { "a fractional key", { OK, [1.5] = METADATA }, "key number 1.5" },
  { "a zero key", { [0] = METADATA, [1] = OK }, "key number 0" },
  { "only a string key", { url = OK }, 'key "url"' },
  { "a table item", { { OK } }, "media_urls[1] must be a string" },
}

describe("lists are checked as they are sent #integration", function()
  local srv, c, cv
  before_each(function()
    srv = start()
    c = assert(chatmaid.new{ api_key = "sk_test_seq_0001", base_url = srv.url,
                             max_retries = 0 })
    cv = assert(conversations.new{ api_key = "k_seq", base_url = srv.url, max_retries = 0 })
  end)
  after_each(function()
    c:close()
    cv:close()
    srv:stop()
    os.remove(srv.resp)
    os.remove(srv.log_file)
  end)

  for _, case in ipairs(bad_lists) do
    it("send: media_urls with " .. case[1] .. " is a validation error, nothing sent", function()
      local m, err = c:send{ from = "ph_1", to = "+15557654321", content = "x",
                             media_urls = case[2] }
      assert.is_nil(m)
      assert.equal("validation", err.kind)
      assert.truthy(err.message:find(case[3], 1, true), err.message)
      assert.equal("media_urls", err.fields[1].param)
      assert.same({}, srv:requests())
    end)

    it("send_batch: an item whose media_urls has " .. case[1] .. " fails alone", function()
      local results, summary = c:send_batch({
        { from = "ph_1", to = "+15557654321", content = "x", media_urls = case[2] },
      }, { rate_per_minute = false })
      assert.equal("validation", results[1].err.kind)
      assert.truthy(results[1].err.message:find(case[3], 1, true))
      assert.equal(1, summary.failed)
      assert.same({}, srv:requests())
    end)
  end

  it("send: a proper list goes out (and only then)", function()
    c:send{ from = "ph_1", to = "+15557654321", media_urls = { OK, OK .. "?2" } }
    assert.same({ "POST /v1/messages/send HTTP/1.1" }, srv:requests())
  end)

  it("send_batch: items with a hole raise before anything is sent", function()
    local item = { from = "ph_1", to = "+15557654321", content = "x" }
    assert.has_error(function() c:send_batch({ item, nil, item }) end,
                     "chatmaid: send_batch: items must be an array without holes: items[2] is "
                     .. "nil but items[3] is set")
    assert.has_error(function() c:send_batch({ item, extra = item }) end,
                     'chatmaid: send_batch: items must be an array (keys 1..n only); it has '
                     .. 'the key "extra"')
    assert.same({}, srv:requests())
  end)

  it("wait: an until list with a hole raises", function()
    assert.has_error(function() c:wait("msg_1", { ["until"] = { "sent", nil, "bogus" } }) end,
                     "chatmaid: wait: until must be an array without holes: until[2] is nil "
                     .. "but until[3] is set")
    assert.same({}, srv:requests())
  end)

  local bad_components = {
    { "a hole", { { type = "body" }, nil, { type = "body" } }, "components[2] is nil" },
    { "a string key", { { type = "body" }, x = { type = "header" } }, 'key "x"' },
    { "parameters with a hole",
      { { type = "body", parameters = { { type = "text", text = "a" }, nil,
                                        { type = "text", text = "b" } } } },
      "components[1].parameters[2] is nil" },
    { "the metadata URL as a media link",
      { { type = "header", parameters = { { type = "image", image = { link = METADATA } } } } },
      "components[1].parameters[1].image.link must be a public https:// URL" },
    { "the metadata URL under an extra string key of a link table",
      { { type = "header", parameters = { { type = "document",
                                            document = { link = OK, url = METADATA } } } } },
      "components[1].parameters[1].document.url must be a public https:// URL" },
    { "a mixed table", { { type = "body", parameters = { { type = "text", text = "a" },
                                                         extra = METADATA } } },
      'components[1].parameters must be an array (keys 1..n only); it has the key "extra"' },
    { "a function", { { type = "body", f = print } }, "components[1].f must not be a function" },
    { "NaN", { { type = "body", index = 0 / 0 } }, "components[1].index must be a finite number" },
    { "a deep hole", { { type = "button", x = { y = { 1, nil, 3 } } } },
      "components[1].x.y must be an array without holes" },
  }
  for _, case in ipairs(bad_components) do
    it("send_template: components with " .. case[1] .. " is a validation error", function()
      local r, err = cv:send_template{ to = "+15557654321", name = "hello", language = "en",
                                       components = case[2] }
      assert.is_nil(r)
      assert.equal("validation", err.kind)
      assert.truthy(err.message:find(case[3], 1, true), err.message)
      assert.same({}, srv:requests())
    end)
  end

  it("send_template: proper components go out", function()
    local r = cv:send_template{ to = "+15557654321", name = "hello", language = "en",
      components = { { type = "header", parameters = { { type = "image",
                                                         image = { link = OK } } } },
                     { type = "body", parameters = { { type = "text", text = "Ana" } } } } }
    assert.truthy(r)
    assert.same({ "POST /api/whatsapp/messages/send HTTP/1.1" }, srv:requests())
  end)
end)

describe("validate.sequence and validate.plain #unit", function()
  it("accepts proper sequences only", function()
    assert.equal(0, validate.sequence({}, "l"))
    assert.equal(3, validate.sequence({ 1, 2, 3 }, "l"))
    assert.is_nil(validate.sequence({ 1, nil, 3 }, "l"))
    assert.is_nil(validate.sequence({ [2] = 1 }, "l"))
    assert.is_nil(validate.sequence({ [math.huge] = 1 }, "l"))
    assert.is_nil(validate.sequence({ [1e9] = 1 }, "l"))
    assert.is_nil(validate.sequence("x", "l"))
    -- raw: a metatable cannot make a hole look filled
    local proxy = setmetatable({ [1] = "a", [3] = "c" }, { __index = { [2] = "b" },
                                                           __len = function() return 3 end })
    assert.is_nil(validate.sequence(proxy, "l"))
  end)
  it("array_copy sends exactly the checked items", function()
    local t = setmetatable({ "a", "b" }, { __index = function() return "z" end })
    assert.same({ "a", "b" }, validate.array_copy(t))
    assert.is_nil(getmetatable(validate.array_copy(t)))
  end)
  it("plain refuses what cjson would send differently or raise on", function()
    assert.is_nil(validate.plain({ a = { 1, 2, { b = true } }, c = "s", d = 1.5 }, "v"))
    assert.truthy(validate.plain({ 1, a = 2 }, "v"))
    assert.truthy(validate.plain({ a = math.huge }, "v"))
    assert.truthy(validate.plain({ a = io.stdout }, "v"))
    local deep = {}
    local t = deep
    for _ = 1, 10 do t.x = {}; t = t.x end
    assert.equal("v.x.x.x.x.x.x.x.x is nested too deeply (more than 8 levels)",
                 validate.plain(deep, "v"))
  end)
end)
