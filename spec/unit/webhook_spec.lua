-- SPDX-License-Identifier: MIT
-- chatmaid.webhook: the Lua layer (messages, raises, events, dedupe). The crypto itself is
-- covered against independent vectors in spec/core/webhook_spec.lua.
local webhook = require "chatmaid.webhook"

local T = 1700000000
local SECRET = "whsec_unit_secret_42"
local BODY = '{"event":"message.sent","timestamp":"2026-02-06T14:20:00.000Z","data":'
             .. '{"messageId":"msg_abc123def456","from":"+15551234567","to":"+15557654321",'
             .. '"status":"sent","environment":"live","sentAt":null,"tags":[1,null,"x"]}}'
local H = webhook.sign(BODY, SECRET, T)
local OPTS = { now = T }

local function no_leak(err, ...)
  local s = tostring(err)
  for _, secret in ipairs({ ... }) do
    assert.is_nil(s:find(secret, 1, true), "message contains the secret")
  end
  for mac in H:gmatch("v1=(%x+)") do assert.is_nil(s:find(mac, 1, true), "message has a MAC") end
end

describe("chatmaid.webhook", function()
  describe("sign()", function()
    it("builds t=<t>,v1=<64 hex>", function()
      assert.matches("^t=1700000000,v1=" .. string.rep("%x", 64) .. "$", H)
    end)
    it("adds one v1 per secret", function()
      local h = webhook.sign(BODY, { "a", "b" }, T)
      assert.matches("^t=1700000000,v1=%x+,v1=%x+$", h)
    end)
    it("defaults the timestamp to now", function()
      local t = tonumber(webhook.sign(BODY, SECRET):match("^t=(%d+)"))
      assert.is_true(math.abs(t - os.time()) <= 2)
    end)
    it("raises on a fractional timestamp", function()
      assert.has_error(function() webhook.sign(BODY, SECRET, 1.5) end,
        "webhook.sign: timestamp must be a non-negative integer unix time (got 1.5)")
    end)
    it("raises on a table body", function()
      assert.has_error(function() webhook.sign({}, SECRET, T) end,
        "webhook.sign: raw_body must be the exact request body string (got table): do not"
        .. " decode the JSON before verifying")
    end)
  end)

  describe("verify()", function()
    it("returns true for a valid signature", function()
      assert.are.same({ true }, { webhook.verify(BODY, H, SECRET, OPTS) })
    end)

    it("accepts rotation with an array of secrets", function()
      assert.is_true(webhook.verify(BODY, H, { "whsec_old", SECRET }, OPTS))
    end)

    it("uses the real clock by default", function()
      assert.is_true(webhook.verify(BODY, webhook.sign(BODY, SECRET), SECRET))
    end)

    it("returns mismatch with the raw-body hint for a tampered body", function()
      local ok, err = webhook.verify(BODY .. " ", H, SECRET, OPTS)
      assert.is_nil(ok)
      assert.are.equal("signature", err.kind)
      assert.are.equal("mismatch", err.reason)
      assert.are.equal(T, err.timestamp)
      assert.are.equal("no signature matches the payload: the secret (the secret argument of"
        .. " webhook.verify) may not be the one the sender signs with, or the body is not the"
        .. " exact raw request body (pass the bytes received, not a parsed or re-encoded table),"
        .. " and check the secret has no surrounding whitespace", err.message)
      no_leak(err, SECRET)
    end)

    it("returns mismatch for a wrong secret without naming it", function()
      local _, err = webhook.verify(BODY, H, "whsec_wrong_secret", OPTS)
      assert.are.equal("mismatch", err.reason)
      no_leak(err, SECRET, "whsec_wrong_secret")
    end)

    it("says where the secret that may be wrong comes from (opts.secret_name)", function()
      local _, err = webhook.construct_event(BODY, H, "whsec_wrong_secret",
        { tolerance = OPTS.tolerance, now = OPTS.now, secret_name = "MY_WEBHOOK_SECRET" })
      assert.are.equal("mismatch", err.reason)
      assert.truthy(err.message:find("no signature matches the payload: the secret "
        .. "(MY_WEBHOOK_SECRET) may not be the one the sender signs with", 1, true), err.message)
      no_leak(err, SECRET, "whsec_wrong_secret")
      assert.has_error(function() webhook.verify(BODY, H, SECRET, { secret_name = 1 }) end,
                       "webhook.verify: opts.secret_name must be a string (got number)")
    end)

    it("names a secret with surrounding whitespace, and says when stripping fixes it", function()
      local _, err = webhook.verify(BODY, H, { "whsec_other", SECRET .. "\n" }, OPTS)
      assert.are.equal("mismatch", err.reason)
      assert.are.equal("no signature matches the payload: the 2 secrets (the secret argument"
        .. " of webhook.verify) may all differ from the one the sender signs with, or the body"
        .. " is not the exact raw request body (pass the bytes received, not a parsed or"
        .. " re-encoded table); secret #2 has leading or trailing whitespace (a"
        .. " newline from a file or an environment variable?), and the signature matches once"
        .. " it is stripped", err.message)
      no_leak(err, SECRET, "whsec_other")
    end)

    it("names a whitespace secret even when stripping does not help", function()
      local _, err = webhook.verify(BODY, H, " whsec_nope", OPTS)
      assert.matches("secret #1 has leading or trailing whitespace", err.message, 1, true)
      assert.is_nil(err.message:find("matches once", 1, true))
      no_leak(err, "whsec_nope")
    end)

    it("points out uppercase hex", function()
      local upper = "t=" .. T .. ",v1=" .. H:match("v1=(%x+)"):upper()
      local _, err = webhook.verify(BODY, upper, SECRET, OPTS)
      assert.are.equal("mismatch", err.reason)
      assert.matches("uppercase hex", err.message, 1, true)
    end)

    it("points out an empty body", function()
      local _, err = webhook.verify("", H, SECRET, OPTS)
      assert.matches("the body is empty", err.message, 1, true)
    end)

    it("accepts several v1 entries, one valid", function()
      local h = "t=" .. T .. ",v1=" .. string.rep("a", 64) .. "," .. H:match("v1=%x+")
      assert.is_true(webhook.verify(BODY, h, SECRET, OPTS))
    end)

    it("returns no_signature when only v0 is present", function()
      local _, err = webhook.verify(BODY, "t=" .. T .. ",v0=abc", SECRET, OPTS)
      assert.are.equal("no_signature", err.reason)
      assert.are.equal("header has no v1 signature (other schemes such as v0 are ignored)",
                       err.message)
    end)

    local malformed = {
      { "a missing header", nil, "the X-Chatmaid-Signature header is missing or empty" },
      { "an empty header", "", "the X-Chatmaid-Signature header is missing or empty" },
      { "a missing t", "v1=abc", "t is missing" },
      { "a duplicate t", "t=1,t=2,v1=abc", "t appears more than once" },
      { "a non-numeric t", "t=soon,v1=abc", "t is not a unix time in seconds (1 to 15 digits)" },
      { "a part without =", "t=1,v1", "part 2 is not key=value" },
      { "an empty part", "t=1,,v1=abc", "part 2 is not key=value" },
      { "a 10 KiB garbage header", string.rep("garbage!", 1280),
        "the header is 10240 bytes, over the 8192-byte limit" },
    }
    for _, case in ipairs(malformed) do
      it("returns malformed_header for " .. case[1], function()
        local ok, err = webhook.verify(BODY, case[2], SECRET, OPTS)
        assert.is_nil(ok)
        assert.are.equal("malformed_header", err.reason)
        assert.are.equal("malformed signature header: " .. case[3]
                         .. " (expected \"t=<unix seconds>,v1=<hex>\")", err.message)
        no_leak(err, SECRET)
      end)
    end

    it("returns timestamp_out_of_tolerance for an old delivery, with the skew", function()
      local _, err = webhook.verify(BODY, H, SECRET, { now = T + 412 })
      assert.are.equal("timestamp_out_of_tolerance", err.reason)
      assert.are.equal("timestamp is 412 s in the past (tolerance 300 s): check the server"
                       .. " clock or a replayed delivery", err.message)
      assert.are.equal(412, err.skew)
      assert.are.equal(300, err.tolerance)
    end)

    it("returns timestamp_out_of_tolerance for a timestamp in the future", function()
      local _, err = webhook.verify(BODY, H, SECRET, { now = T - 1000, tolerance = 60 })
      assert.are.equal("timestamp is 1000 s in the future (tolerance 60 s): check the server"
                       .. " clock or a replayed delivery", err.message)
    end)

    it("honours a custom tolerance", function()
      assert.is_true(webhook.verify(BODY, H, SECRET, { now = T + 900, tolerance = 900 }))
    end)

    it("tolerates blanks around parts", function()
      local h = " t=" .. T .. " , " .. H:match("v1=%x+") .. " "
      assert.is_true(webhook.verify(BODY, h, SECRET, OPTS))
    end)

    it("verifies a 1 MiB body with NUL bytes", function()
      local body = string.rep("\0\1\2{}", 209716)
      assert.is_true(webhook.verify(body, webhook.sign(body, SECRET, T), SECRET, OPTS))
    end)

    it("formats as 'chatmaid signature: ...' for logs", function()
      local _, err = webhook.verify(BODY, "", SECRET, OPTS)
      assert.matches("^chatmaid signature: malformed signature header", tostring(err))
    end)

    describe("raises on programmer errors", function()
      local cases = {
        { "a table body", function() webhook.verify({}, H, SECRET) end,
          "webhook.verify: raw_body must be the exact request body string (got table): do"
          .. " not decode the JSON before verifying" },
        { "a nil body", function() webhook.verify(nil, H, SECRET) end,
          "webhook.verify: raw_body must be the exact request body string (got nil)" },
        { "a table header", function() webhook.verify(BODY, {}, SECRET) end,
          "webhook.verify: signature_header must be a string or nil (got table): pass the"
          .. " X-Chatmaid-Signature header value" },
        { "a missing secret", function() webhook.verify(BODY, H, nil) end,
          "webhook.verify: secret must be a non-empty string or a non-empty array of"
          .. " non-empty strings (got nil)" },
        { "an empty secret", function() webhook.verify(BODY, H, "") end,
          "webhook.verify: secret must not be empty" },
        { "an empty secret array", function() webhook.verify(BODY, H, {}) end,
          "webhook.verify: secret must be a non-empty string or a non-empty array of"
          .. " non-empty strings (got empty table)" },
        { "an empty string in the array", function() webhook.verify(BODY, H, { "a", "" }) end,
          "webhook.verify: secret[2] must be a non-empty string (got empty string)" },
        { "a number in the array", function() webhook.verify(BODY, H, { 1 }) end,
          "webhook.verify: secret[1] must be a non-empty string (got number)" },
        { "17 secrets", function()
            local s = {}
            for i = 1, 17 do s[i] = "k" .. i end
            webhook.verify(BODY, H, s)
          end, "webhook.verify: at most 16 secrets (got 17)" },
        { "opts not a table", function() webhook.verify(BODY, H, SECRET, 300) end,
          "webhook.verify: opts must be a table (got number)" },
        { "an unknown option", function() webhook.verify(BODY, H, SECRET, { tolerence = 1 }) end,
          "webhook.verify: unknown option 'tolerence'" },
        { "a zero tolerance", function() webhook.verify(BODY, H, SECRET, { tolerance = 0 }) end,
          "webhook.verify: opts.tolerance must be a positive number of seconds (got 0)" },
        { "a negative tolerance", function()
            webhook.verify(BODY, H, SECRET, { tolerance = -5 })
          end, "webhook.verify: opts.tolerance must be a positive number of seconds (got -5)" },
        { "a string now", function() webhook.verify(BODY, H, SECRET, { now = "x" }) end,
          "webhook.verify: opts.now must be a unix time in seconds (got x)" },
      }
      for _, case in ipairs(cases) do
        it(case[1], function() assert.has_error(case[2], case[3]) end)
      end
    end)
  end)

  describe("construct_event()", function()
    it("returns the decoded event with nulls dropped", function()
      local event = assert(webhook.construct_event(BODY, H, SECRET, OPTS))
      assert.are.equal("message.sent", event.event)
      assert.are.equal("2026-02-06T14:20:00.000Z", event.timestamp)
      assert.are.equal("msg_abc123def456", event.data.messageId)
      assert.is_nil(event.data.sentAt)
      assert.are.same({ 1, "x" }, event.data.tags)
    end)

    it("returns the signature error unchanged", function()
      local event, err = webhook.construct_event(BODY, H, "whsec_wrong", OPTS)
      assert.is_nil(event)
      assert.are.equal("mismatch", err.reason)
    end)

    it("returns invalid_payload for a signed JSON array", function()
      local _, err = webhook.construct_event("[1]", webhook.sign("[1]", SECRET, T), SECRET, OPTS)
      assert.are.equal("signature", err.kind)
      assert.are.equal("invalid_payload", err.reason)
      assert.are.equal("the signature is valid, but the payload is not a JSON object",
                       err.message)
    end)

    it("returns invalid_payload for signed invalid JSON", function()
      local body = '{"event": '
      local _, err = webhook.construct_event(body, webhook.sign(body, SECRET, T), SECRET, OPTS)
      assert.are.equal("invalid_payload", err.reason)
      assert.matches("^the signature is valid, but the payload is not valid JSON: ", err.message)
    end)

    it("raises on a decoded table with the raw-body hint", function()
      assert.has_error(function() webhook.construct_event({ event = "x" }, H, SECRET) end,
        "webhook.construct_event: raw_body must be the exact request body string (got table):"
        .. " do not decode the JSON before verifying")
    end)
  end)

  describe("dedupe_key()", function()
    local event = assert(webhook.construct_event(BODY, H, SECRET, OPTS))

    it("joins event, id, status and timestamp", function()
      assert.are.equal("message.sent|msg_abc123def456|sent|2026-02-06T14:20:00.000Z",
                       webhook.dedupe_key(event))
    end)

    it("is stable across a redelivery signed at another time", function()
      local again = assert(webhook.construct_event(BODY, webhook.sign(BODY, SECRET, T + 60),
                                                   SECRET, { now = T + 60 }))
      assert.are.equal(webhook.dedupe_key(event), webhook.dedupe_key(again))
    end)

    it("differs for message.failed on the same message", function()
      local failed = { event = "message.failed", timestamp = event.timestamp,
                       data = { messageId = "msg_abc123def456", status = "failed" } }
      assert.are_not.equal(webhook.dedupe_key(event), webhook.dedupe_key(failed))
    end)

    it("uses the phone id and connection status for phone events", function()
      assert.are.equal("phone.connected|ph_1|connected|2026-01-01T00:00:00Z",
        webhook.dedupe_key({ event = "phone.connected", timestamp = "2026-01-01T00:00:00Z",
                             data = { phoneNumberId = "ph_1", connectionStatus = "connected" } }))
    end)

    it("escapes the separator so fields cannot collide", function()
      local a = webhook.dedupe_key({ event = "a|b", data = { messageId = "c" } })
      local b = webhook.dedupe_key({ event = "a", data = { messageId = "b|c" } })
      assert.are_not.equal(a, b)
    end)

    it("raises on a non-table", function()
      assert.has_error(function() webhook.dedupe_key(BODY) end,
        "webhook.dedupe_key: event must be the table from construct_event (got string)")
    end)
  end)

  describe("seen_set()", function()
    local clock
    local function now() return clock end
    before_each(function() clock = 1000 end)

    it("reports a key as seen the second time only", function()
      local set = webhook.seen_set{ now = now }
      assert.is_false(set:seen("k"))
      assert.is_true(set:seen("k"))
      assert.is_true(set:has("k"))
    end)

    it("stays bounded by size, evicting the oldest key", function()
      local set = webhook.seen_set{ size = 3, now = now }
      for i = 1, 10 do set:add("k" .. i) end
      assert.are.equal(3, set:count())
      assert.is_false(set:has("k7"))
      assert.is_true(set:has("k8"))
      assert.is_true(set:has("k10"))
    end)

    it("keeps a re-added key as the newest", function()
      local set = webhook.seen_set{ size = 2, now = now }
      set:add("a"); set:add("b"); set:add("a"); set:add("c")
      assert.is_true(set:has("a"))
      assert.is_false(set:has("b"))
    end)

    it("forgets a key after ttl", function()
      local set = webhook.seen_set{ ttl = 60, now = now }
      assert.is_false(set:seen("k"))
      clock = 1059
      assert.is_true(set:has("k"))
      clock = 1060
      assert.is_false(set:has("k"))
      assert.is_false(set:seen("k"))
      assert.is_true(set:seen("k"))
    end)

    it("drops expired keys when adding", function()
      local set = webhook.seen_set{ ttl = 10, now = now }
      for i = 1, 5 do set:add(i) end
      clock = 2000
      set:add("new")
      assert.are.equal(1, set:count())
    end)

    -- Claims that never came back (handler stuck, done and release both lost) do not pile
    -- up in a long-running receiver: past `size` claims, expired ones are dropped. (White
    -- box: the claims table is what would grow.)
    it("drops abandoned claims once they outnumber size; live ones stay", function()
      local set = webhook.seen_set{ size = 4, now = now }
      local function held()
        local n = 0
        for _ in pairs(set.claims) do n = n + 1 end
        return n
      end
      for i = 1, 1000 do
        assert.is_string(set:claim("lost" .. i, 1))   -- never done, never released
        clock = clock + 2                            -- each lease is over before the next
      end
      assert.is_true(held() <= 5, "claims kept: " .. held())
      -- live claims are never dropped, however many: each still answers busy
      for i = 1, 50 do assert.is_string(set:claim("live" .. i, 30)) end
      for i = 1, 50 do assert.are.same({ false, "busy" }, { set:claim("live" .. i) }) end
      -- and an expired claim is taken over, done and remembered as before
      clock = clock + 31
      local t = assert(set:claim("live1"))
      assert.is_true(set:done("live1", t))
      assert.are.same({ false, "done" }, { set:claim("live1") })
      assert.is_true(held() <= 52, "claims kept: " .. held())
    end)

    local bad = {
      { { size = 0 }, "webhook.seen_set: size must be a positive integer (got 0)" },
      { { size = 1.5 }, "webhook.seen_set: size must be a positive integer (got 1.5)" },
      { { ttl = 0 }, "webhook.seen_set: ttl must be a positive number of seconds (got 0)" },
      { { now = 5 }, "webhook.seen_set: now must be a function (got number)" },
      { { max = 5 }, "webhook.seen_set: unknown option 'max'" },
    }
    for _, case in ipairs(bad) do
      it("raises: " .. case[2], function()
        assert.has_error(function() webhook.seen_set(case[1]) end, case[2])
      end)
    end

    it("raises on a table key", function()
      local set = webhook.seen_set()
      assert.has_error(function() set:seen({}) end,
        "seen_set:seen: key must be a string or a number (got table)")
    end)
  end)

  -- handle_once over any set of the claim protocol: a done that fails (as a Redis set's
  -- does while Redis stalls) is tried again; still failing, the event was handled all the
  -- same: "handled", err, never a raise. (The Redis set itself: spec/integration/
  -- redis_claim_spec.lua, with redis-server stopped between claim and done.)
  describe("handle_once() when done fails", function()
    local errors = require "chatmaid.errors"
    -- an in-process set whose done fails `n` times with a transport error
    local function failing(n, lease)
      local set = webhook.seen_set()
      local done, tries, naps = set.done, 0, {}
      set.lease = lease
      function set.done(self, key, token)
        tries = tries + 1
        if tries <= n then
          return nil, errors.new("transport", "redis: SET: no answer within 200 ms",
                                 { reason = "timeout" })
        end
        return done(self, key, token)
      end
      set.sleep = function(d) naps[#naps + 1] = d end
      return set, function() return tries end, naps
    end

    it("tries again: 'handled' once a later try marks it", function()
      local set, tries, naps = failing(2)
      local ran = 0
      assert.same({ "handled" }, { webhook.handle_once(set, "k", function() ran = ran + 1 end) })
      assert.equal(3, tries())
      assert.same({ 0.1, 0.2 }, naps)          -- the backoff, doubled
      assert.equal(1, ran)
      assert.equal("duplicate", set:handle("k", function() error("not again") end))
    end)

    it("still failing after DONE_TRIES: 'handled', err (handled = true), no raise",
       function()
      local set, tries = failing(math.huge)
      local ran = 0
      local r, err = set:handle("k", function() ran = ran + 1 end)
      assert.equal("handled", r)
      assert.equal(1, ran)
      assert.equal(webhook.DONE_TRIES, tries())
      assert.same({ "transport", "timeout", true, "k" },
                  { err.kind, err.reason, err.handled, err.key })
      assert.equal("transport", err.cause.kind)
      assert.equal("chatmaid transport: the handler ran, but marking the delivery done failed "
                   .. "(redis: SET: no answer within 200 ms): a redelivery after the claim's "
                   .. "lease would run the handler again; log it, and answer 2xx all the same "
                   .. "(the event was handled)", tostring(err))
    end)

    it("tries only while the claim's lease lasts", function()
      local set, tries, naps = failing(math.huge, 0.05)   -- a lease shorter than the backoff
      local r, err = set:handle("k", function() end)
      assert.equal("handled", r)
      assert.is_true(err.handled)
      assert.equal(1, tries())
      assert.same({}, naps)
    end)
  end)
end)
