-- SPDX-License-Identifier: MIT
-- A key the API already holds for another message is an idempotency_conflict, never a
-- success: client:send and send_batch against the sandbox, and the comparison rules.
local F = require "spec.support.fixtures"
local idempotency = require "chatmaid.idempotency"

describe("idempotency conflicts #integration", function()
  local sb = F.block_sandbox{ rate_limit = false }

  it("client:send: a key held for another recipient returns idempotency_conflict", function()
    local c = F.client(sb)
    local first = assert(c:send{ from = F.PHONE, to = "+15557000001", content = "Hi",
                                 idempotency_key = "order-1" })
    local msg, err = c:send{ from = F.PHONE, to = "+15557000002", content = "Hi",
                             idempotency_key = "order-1" }
    assert.is_nil(msg)
    assert.are.equal("idempotency_conflict", err.kind)
    assert.are.equal("order-1", err.idempotency_key)
    assert.are.equal(first.id, err.message_returned.id)
    assert.are.equal("+15557000001", err.message_returned.to)
    assert.are.same({ "to" }, err.mismatch)
    assert.is_false(err.retryable)
    assert.are.equal("chatmaid idempotency_conflict: idempotency key order-1 already belongs"
      .. " to another message (" .. first.id .. " to +15557000001): to differs from this"
      .. " request; nothing was sent (POST /v1/messages/send, HTTP 201)", tostring(err))
    assert.are.equal(1, sb:stats().messagesCreated)
    -- the same request again is the original message, not a conflict
    local again = assert(c:send{ from = F.PHONE, to = "+15557000001", content = "Hi",
                                 idempotency_key = "order-1" })
    assert.are.equal(first.id, again.id)
    c:close()
  end)

  it("client:send: other content, media or sender under the key are conflicts too", function()
    local c = F.client(sb)
    assert(c:send{ from = F.PHONE, to = "+15557000001", content = "Hi",
                   media_urls = { "https://e.example/a.png" }, idempotency_key = "k" })
    local function conflict(p)
      p.idempotency_key = "k"
      local msg, err = c:send(p)
      assert.is_nil(msg)
      assert.are.equal("idempotency_conflict", err.kind)
      return err.mismatch
    end
    assert.are.same({ "content" }, conflict{ from = F.PHONE, to = "+15557000001",
      content = "Hello", media_urls = { "https://e.example/a.png" } })
    assert.are.same({ "media_urls" }, conflict{ from = F.PHONE, to = "+15557000001",
      content = "Hi" })
    -- the sandbox keys are per account, whatever the sender: ph_backup is another sender.
    -- Messages carry the sender's number only (no phoneNumberId, as in production), so the
    -- client tells senders apart when it knows the number: a sender given by number.
    assert.are.same({ "from" }, conflict{ from = "+15551230002", to = "+15557000001",
      content = "Hi", media_urls = { "https://e.example/a.png" } })
    -- the sender by number is the same sender
    assert(c:send{ from = F.PHONE_E164, to = "+15557000001", content = "Hi",
                   media_urls = { "https://e.example/a.png" }, idempotency_key = "k" })
    assert.are.equal(1, sb:stats().messagesCreated)
    c:close()
  end)

  it("send_batch: an item whose key holds another message fails alone with the conflict",
     function()
    local c = F.client(sb)
    local other = assert(c:send{ from = F.PHONE, to = "+15557000009", content = "Other",
                                 idempotency_key = "taken" })
    local results, summary = c:send_batch({
      { from = F.PHONE, to = "+15557000001", content = "A" },
      { from = F.PHONE, to = "+15557000002", content = "B", idempotency_key = "taken" },
      { from = F.PHONE, to = "+15557000003", content = "C" },
    }, { batch_id = "conf", rate_per_minute = false })
    assert.are.equal("+15557000001", results[1].message.to)
    assert.are.equal("+15557000003", results[3].message.to)
    local err = results[2].err
    assert.are.equal("idempotency_conflict", err.kind)
    assert.are.equal(other.id, err.message_returned.id)
    assert.are.equal(2, err.index)
    assert.are.equal("taken", err.idempotency_key)
    assert.are.equal(1, err.attempts)       -- never retried
    assert.is_nil(results[2].message)
    assert.are.same({ 2, 0, 1 }, { summary.sent, summary.replayed, summary.failed })
    assert.are.equal(3, sb:stats().messagesCreated)
    c:close()
  end)

  it("send_batch: a re-run counts the messages the API replayed apart from new ones",
     function()
    local c = F.client(sb)
    local items = {}
    for i = 1, 6 do
      items[i] = { from = F.PHONE, to = string.format("+155571000%02d", i), content = "x" }
    end
    local first = { items[1], items[2], items[3] }
    local _, s1 = c:send_batch(first, { batch_id = "rerun", rate_per_minute = false })
    assert.are.same({ 3, 0 }, { s1.sent, s1.replayed })
    -- createdAt has millisecond steps (the sandbox gives each message its own): let the
    -- clock pass them
    require("socket").sleep(0.05)
    local results, s2 = c:send_batch(items, { batch_id = "rerun", rate_per_minute = false })
    assert.are.same({ 3, 3, 0 }, { s2.sent, s2.replayed, s2.failed })
    for i = 1, 6 do assert.are.equal(i <= 3 or nil, results[i].replayed) end
    assert.are.equal(6, sb:stats().messagesCreated)
    c:close()
  end)
end)

