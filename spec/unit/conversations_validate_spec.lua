-- SPDX-License-Identifier: MIT
-- chatmaid.conversations against a fake transport: validation (nothing sent), request
-- bodies, error classification and the iterator's guards.
local conversations = require "chatmaid.conversations"
local cjson = require "cjson"

local OK_SEND = '{"success":true,"data":{"vendorMessageId":"wamid.X","waMessageId":"msg_1",'
  .. '"status":"sent","conversationId":"conv_1","contactId":"contact_1"}}'

-- fake(responses): each response is { status, body, headers } or a function(req) -> same;
-- the last one repeats. fake.requests records what was sent.
local function fake(responses)
  local t = { requests = {} }
  function t.request(_, req)
    t.requests[#t.requests + 1] = req
    local r = responses[math.min(#t.requests, #responses)]
    if type(r) == "function" then return r(req) end
    if r.kind then return nil, r.kind, r.message or "fake", 0 end
    return { status = r.status, body = r.body, headers = r.headers or {} }
  end
  return t
end

local function client(responses, opts)
  local tr = fake(responses or { { status = 200, body = OK_SEND } })
  local sleeps = {}
  local o = { base_url = "https://api.example.com", api_key = "key_123", transport = tr,
              sleep = function(s) sleeps[#sleeps + 1] = s end, random = function() return 0 end }
  for k, v in pairs(opts or {}) do o[k] = v end
  local c = assert(conversations.new(o))
  return c, tr, sleeps
end

local function body_of(tr, i)
  return cjson.decode(tr.requests[i or 1].body)
end

describe("chatmaid.conversations", function()
  describe("new()", function()
    it("requires base_url", function()
      local c, err = conversations.new{ api_key = "k" }
      assert.is_nil(c)
      assert.equal("validation", err.kind)
      assert.equal("base_url is required: the conversations API has no default host (pass "
        .. "base_url or set CHATMAID_CONVERSATIONS_BASE_URL)", err.message)
    end)

    it("rejects a key with whitespace", function()
      local _, err = conversations.new{ api_key = "k 1", base_url = "https://x.example" }
      assert.equal("api_key contains whitespace or control characters: check how it was "
        .. "copied", err.message)
    end)

    it("needs no sk_ prefix", function()
      assert.truthy(conversations.new{ api_key = "any-token", base_url = "https://x.example" })
    end)

    it("rejects plain http to a remote host", function()
      local _, err = conversations.new{ api_key = "k", base_url = "http://x.example" }
      assert.equal("validation", err.kind)
      assert.matches("must use https", err.message)
    end)

    it("raises on unknown options", function()
      assert.has_error(function()
        conversations.new{ api_key = "k", base_url = "https://x.example", colour = 1 }
      end, "chatmaid: new: unknown parameter 'colour'")
    end)

    it("raises after close and closes twice", function()
      local c = client()
      assert.is_true(c:close())
      assert.is_true(c:close())
      assert.has_error(function() c:send_text{ to = "+15557654321", text = "x" } end,
        "chatmaid: attempt to use a closed client (send_text)")
    end)
  end)

  describe("request bodies", function()
    it("send_text", function()
      local c, tr = client()
      local r = assert(c:send_text{ to = "+15557654321", text = "Hello" })
      assert.equal("wamid.X", r.vendorMessageId)
      assert.equal("msg_1", r.waMessageId)
      assert.equal("POST", tr.requests[1].method)
      assert.equal("https://api.example.com/api/whatsapp/messages/send", tr.requests[1].url)
      assert.same({ to = "+15557654321", type = "text", text = "Hello" }, body_of(tr))
      assert.truthy(tr.requests[1].headers[1] == "Authorization: Bearer key_123")
    end)

    it("send_template drops empty arrays and keeps extra component keys", function()
      local c, tr = client()
      assert(c:send_template{ to = "+15557654321", name = "order_update", language = "en",
        components = {
          { type = "body", parameters = { { type = "text", text = "John" },
                                          { type = "text", text = "ORD-456" } } },
          { type = "button", sub_type = "quick_reply", index = 0, parameters = {} },
        } })
      assert.same({ to = "+15557654321", type = "template", template = {
        name = "order_update", language = "en", components = {
          { type = "body", parameters = { { type = "text", text = "John" },
                                          { type = "text", text = "ORD-456" } } },
          { type = "button", sub_type = "quick_reply", index = 0 } } } }, body_of(tr))
    end)

    it("send_media puts the media under its type", function()
      local c, tr = client()
      assert(c:send_media{ to = "+15557654321", type = "document",
        url = "https://example.com/a.pdf", caption = "Invoice", filename = "a.pdf" })
      assert.same({ to = "+15557654321", type = "document", document = {
        url = "https://example.com/a.pdf", caption = "Invoice", filename = "a.pdf" } },
        body_of(tr))
    end)

    it("send_location", function()
      local c, tr = client()
      assert(c:send_location{ to = "+15557654321", latitude = 25.2048, longitude = 55.2708,
        name = "Dubai Mall" })
      assert.same({ to = "+15557654321", type = "location", location = {
        latitude = 25.2048, longitude = 55.2708, name = "Dubai Mall" } }, body_of(tr))
    end)

    it("list_messages builds the query", function()
      local c, tr = client{ { status = 200, body = '{"data":[],"total":0,"page":1,'
        .. '"hasNext":false}' } }
      local page = assert(c:list_messages{ conversation_id = "conv 1", limit = 5,
        before = "msg_9" })
      assert.equal(0, #page.data)
      assert.equal("https://api.example.com/api/whatsapp/messages?conversationId=conv%201"
        .. "&limit=5&before=msg_9", tr.requests[1].url)
      assert.equal("GET", tr.requests[1].method)
      assert.is_nil(tr.requests[1].body)
    end)
  end)

  describe("validation (nothing is sent)", function()
    local cases = {
      { "send_text", { to = "12345", text = "hi" }, 'to must be in E.164 format: \'+\', a '
        .. 'country code starting 1-9, at most 15 digits, no spaces or dashes (like '
        .. '+15557654321); got "12345"' },
      { "send_text", { to = "+15557654321", text = "" }, "text must be a non-empty string" },
      { "send_text", { to = "+15557654321" }, "text must be a non-empty string" },
      { "send_text", { to = "+15557654321", text = string.rep("a", 4097) },
        "text is 4097 characters long (UTF-16 code units); the limit is 4096: split it into "
        .. "several messages" },
      { "send_text", { to = "+15557654321", text = string.rep("\240\159\152\128", 2049) },
        "text is 4098 characters long (UTF-16 code units); the limit is 4096: split it into "
        .. "several messages" },
      { "send_text", { to = "+15557654321", text = "\255" },
        "text is not valid UTF-8 (invalid UTF-8 at byte 1)" },
      { "send_template", { to = "+15557654321", language = "en" },
        "name must be a non-empty string" },
      { "send_template", { to = "+15557654321", name = "x" },
        "language must be a non-empty string" },
      { "send_template", { to = "+15557654321", name = "x", language = "en",
        components = { type = "body" } }, "components must be an array of component tables" },
      { "send_template", { to = "+15557654321", name = "x", language = "en",
        components = { { parameters = {} } } },
        "components[1].type must be a non-empty string (header, body, button)" },
      { "send_template", { to = "+15557654321", name = "x", language = "en",
        components = { { type = "body", parameters = { { type = "text" } } } } },
        "components[1].parameters[1].text must be a non-empty string" },
      { "send_template", { to = "+15557654321", name = "x", language = "en",
        components = { { type = "body", parameters = { { text = "John" } } } } },
        "components[1].parameters[1].type must be a non-empty string" },
      { "send_template", { to = "+15557654321", name = "x", language = "en",
        components = { { type = "body", parameters = { { type = "currency" } } } } },
        "components[1].parameters[1] has type currency but no currency field" },
      { "send_template", { to = "+15557654321", name = "x", language = "en",
        components = { { type = "header", parameters = { { type = "image",
          image = { link = "http://x.example/a.png" } } } } } },
        'components[1].parameters[1].image.link must be a public https:// URL; got '
        .. '"http://x.example/a.png"' },
      { "send_template", { to = "+15557654321", name = "x", language = "en",
        components = { { type = "body", parameters = "John" } } },
        "components[1].parameters must be an array" },
      { "send_media", { to = "+15557654321", type = "sticker", url = "https://x.example/a" },
        "type must be one of audio, document, image, video; got sticker" },
      { "send_media", { to = "+15557654321", url = "https://x.example/a" },
        "type is required: image, document, audio or video" },
      { "send_media", { to = "+15557654321", type = "image" },
        "url is required: the public https:// URL of the media" },
      { "send_media", { to = "+15557654321", type = "image", url = "http://x.example/a.jpg" },
        'url must be a public https:// URL; got "http://x.example/a.jpg"' },
      { "send_media", { to = "+15557654321", type = "audio", url = "https://x.example/a.ogg",
        caption = "hi" }, "caption is not supported for audio messages" },
      { "send_media", { to = "+15557654321", type = "image", url = "https://x.example/a.jpg",
        filename = "a.jpg" }, "filename is only supported for document messages" },
      { "send_location", { to = "+15557654321", latitude = 91, longitude = 0 },
        "latitude must be a number from -90 to 90; got 91" },
      { "send_location", { to = "+15557654321", latitude = 0, longitude = -180.5 },
        "longitude must be a number from -180 to 180; got -180.5" },
      { "send_location", { to = "+15557654321", latitude = "25.2", longitude = 55.2 },
        "latitude must be a number from -90 to 90; got 25.2" },
      { "send_location", { to = "+15557654321", latitude = 0 / 0, longitude = 0 },
        "latitude must be a number from -90 to 90; got " .. tostring(0 / 0) },
      { "send_location", { to = "+15557654321", latitude = 1, longitude = 1, name = "" },
        "name must be a non-empty string" },
      { "list_messages", { conversation_id = "" }, "conversation_id must be a non-empty string" },
      { "list_messages", { conversation_id = "c", limit = 0 },
        "limit must be an integer 1..100; got 0" },
      { "list_messages", { conversation_id = "c", limit = 101 },
        "limit must be an integer 1..100; got 101" },
      { "list_messages", { conversation_id = "c", before = "" },
        "before must be a non-empty string" },
    }
    for _, case in ipairs(cases) do
      local method, params, message = case[1], case[2], case[3]
      it(method .. ": " .. message:sub(1, 60), function()
        local c, tr = client()
        local r, err = c[method](c, params)
        assert.is_nil(r)
        assert.equal("validation", err.kind)
        assert.equal(message, err.message)
        assert.same({ message }, err.messages)
        assert.equal(0, #tr.requests)
        assert.is_false(err.retryable)
      end)
    end

    it("reports every problem at once", function()
      local c, tr = client()
      local _, err = c:send_location{ to = "555", latitude = 100, longitude = 200 }
      assert.equal(3, #err.messages)
      assert.equal(table.concat(err.messages, "; "), err.message)
      assert.equal(0, #tr.requests)
    end)

    it("accepts exactly 4096 UTF-16 units (2048 emoji)", function()
      local c, tr = client()
      assert(c:send_text{ to = "+15557654321", text = string.rep("\240\159\152\128", 2048) })
      assert.equal(1, #tr.requests)
    end)

    it("raises on unknown parameters and wrong call shapes", function()
      local c = client()
      assert.has_error(function() c:send_text{ to = "+15557654321", body = "x" } end,
        "chatmaid: send_text: unknown parameter 'body'")
      assert.has_error(function() c:send_text("hi") end,
        "chatmaid: send_text expects a table of parameters (got string)")
      assert.has_error(function() c:messages(42) end,
        "chatmaid: messages expects a conversation id as a string (got number)")
      assert.has_error(function() c.send_text({}, {}) end,
        "chatmaid: send_text must be called as client:send_text(...)")
    end)

    it("messages() yields false, err once for a bad page_size, then ends", function()
      local c, tr = client()
      local it_fn = c:messages("conv_1", { page_size = 0 })
      local v, err = it_fn()
      assert.is_false(v)
      assert.equal("validation", err.kind)
      assert.equal("page_size must be an integer 1..100; got 0", err.message)
      assert.is_nil(it_fn())
      assert.equal(0, #tr.requests)
    end)
  end)

  describe("errors", function()
    it("parses retry_after from the 429 text", function()
      local c, tr = client({ { status = 429, body = '{"success":false,"error":"Rate limit '
        .. 'exceeded. Try again in 60 seconds."}' } }, { max_retry_wait = 10 })
      local _, err = c:list_messages{ conversation_id = "c" }
      assert.equal("rate_limited", err.kind)
      assert.equal(60, err.retry_after)
      assert.equal("Rate limit exceeded. Try again in 60 seconds.", err.message)
      assert.equal(1, #tr.requests)   -- 60 s is more than max_retry_wait: not retried
    end)

    it("prefers the Retry-After header over the text", function()
      local c, _, sleeps = client{ { status = 429, headers = { ["retry-after"] = "2" },
        body = '{"success":false,"error":"Rate limit exceeded. Try again in 60 seconds."}' } }
      local _, err = c:list_messages{ conversation_id = "c" }
      assert.equal(2, err.retry_after)
      assert.same({ 2, 2 }, sleeps)
    end)

    it("marks 131047 as not retryable, keeps details", function()
      local c, tr, sleeps = client{ { status = 502, body = '{"success":false,"error":'
        .. '"WhatsApp API error: Message failed to send","details":{"code":131047,'
        .. '"title":"Re-engagement message"}}' } }
      local _, err = c:send_text{ to = "+15557654321", text = "hi" }
      assert.equal("server", err.kind)
      assert.equal(502, err.status)
      assert.same({ code = 131047, title = "Re-engagement message" }, err.details)
      assert.equal("reengagement_required", err.reason)
      assert.is_false(err.retryable)
      assert.is_nil(err.maybe_sent)
      assert.equal(1, #tr.requests)
      assert.same({}, sleeps)
    end)

    it("recognises a re-engagement title without a code", function()
      local c = client{ { status = 502, body = '{"success":false,"error":"x",'
        .. '"details":{"title":"Re-engagement message"}}' } }
      local _, err = c:list_messages{ conversation_id = "c" }
      assert.equal("reengagement_required", err.reason)
      assert.is_false(err.retryable)
    end)

    it("does not resend after a timeout, but a GET is retried", function()
      local c, tr = client{ { kind = "timeout" } }
      local _, err = c:send_text{ to = "+15557654321", text = "hi" }
      assert.equal("timeout", err.kind)
      assert.is_true(err.maybe_sent)
      assert.is_false(err.retryable)
      assert.equal(1, #tr.requests)
      local c2, tr2 = client{ { kind = "timeout" } }
      local _, err2 = c2:list_messages{ conversation_id = "c" }
      assert.equal("timeout", err2.kind)
      assert.equal(3, #tr2.requests)
      assert.is_nil(err2.maybe_sent)
    end)

    it("resends after a connect failure", function()
      local c, tr = client{ { kind = "connect" }, { status = 200, body = OK_SEND } }
      assert(c:send_text{ to = "+15557654321", text = "hi" })
      assert.equal(2, #tr.requests)
      assert.equal(tr.requests[1].body, tr.requests[2].body)
    end)

    it("does not resend after a 500, resends after a 503 with Retry-After", function()
      local c, tr = client{ { status = 500, body = '{"success":false,"error":"boom"}' } }
      local _, err = c:send_text{ to = "+15557654321", text = "hi" }
      assert.equal("server", err.kind)
      assert.is_true(err.maybe_sent)
      assert.equal(1, #tr.requests)
      local c2, tr2 = client{ { status = 503, headers = { ["retry-after"] = "1" },
        body = '{"success":false,"error":"busy"}' }, { status = 200, body = OK_SEND } }
      assert(c2:send_text{ to = "+15557654321", text = "hi" })
      assert.equal(2, #tr2.requests)
    end)
  end)

  describe("messages()", function()
    it("passes unknown types through and gives known types a content table", function()
      local c = client{ { status = 200, body = '{"data":[{"id":"m2","type":"sticker",'
        .. '"content":{"url":"https://x/s.webp","animated":false}},{"id":"m1",'
        .. '"type":"text","content":null}],"total":2,"page":1,"hasNext":false}' } }
      local got = {}
      for m in c:messages("conv_1") do got[m.id] = m end
      assert.same({ url = "https://x/s.webp", animated = false }, got.m2.content)
      assert.same({}, got.m1.content)
    end)

    it("sends limit and the oldest message's id as the next cursor", function()
      local c, tr = client{
        { status = 200, body = '{"data":[{"id":"m2","timestamp":"2026-05-16T10:30:00Z"},'
          .. '{"id":"m3","timestamp":"2026-05-16T10:30:05Z"}],"hasNext":true}' },
        { status = 200, body = '{"data":[{"id":"m1","timestamp":"2026-05-16T10:29:00Z"}],'
          .. '"hasNext":false}' } }
      local got = {}
      for m in c:messages("conv_1", { page_size = 2 }) do got[#got + 1] = m.id end
      assert.same({ "m3", "m2", "m1" }, got)
      assert.equal("https://api.example.com/api/whatsapp/messages?conversationId=conv_1"
        .. "&limit=2", tr.requests[1].url)
      assert.equal("https://api.example.com/api/whatsapp/messages?conversationId=conv_1"
        .. "&limit=2&before=m2", tr.requests[2].url)
      assert.equal(2, #tr.requests)
    end)

    it("yields a repeated page once, then a server error", function()
      local c, tr = client{ { status = 200, body = '{"data":[{"id":"m1","type":"text",'
        .. '"content":{"text":"a"}}],"total":9,"page":1,"hasNext":true}' } }
      local it_fn = c:messages("conv_1", { page_size = 1 })
      assert.equal("m1", it_fn().id)            -- first page
      local v, err = it_fn()                    -- second page: the same message again
      assert.is_false(v)
      assert.equal("server", err.kind)
      assert.is_false(err.retryable)
      assert.is_nil(it_fn())
      assert.equal(2, #tr.requests)
    end)

    it("a bad page_order is a validation error; nothing is sent", function()
      local c, tr = client{}
      local it_fn = c:messages("conv_1", { page_order = "newest" })
      local v, err = it_fn()
      assert.is_false(v)
      assert.equal("validation", err.kind)
      assert.equal("page_order must be one of asc, desc; got newest", err.message)
      assert.is_nil(it_fn())
      assert.equal(0, #tr.requests)
    end)

    it("yields false, err once on a failed page", function()
      local c = client{ { status = 404, body = '{"success":false,"error":"Conversation not '
        .. 'found"}' } }
      local it_fn = c:messages("conv_x")
      local v, err = it_fn()
      assert.is_false(v)
      assert.equal("not_found", err.kind)
      assert.equal("Conversation not found", err.message)
      assert.is_nil(it_fn())
    end)
  end)
end)
