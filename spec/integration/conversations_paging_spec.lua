-- SPDX-License-Identifier: MIT
-- c:messages(conversation_id): the cursor walk against the sandbox over real sockets, in
-- both page orders (ascending within a page as the contract's example shows, and newest
-- first), with ties, missing timestamps, no hasNext, and a raw server repeating one page.
-- Requests are counted at the sandbox (its stats), or by the client's hook for the raw server.
local conversations = require "chatmaid.conversations"
local F = require "spec.support.fixtures"
local raw_server = require "spec.support.raw_server"
local cjson = require "cjson"

local KEY = "sk_test_sandbox_0000000000000001"
local LIST = "GET /api/whatsapp/messages"

describe("chatmaid.conversations messages() cursor walk #integration", function()
  local sb = F.block_sandbox({ rate_limit = false }, { reset = false })
  local c

  setup(function()
    c = assert(conversations.new{ base_url = sb.url, api_key = KEY, timeout = 20 })
  end)

  teardown(function()
    if c then c:close() end
  end)

  local function config(order, extra)
    local t = { rate_limit = false, conversations_page_order = order,
                conversations_has_next = true }
    for k, v in pairs(extra or {}) do t[k] = v end
    assert(sb:config(t))
  end

  -- one bulk request per conversation (the seed route), so 1,000 messages cost one call
  local function seed(spec)
    local status, body = sb:request("POST", "/__sandbox/conversations/seed", spec)
    assert.equal(201, status)
    return body.data
  end

  local phone = 0
  local function fresh_to()        -- each seed of a spec gets its own conversation
    phone = phone + 1
    return string.format("+1555765%04d", 3000 + phone)
  end

  local function requests()
    return sb:stats().byPath[LIST] or 0
  end

  -- walk(cid, opts) -> ids in yield order, the error (if any), requests made
  local function walk(cid, opts)
    local before = requests()
    local ids, failure = {}, nil
    for m, err in c:messages(cid, opts) do
      if not m then failure = err; break end
      ids[#ids + 1] = m.id
    end
    return ids, failure, requests() - before
  end

  local function reversed(t)
    local out = {}
    for i = #t, 1, -1 do out[#out + 1] = t[i] end
    return out
  end

  -- every seeded id exactly once (a clear message instead of a 1,000-line diff)
  local function assert_each_once(seeded, ids)
    local count, want = {}, {}
    for _, id in ipairs(seeded) do want[id] = true end
    for _, id in ipairs(ids) do
      assert(want[id], "an id that was never seeded: " .. tostring(id))
      count[id] = (count[id] or 0) + 1
      assert(count[id] == 1, "yielded twice: " .. id)
    end
    assert.equal(#seeded, #ids)
  end

  local convs = {}
  setup(function()
    convs[23] = seed{ to = "+15557650023", count = 23 }
    convs[1000] = seed{ to = "+15557651000", count = 1000 }
  end)

  for _, order in ipairs{ "asc", "desc" } do
    describe(order .. " pages", function()
      before_each(function() config(order) end)

      for _, n in ipairs{ 23, 1000 } do
        for _, size in ipairs{ 1, 5, 50, 100 } do
          local want = math.ceil(n / size)
          it(("%d messages, page_size %d: each id once, newest first, %d requests")
             :format(n, size, want), function()
            local seeded = convs[n]
            local ids, err, made = walk(seeded.conversationId, { page_size = size })
            assert.is_nil(err)
            assert_each_once(seeded.ids, ids)
            assert.same(reversed(seeded.ids), ids)
            assert.equal(want, made)
          end)
        end
      end

      it("page_order given: the same walk without detecting the order", function()
        local seeded = convs[23]
        local ids, err, made = walk(seeded.conversationId, { page_size = 5, page_order = order })
        assert.is_nil(err)
        assert.same(reversed(seeded.ids), ids)
        assert.equal(5, made)
      end)

      it("starts below a given cursor", function()
        local seeded = convs[23]
        local ids, err, made = walk(seeded.conversationId,
          { page_size = 5, before = seeded.ids[13] })
        assert.is_nil(err)
        local want = {}
        for i = 12, 1, -1 do want[#want + 1] = seeded.ids[i] end
        assert.same(want, ids)
        assert.equal(3, made)
      end)

      it("ties: runs of 3 messages share a timestamp; the position breaks the tie", function()
        local seeded = seed{ to = fresh_to(), count = 50, tie = 3 }
        for _, size in ipairs{ 1, 5, 7 } do
          local ids, err, made = walk(seeded.conversationId, { page_size = size })
          assert.is_nil(err)
          assert.same(reversed(seeded.ids), ids)
          assert.equal(math.ceil(50 / size), made)
        end
      end)

      it("ties: every message has the same timestamp", function()
        local seeded = seed{ to = fresh_to(), count = 23, tie = 23 }
        for _, size in ipairs{ 1, 5, 50 } do
          local ids, err, made = walk(seeded.conversationId, { page_size = size })
          assert.is_nil(err)
          assert_each_once(seeded.ids, ids)
          -- nothing tells a newest-first page from the contract's ascending one; a wrong
          -- first guess costs one overlapping page, then the order is known
          local extra = (order == "desc" and size > 1 and size < 23) and 1 or 0
          assert.equal(math.ceil(23 / size) + extra, made)
        end
      end)

      it("missing timestamps: each id once; page_order makes it exact", function()
        local seeded = seed{ to = fresh_to(), count = 23, timestamps = false }
        for _, size in ipairs{ 1, 5, 50 } do
          local ids, err, made = walk(seeded.conversationId, { page_size = size })
          assert.is_nil(err)
          assert_each_once(seeded.ids, ids)
          local extra = (order == "desc" and size > 1 and size < 23) and 1 or 0
          assert.equal(math.ceil(23 / size) + extra, made)
          local want = reversed(seeded.ids)
          if order == "desc" and size > 1 then
            -- the first page was taken for ascending, so it comes out oldest first
            local k = math.min(size, 23)
            for i = 1, k do want[i] = seeded.ids[23 - k + i] end
          end
          assert.same(want, ids)
          ids, err, made = walk(seeded.conversationId, { page_size = size, page_order = order })
          assert.is_nil(err)
          assert.same(reversed(seeded.ids), ids)
          assert.equal(math.ceil(23 / size), made)
        end
      end)

      it("without hasNext: stops on a short page, or after one empty page", function()
        config(order, { conversations_has_next = false })
        finally(function() config(order) end)
        for _, case in ipairs{ { 23, 5, 5 }, { 23, 100, 1 }, { 1000, 100, 11 },
                               { 1000, 50, 21 }, { 1000, 7, 143 } } do
          local n, size, want = case[1], case[2], case[3]
          local ids, err, made = walk(convs[n].conversationId, { page_size = size })
          assert.is_nil(err)
          assert.same(reversed(convs[n].ids), ids)
          assert.equal(want, made)
        end
      end)
    end)
  end

  describe("a server that repeats one page", function()
    -- the same full page with hasNext (or without it) for every cursor: the walk must end
    local function serve(page)
      local body = cjson.encode(page)
      local file = os.tmpname()
      local f = assert(io.open(file, "wb"))
      f:write("HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: "
              .. #body .. "\r\n\r\n" .. body)
      f:close()
      local srv = raw_server.start(file)
      finally(function()     -- a stopped child, or the pipe's close would wait for it
        srv:stop()
        os.remove(file)
      end)
      local seen = 0
      local rc = assert(conversations.new{ base_url = srv.url, api_key = KEY, timeout = 10,
        max_retries = 0, on_request = function() seen = seen + 1 end })
      local ids, failure, n = {}, nil, 0
      for m, err in rc:messages("conv_x", { page_size = 3 }) do
        n = n + 1
        assert(n < 50, "the walk did not end")
        if not m then failure = err else ids[#ids + 1] = m.id end
      end
      rc:close()
      return ids, failure, seen
    end

    local function msg(id, ts) return { id = id, type = "text", timestamp = ts } end

    local cases = {
      { "with hasNext = true", { hasNext = true, total = 9 } },
      { "without hasNext", { total = 9 } },
      { "without timestamps", { hasNext = true } },
    }
    for _, case in ipairs(cases) do
      it(case[1] .. ": yields the page once, then false, err (server) and ends", function()
        local page = case[2]
        if page.total then
          page.data = { msg("m7", "2026-05-16T10:30:00.000Z"),
                        msg("m8", "2026-05-16T10:30:05.000Z"),
                        msg("m9", "2026-05-16T10:30:09.000Z") }
        else
          page.data = { msg("m7"), msg("m8"), msg("m9") }
        end
        local ids, err, seen = serve(page)
        assert.same({ "m9", "m8", "m7" }, ids, err and tostring(err))
        assert.equal(2, seen)
        assert.equal("server", err.kind)
        assert.is_false(err.retryable)
        assert.equal("pagination stopped after page 2: "
          .. (page.hasNext and "hasNext is true" or "the page is full")
          .. " but it brought no new message (the server ignored the cursor); the listing "
          .. "may be incomplete", err.message)
      end)
    end
  end)
end)
