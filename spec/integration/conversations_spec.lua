-- SPDX-License-Identifier: MIT
-- chatmaid.conversations against the sandbox's /api/whatsapp/ emulation, over real sockets.
local F = require "spec.support.fixtures"
local transport_mod = require "chatmaid.transport"
local cjson = require "cjson"

local KEY = "sk_test_sandbox_0000000000000001"
local TO = "+15557654321"
local SEND = "POST /api/whatsapp/messages/send"
local LIST = "GET /api/whatsapp/messages"

describe("chatmaid.conversations against the sandbox #integration", function()
  local sb = F.block_sandbox{ rate_limit = false }

  before_each(function()
    assert(sb:config{ rate_limit = false, conversations_page_order = "asc" })
  end)

  -- A client on the sandbox; sleeps are recorded, not slept. -> client, sleeps
  local function client(opts) return F.conversations_client(sb, opts) end

  local function seed(spec)
    local status, body = sb:request("POST", "/__sandbox/conversations/seed", spec)
    assert.equal(201, status)
    return body.data
  end

  local function count(key)
    return sb:stats().byPath[key] or 0
  end

  -- all messages of a conversation, newest first
  local function all(c, conversation_id)
    local out = {}
    for m, err in c:messages(conversation_id) do
      assert(m, err and tostring(err))
      out[#out + 1] = m
    end
    return out
  end

  describe("sending", function()
    it("sends text and keeps the API's field names", function()
      local c = client()
      local r, err = c:send_text{ to = TO, text = "Hello! How can I help you?" }
      assert.is_nil(err)
      assert.matches("^wamid%.", r.vendorMessageId)
      assert.matches("^msg_", r.waMessageId)
      assert.equal("sent", r.status)
      assert.matches("^conv_", r.conversationId)
      assert.matches("^contact_", r.contactId)
      local msgs = all(c, r.conversationId)
      assert.equal(1, #msgs)
      assert.equal(r.waMessageId, msgs[1].id)
      assert.equal(r.vendorMessageId, msgs[1].waMessageId)
      assert.equal("outbound", msgs[1].direction)
      assert.equal("text", msgs[1].type)
      assert.same({ text = "Hello! How can I help you?" }, msgs[1].content)
      assert.is_nil(msgs[1].senderId)                  -- JSON null is dropped
    end)

    it("creates the contact and conversation on the first send only", function()
      local c = client()
      local a = assert(c:send_text{ to = TO, text = "one" })
      local b = assert(c:send_text{ to = TO, text = "two" })
      local other = assert(c:send_text{ to = "+15557654322", text = "three" })
      assert.equal(a.conversationId, b.conversationId)
      assert.equal(a.contactId, b.contactId)
      assert.are_not.equal(a.conversationId, other.conversationId)
      assert.are_not.equal(a.waMessageId, b.waMessageId)
      local msgs = all(c, a.conversationId)
      assert.equal(2, #msgs)
      assert.equal("two", msgs[1].content.text)        -- newest first
      assert.equal("one", msgs[2].content.text)
    end)

    it("sends a template with components", function()
      local c = client()
      local r = assert(c:send_template{ to = TO, name = "order_update", language = "en",
        components = { { type = "body", parameters = { { type = "text", text = "John" },
                                                       { type = "text", text = "ORD-456" } } } } })
      assert.equal("sent", r.status)
      local m = all(c, r.conversationId)[1]
      assert.equal("template", m.type)
      assert.equal("order_update", m.content.name)
      assert.equal("en", m.content.language)
      assert.same({ { type = "body", parameters = { { type = "text", text = "John" },
        { type = "text", text = "ORD-456" } } } }, m.content.components)
    end)

    for _, case in ipairs{
      { "image", "https://example.com/product.jpg", "image/jpeg", { caption = "Product" } },
      { "document", "https://example.com/invoice.pdf", "application/pdf",
        { caption = "Invoice", filename = "invoice_2026.pdf" } },
      { "audio", "https://example.com/voice.ogg", "audio/ogg", {} },
      { "video", "https://example.com/demo.mp4", "video/mp4", { caption = "Demo video" } },
    } do
      local mtype, link, mime, extra = case[1], case[2], case[3], case[4]
      it("sends " .. mtype .. " media", function()
        local c = client()
        local p = { to = TO, type = mtype, url = link }
        for k, v in pairs(extra) do p[k] = v end
        local r = assert(c:send_media(p))
        assert.equal("sent", r.status)
        local m = all(c, r.conversationId)[1]
        assert.equal(mtype, m.type)
        assert.equal(link, m.content.url)
        assert.equal(mime, m.content.mimeType)
        assert.equal(extra.caption, m.content.caption)
        assert.equal(extra.filename, m.content.filename)
      end)
    end

    it("sends a location", function()
      local c = client()
      local r = assert(c:send_location{ to = TO, latitude = 25.2048, longitude = 55.2708,
        name = "Dubai Mall", address = "Financial Centre Rd, Dubai" })
      local m = all(c, r.conversationId)[1]
      assert.equal("location", m.type)
      assert.same({ latitude = 25.2048, longitude = 55.2708, name = "Dubai Mall",
        address = "Financial Centre Rd, Dubai" }, m.content)
    end)

    it("sends nothing when validation fails", function()
      local c = client()
      local r, err = c:send_location{ to = TO, latitude = 91, longitude = 0 }
      assert.is_nil(r)
      assert.equal("validation", err.kind)
      assert.equal("latitude must be a number from -90 to 90; got 91", err.message)
      assert.equal(0, sb:stats().requests)
    end)
  end)

  describe("cursor pagination", function()
    it("walks 23 messages in pages of 5: each id once, in order, then stops", function()
      local seeded = seed{ to = TO, count = 23 }
      local c = client()
      local ids = {}
      for m, err in c:messages(seeded.conversationId, { page_size = 5 }) do
        assert(m, err and tostring(err))
        ids[#ids + 1] = m.id
      end
      local want = {}
      for i = #seeded.ids, 1, -1 do want[#want + 1] = seeded.ids[i] end
      assert.same(want, ids)
      assert.equal(5, count(LIST))                      -- 5 + 5 + 5 + 5 + 3, no extra call
    end)

    it("does not ask for a page after an exact last page", function()
      local seeded = seed{ count = 10 }
      local c = client()
      local n = 0
      for m in c:messages(seeded.conversationId, { page_size = 5 }) do
        if m then n = n + 1 end
      end
      assert.equal(10, n)
      assert.equal(2, count(LIST))
    end)

    it("list_messages returns one page as the contract shows it: ascending within the page",
      function()
      local seeded = seed{ count = 7 }
      local c = client()
      local ids = seeded.ids
      local function page_ids(p)
        local out = {}
        for i, m in ipairs(p.data) do out[i] = m.id end
        return out
      end
      local p1 = assert(c:list_messages{ conversation_id = seeded.conversationId, limit = 3 })
      assert.same({ ids[5], ids[6], ids[7] }, page_ids(p1))   -- the newest 3, oldest first
      assert.equal(7, p1.total)
      assert.equal(1, p1.page)
      assert.is_true(p1.hasNext)
      local p2 = assert(c:list_messages{ conversation_id = seeded.conversationId, limit = 3,
        before = p1.data[1].id })
      assert.same({ ids[2], ids[3], ids[4] }, page_ids(p2))
      assert.equal(2, p2.page)
      local p3 = assert(c:list_messages{ conversation_id = seeded.conversationId, limit = 3,
        before = p2.data[1].id })
      assert.same({ ids[1] }, page_ids(p3))
      assert.is_false(p3.hasNext)
    end)

    it("list_messages pages newest first with conversations_page_order = desc", function()
      assert(sb:config{ conversations_page_order = "desc" })
      finally(function() assert(sb:config{ conversations_page_order = "asc" }) end)
      local seeded = seed{ count = 5 }
      local c = client()
      local p1 = assert(c:list_messages{ conversation_id = seeded.conversationId, limit = 3 })
      assert.same({ seeded.ids[5], seeded.ids[4], seeded.ids[3] },
        { p1.data[1].id, p1.data[2].id, p1.data[3].id })
      local p2 = assert(c:list_messages{ conversation_id = seeded.conversationId, limit = 3,
        before = p1.data[3].id })
      assert.same({ seeded.ids[2], seeded.ids[1] }, { p2.data[1].id, p2.data[2].id })
      assert.is_false(p2.hasNext)
    end)

    it("the sandbox refuses an unknown page order", function()
      local status, body = sb:request("POST", "/__sandbox/config",
        { conversations_page_order = "random" })
      assert.equal(400, status)
      assert.same({ "conversations_page_order must be asc or desc" }, body.message)
    end)

    it("starts from a given cursor", function()
      local seeded = seed{ count = 6 }
      local c = client()
      local ids = {}
      for m in c:messages(seeded.conversationId, { page_size = 2, before = seeded.ids[4] }) do
        ids[#ids + 1] = m.id
      end
      assert.same({ seeded.ids[3], seeded.ids[2], seeded.ids[1] }, ids)
    end)

    it("ends after a single-message conversation", function()
      local c = client()
      local r = assert(c:send_text{ to = TO, text = "x" })
      local n = 0
      for _ in c:messages(r.conversationId, { page_size = 1 }) do n = n + 1 end
      assert.equal(1, n)
    end)
  end)

  describe("inbound typed messages", function()
    it("gives each documented type its content shape and passes unknown types through",
      function()
        local seeded = seed{ to = TO, count = 7, types = { "text", "image", "document", "audio",
          "video", "location", "sticker" } }
        local c = client()
        local msgs = all(c, seeded.conversationId)
        local by = {}
        for _, m in ipairs(msgs) do
          assert.equal("inbound", m.direction)
          assert.equal(seeded.contactId, m.senderId)
          assert.equal(seeded.conversationId, m.conversationId)
          assert.equal("delivered", m.status)
          assert.matches("^%d%d%d%d%-%d%d%-%d%dT", m.timestamp)
          by[m.type] = m.content
        end
        assert.same({ text = "Inbound message 1" }, by.text)
        assert.same({ url = "https://cdn.example.com/media/img_002.jpg",
          mimeType = "image/jpeg", caption = "Photo 2" }, by.image)
        assert.same({ url = "https://cdn.example.com/media/doc_003.pdf",
          mimeType = "application/pdf", filename = "invoice_003.pdf" }, by.document)
        assert.same({ url = "https://cdn.example.com/media/audio_004.ogg",
          mimeType = "audio/ogg" }, by.audio)
        assert.same({ url = "https://cdn.example.com/media/video_005.mp4",
          mimeType = "video/mp4", caption = "Video 5" }, by.video)
        assert.same({ latitude = 25.2048, longitude = 55.2708, name = "Dubai Mall",
          address = "Financial Centre Rd, Dubai" }, by.location)
        assert.same({ url = "https://cdn.example.com/media/sticker_007.webp",
          mimeType = "image/webp", animated = false }, by.sticker)
      end)
  end)

  describe("error shapes", function()
    it("400: the sandbox's shape, and its mapping (missing 'to' on the wire)", function()
      local status, body = sb:request("POST", "/api/whatsapp/messages/send",
        { type = "text", text = "hi" }, { Authorization = "Bearer " .. KEY })
      assert.equal(400, status)
      assert.same({ success = false, error = "Missing required field: to" }, body)
      -- a transport that drops `to` from the body, to see the client map the answer
      local inner = transport_mod.new{ timeout_ms = 10000 }
      local strip = { request = function(_, req)
        local b = cjson.decode(req.body)
        b.to = nil
        req.body = cjson.encode(b)
        return inner:request(req)
      end, close = function() return inner:close() end }
      local c = client{ transport = strip }
      local r, err = c:send_text{ to = TO, text = "hi" }
      assert.is_nil(r)
      assert.equal("invalid_request", err.kind)
      assert.equal(400, err.status)
      assert.equal("Missing required field: to", err.message)
      assert.equal("Missing required field: to", err.error)
      assert.is_false(err.retryable)
      assert.equal(1, count(SEND) - 1)                   -- one by sb:request, one by client
    end)

    it("400: a cursor from another conversation", function()
      local a = seed{ to = "+15557654301", count = 2 }
      local b = seed{ to = "+15557654302", count = 2 }
      local c = client()
      local _, err = c:list_messages{ conversation_id = a.conversationId, before = b.ids[1] }
      assert.equal("invalid_request", err.kind)
      assert.equal("Invalid cursor: message " .. b.ids[1] .. " is not in this conversation",
        err.message)
    end)

    it("401: a bad key, not retried", function()
      local c, sleeps = client{ api_key = "not-a-real-key" }
      local _, err = c:send_text{ to = TO, text = "hi" }
      assert.equal("auth", err.kind)
      assert.equal(401, err.status)
      assert.equal("Invalid API key", err.message)
      assert.is_false(err.retryable)
      assert.equal(1, count(SEND))
      assert.same({}, sleeps)
      local _, err2 = c:list_messages{ conversation_id = "conv_x" }
      assert.equal("auth", err2.kind)
      assert.equal(1, count(LIST))
    end)

    it("404: contact not found and conversation not found", function()
      local c = client()
      local _, err = c:send_text{ to = "+15550000404", text = "hi" }
      assert.equal("not_found", err.kind)
      assert.equal(404, err.status)
      assert.equal("Contact not found for the given phone number", err.message)
      local _, err2 = c:list_messages{ conversation_id = "conv_missing" }
      assert.equal("not_found", err2.kind)
      assert.equal("Conversation not found", err2.message)
      local v, err3 = c:messages("conv_missing")()
      assert.is_false(v)
      assert.equal("not_found", err3.kind)
    end)

    it("429: retry_after comes from the text; a send waits and is resent", function()
      assert(sb:config{ rate_limit = 1 })
      local c, sleeps = client()
      assert(c:send_text{ to = TO, text = "first" })
      local _, err = c:send_text{ to = TO, text = "second" }
      assert.equal("rate_limited", err.kind)
      assert.equal(429, err.status)
      assert.matches("^Rate limit exceeded%. Try again in %d+ seconds%.$", err.message)
      assert.truthy(err.retry_after >= 55 and err.retry_after <= 60)
      assert.is_true(err.retryable)
      assert.is_nil(err.maybe_sent)
      assert.equal(3, err.attempts)                     -- the server refused: safe to resend
      assert.equal(2, #sleeps)
      assert.equal(err.retry_after, sleeps[2])
      assert.equal(4, count(SEND))
    end)

    it("429: gives up at once when the wait exceeds max_retry_wait", function()
      assert(sb:config{ rate_limit = 1 })
      local c, sleeps = client{ max_retry_wait = 10 }
      local seeded = seed{ count = 1 }
      assert(c:list_messages{ conversation_id = seeded.conversationId })
      local _, err = c:list_messages{ conversation_id = seeded.conversationId }
      assert.equal("rate_limited", err.kind)
      assert.equal(1, err.attempts)
      assert.same({}, sleeps)
      assert.equal(2, count(LIST))
    end)

    it("502 re-engagement: server kind, details kept, never retried", function()
      local c, sleeps = client()
      local r, err = c:send_text{ to = "+15550131047", text = "Are you still there?" }
      assert.is_nil(r)
      assert.equal("server", err.kind)
      assert.equal(502, err.status)
      assert.equal("WhatsApp API error: Message failed to send", err.message)
      assert.same({ code = 131047, title = "Re-engagement message" }, err.details)
      assert.equal("reengagement_required", err.reason)
      assert.is_false(err.retryable)
      assert.equal(1, err.attempts)
      assert.same({}, sleeps)
      assert.equal(1, count(SEND))
      assert.equal("chatmaid server: WhatsApp API error: Message failed to send "
        .. "(POST /api/whatsapp/messages/send, HTTP 502)", tostring(err))
    end)

    it("502 re-engagement: a template reopens the window", function()
      local c = client()
      local r = assert(c:send_template{ to = "+15550131047", name = "follow_up",
        language = "en" })
      assert.equal("sent", r.status)
    end)

    it("502 with another WhatsApp code is retried (WhatsApp refused: nothing was sent)",
      function()
        local c, sleeps = client()
        local _, err = c:send_text{ to = "+15550131000", text = "hi" }
        assert.equal("server", err.kind)
        assert.same({ code = 131000, title = "Something went wrong" }, err.details)
        assert.is_true(err.retryable)
        assert.is_nil(err.reason)
        assert.equal(3, err.attempts)
        assert.equal(2, #sleeps)
        assert.equal(3, count(SEND))
      end)
  end)

  describe("send retry policy (no idempotency key in this API)", function()
    it("does not resend after a reset mid-response: the message was created once", function()
      assert(sb:fault{ path = "/api/whatsapp/messages/send", type = "reset_mid_body" })
      local c, sleeps = client()
      local _, err = c:send_text{ to = TO, text = "exactly once" }
      assert.equal("transport", err.kind)
      assert.is_true(err.maybe_sent)
      assert.is_false(err.retryable)
      assert.same({}, sleeps)
      assert.equal(1, count(SEND))
      local r = assert(c:send_text{ to = TO, text = "after" })
      local texts = {}
      for _, m in ipairs(all(c, r.conversationId)) do texts[#texts + 1] = m.content.text end
      assert.same({ "after", "exactly once" }, texts)
    end)

    it("does not resend after a timeout", function()
      assert(sb:fault{ path = "/api/whatsapp/messages/send", type = "never_answer" })
      local c = client{ timeout = 0.5 }
      local _, err = c:send_text{ to = TO, text = "slow" }
      assert.equal("timeout", err.kind)
      assert.is_true(err.maybe_sent)
      assert.equal(1, err.attempts)
      assert.equal(1, count(SEND))
    end)

    it("does not resend after a 5xx without WhatsApp details; a GET is retried", function()
      assert(sb:fault{ path = "/api/whatsapp/*", type = "html_500", count = 2 })
      local c, sleeps = client()
      local _, err = c:send_text{ to = TO, text = "hi" }
      assert.equal("server", err.kind)
      assert.equal(500, err.status)
      assert.is_true(err.maybe_sent)
      assert.equal(1, count(SEND))
      local seeded = seed{ count = 2 }
      local page = assert(c:list_messages{ conversation_id = seeded.conversationId })
      assert.equal(2, #page.data)
      assert.equal(2, count(LIST))                      -- one 500, then the answer
      assert.equal(1, #sleeps)
    end)

    it("resends after a 503 with Retry-After (the server refused the request)", function()
      assert(sb:fault{ path = "/api/whatsapp/messages/send", type = "json_503",
        retry_after = 1 })
      local c, sleeps = client()
      local r = assert(c:send_text{ to = TO, text = "hi" })
      assert.equal("sent", r.status)
      assert.same({ 1 }, sleeps)
      assert.equal(2, count(SEND))
      assert.equal(1, #all(c, r.conversationId))
    end)

    it("resends after a connection refusal", function()
      local c, sleeps = client{ base_url = "http://127.0.0.1:1", max_retries = 1 }
      local _, err = c:send_text{ to = TO, text = "hi" }
      assert.equal("transport", err.kind)
      assert.equal("connect", err.reason)
      assert.is_nil(err.maybe_sent)
      assert.equal(2, err.attempts)
      assert.equal(1, #sleeps)
    end)

    it("reports every attempt to the hooks", function()
      local seen = {}
      local c = client{ on_request = function(r) seen[#seen + 1] = r.method .. " " .. r.path
        .. " #" .. r.attempt end }
      c:send_text{ to = "+15550131000", text = "hi" }
      assert.same({ SEND .. " #1", SEND .. " #2", SEND .. " #3" }, seen)
      assert.equal(3, c:last_response().attempt)
      assert.equal(502, c:last_response().status)
    end)
  end)
end)