describe("idempotency.mismatch()", function()
  -- the sender is passed apart: from_id (sent as fromPhoneId) and its number, when known
  local function mm(r, m) return idempotency.mismatch(r, m, r.from_id, r.from_number) end
  local req = { to = "+15557000001", content = "Hi there", from_id = "ph_primary",
                from_number = "+15551230001",
                media_urls = { "https://e.example/a.png", "https://e.example/b.png" } }
  local msg = { id = "msg_1", to = "+15557000001", content = "Hi there",
                from = "+15551230001", phoneNumberId = "ph_primary",
                mediaUrls = { "https://e.example/b.png", "https://e.example/a.png" } }
  local function with(k, v)
    local t = {}
    for key, val in pairs(msg) do t[key] = val end
    t[k] = v
    return t
  end

  it("accepts the same message: media in any order, whitespace around the text", function()
    assert.is_nil(mm(req, msg))
    assert.is_nil(mm(req, with("content", "  Hi there\n")))
    assert.is_nil(mm({ to = "+1", content = "a\r\nb" },
                                       { to = "+1", content = "a\nb", mediaUrls = {} }))
    assert.is_nil(mm({ to = "+1", media_urls = { "https://e/a" } },
                                       { to = "+1", mediaUrls = { "https://e/a" } }))
  end)

  it("compares only what the message carries", function()
    -- the list endpoint shape: no mediaUrls, no phoneNumberId
    assert.is_nil(mm(req, { to = "+15557000001", content = "Hi there",
                                              from = "+15551230001" }))
    -- sender by id only when the number is unknown
    assert.is_nil(mm({ to = "+1", content = "a", from_id = "ph_x" },
                                       { to = "+1", content = "a", from = "+15550001111" }))
  end)

  it("names every field that differs", function()
    assert.are.same({ "to" }, mm(req, with("to", "+15557000002")))
    assert.are.same({ "from" }, mm(req, with("phoneNumberId", "ph_b")))
    local no_id = with("phoneNumberId", nil)
    no_id.from = "+15559999999"
    assert.are.same({ "from" }, mm(req, no_id))
    assert.are.same({ "content" }, mm(req, with("content", "Hi")))
    assert.are.same({ "content" }, mm(req, with("content", nil)))
    assert.are.same({ "media_urls" },
      mm(req, with("mediaUrls", { "https://e.example/a.png" })))
    local all = { id = "m", to = "+2", content = "other", phoneNumberId = "ph_b",
                  mediaUrls = {} }
    assert.are.same({ "to", "from", "content", "media_urls" }, mm(req, all))
  end)
end)
