-- SPDX-License-Identifier: MIT
-- Sender lookup (client:_sender, used by send and send_batch) against the sandbox: E.164
-- senders are resolved once per client; without `from`, default_from or the one connected
-- phone is used, else a validation error lists the candidates.
local F = require "spec.support.fixtures"

local LOOKUP = "GET /v1/phone-numbers/%2B15551230001"
local LIST = "GET /v1/phone-numbers"

local function count(sb, key)
  return sb:stats().byPath[key] or 0
end

local function send(c, from, to)
  return c:send{ from = from, to = to or "+15557654321", content = "hello" }
end

describe("sender lookup #integration", function()
  local sb = F.block_sandbox{ rate_limit = false }

  it("resolves an E.164 sender once per client, for many sends", function()
    local c = F.client(sb)
    for i = 1, 20 do
      local m = assert(send(c, F.PHONE_E164, "+1555000" .. string.format("%04d", i)))
      assert.are.equal(F.PHONE_E164, m.from)   -- sent from ph_primary
    end
    assert.are.equal(1, count(sb, LOOKUP))
    assert.are.equal(20, sb:stats().messagesCreated)
    c:close()
  end)

  it("shares the cache with send_batch", function()
    local c = F.client(sb)
    assert(send(c, F.PHONE_E164))
    local items = {}
    for i = 1, 10 do
      items[i] = { from = F.PHONE_E164, to = "+1555000" .. string.format("%04d", i),
                   content = "batch" }
    end
    local results = c:send_batch(items, { rate_per_minute = false })
    for i = 1, 10 do assert.are.equal(F.PHONE_E164, results[i].message.from) end
    assert.are.equal(1, count(sb, LOOKUP))
    c:close()
  end)

  it("looks up again in a new client (the cache is per client)", function()
    local a, b = F.client(sb), F.client(sb)
    assert(send(a, F.PHONE_E164))
    assert(send(a, F.PHONE_E164))
    assert(send(b, F.PHONE_E164))
    assert.are.equal(2, count(sb, LOOKUP))
    a:close(); b:close()
  end)

  it("sends a phone id as is, without a lookup", function()
    local c = F.client(sb)
    assert(send(c, F.PHONE))
    assert.are.equal(0, count(sb, LOOKUP))
    assert.are.equal(0, count(sb, LIST))
    c:close()
  end)

  it("returns not_found for an E.164 number that is not a phone of the account, and does "
     .. "not cache the failure", function()
    local c = F.client(sb, { max_retries = 0 })
    for _ = 1, 2 do
      local m, err = send(c, "+15559999999")
      assert.is_nil(m)
      assert.are.equal("not_found", err.kind)
      assert.are.equal(404, err.status)
      assert.are.equal("sender +15559999999 is not a phone number of this account; pass from ="
                       .. " one of the account's phone ids or numbers: list them with"
                       .. " client:phone_numbers() (CLI: chatmaid phones)", err.message)
    end
    assert.are.equal(2, count(sb, "GET /v1/phone-numbers/%2B15559999999"))
    assert.are.equal(0, sb:stats().sendRequests)
    c:close()
  end)

  it("rejects a malformed E.164 sender before any request", function()
    local c = F.client(sb)
    local m, err = send(c, "+1 555 123")
    assert.is_nil(m)
    assert.are.equal("validation", err.kind)
    assert.are.equal("from must be in E.164 format: '+', a country code starting 1-9, at most "
      .. "15 digits, no spaces or dashes (like +15557654321); got \"+1 555 123\"", err.message)
    assert.are.equal(0, sb:stats().requests)
    c:close()
  end)

  it("uses default_from when from is omitted (an E.164 default is looked up once)", function()
    local c = F.client(sb, { default_from = F.PHONE_E164 })
    for _ = 1, 3 do
      assert.are.equal(F.PHONE_E164, assert(send(c, nil)).from)
    end
    assert.are.equal(1, count(sb, LOOKUP))
    assert.are.equal(0, count(sb, LIST))
    c:close()
  end)

  it("uses the one connected phone when from and default_from are omitted, listing phones "
     .. "once", function()
    local c = F.client(sb)
    for _ = 1, 5 do
      assert.are.equal(F.PHONE_E164, assert(send(c, nil)).from)
    end
    assert.are.equal(1, count(sb, LIST))
    c:close()
  end)

  it("returns a validation error listing the candidates when several phones are connected",
     function()
    assert(sb:set_phone_state(F.PHONE_DISCONNECTED, "connected"))
    local c = F.client(sb)
    local m, err = send(c, nil)
    assert.is_nil(m)
    assert.are.equal("validation", err.kind)
    assert.are.equal("from is required: 2 phones are connected; pass from = <phone id or "
      .. "E.164 number> or default_from. Phones: ph_primary (+15551230001, connected), "
      .. "ph_backup (+15551230002, connected), ph_pairing (+15551230003, connecting)",
      err.message)
    assert.are.equal(0, sb:stats().sendRequests)
    c:close()
  end)

  it("returns a validation error when no phone is connected", function()
    assert(sb:set_phone_state(F.PHONE, "disconnected"))
    local c = F.client(sb)
    local _, err = send(c, nil)
    assert.are.equal("validation", err.kind)
    assert.are.equal("from is required: no phone of this account is connected; pass from = "
      .. "<phone id or E.164 number> or default_from. Phones: ph_primary (+15551230001, "
      .. "disconnected), ph_backup (+15551230002, disconnected), ph_pairing (+15551230003, "
      .. "connecting)", err.message)
    c:close()
  end)

  it("send_batch fails the items of an unknown sender alone, after one lookup", function()
    local c = F.client(sb, { max_retries = 0 })
    local results, summary = c:send_batch({
      { from = "+15559999999", to = "+15550000001", content = "a" },
      { from = F.PHONE, to = "+15550000002", content = "b" },
      { from = "+15559999999", to = "+15550000003", content = "c" },
    }, { rate_per_minute = false })
    assert.are.equal("not_found", results[1].err.kind)
    assert.are.equal(1, results[1].err.index)
    assert.are.equal("not_found", results[3].err.kind)
    assert.are.equal(3, results[3].err.index)
    assert.are.equal("+15550000002", results[2].message.to)
    assert.are.equal(1, count(sb, "GET /v1/phone-numbers/%2B15559999999"))
    assert.are.same({ 1, 2 }, { summary.sent, summary.failed })
    c:close()
  end)
end)
