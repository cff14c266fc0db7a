-- SPDX-License-Identifier: MIT
-- chatmaid.paginate's cursor walk as a pure function: time parsing, page order detection,
-- the next cursor, deduplication and every way the walk ends (no I/O involved).
local paginate = require "chatmaid.paginate"

local T = 1778927400          -- 2026-05-16T10:30:00Z

local function msg(id, ts) return { id = id, type = "text", timestamp = ts } end

local function ids_of(list)
  local out = {}
  for i, m in ipairs(list) do out[i] = m.id end
  return out
end

local function state(o)
  o = o or {}
  o.path = "/api/whatsapp/messages"
  return paginate.cursor_state(o)
end

describe("chatmaid.paginate", function()
  describe("time()", function()
    local same = {
      "2026-05-16T10:30:00.000Z", "2026-05-16T10:30:00Z", "2026-05-16t10:30:00z",
      "2026-05-16 10:30:00Z", "2026-05-16T10:30:00", "2026-05-16T10:30Z",
      "2026-05-16T12:30:00+02:00", "2026-05-16T12:30:00+0200", "2026-05-16T12:30:00+02",
      "2026-05-16T07:00:00-03:30", " 2026-05-16T10:30:00.000Z ", "2026-05-16T10:30:00,000Z",
      T, T * 1000, tostring(T), tostring(T * 1000),
    }
    for _, v in ipairs(same) do
      it("reads " .. string.format("%q", tostring(v)), function()
        assert.equal(T, paginate.time(v))
      end)
    end

    it("keeps fractions of any length", function()
      assert.equal(0.5, paginate.time("2026-05-16T10:30:00.5Z") - T)
      assert.near(0.123456, paginate.time("2026-05-16T10:30:00.123456Z") - T, 1e-6)
      assert.is_true(paginate.time("2026-05-16T10:30:00.001Z")
                     < paginate.time("2026-05-16T10:30:00.002Z"))
    end)

    it("counts calendar days right (leap years, before 1970)", function()
      assert.equal(86400, paginate.time("2024-02-29T00:00:00Z")
                          - paginate.time("2024-02-28T00:00:00Z"))
      assert.equal(2 * 86400, paginate.time("2000-03-01") - paginate.time("2000-02-28"))
      assert.equal(-1, paginate.time("1969-12-31T23:59:59Z"))
      assert.equal(0, paginate.time("1970-01-01"))
      assert.equal(951782400, paginate.time("2000-02-29T00:00:00Z"))
    end)

    it("orders by instant, not by text", function()
      -- 12:00+02:00 is 10:00Z: earlier than 10:30Z although it sorts after it as text
      assert.is_true(paginate.time("2026-05-16T12:00:00+02:00")
                     < paginate.time("2026-05-16T10:30:00Z"))
    end)

    local bad = { "", "yesterday", "2026-13-01T00:00:00Z", "2026-05-16T25:00:00Z",
                  "2026-05-16T10:60:00Z", "2026-05-16T10:30:00+25:00", "2026-05-16T10:30:00 PST",
                  "2026-05-16X10:30", "2026-5-16", {}, true, 0 / 0, math.huge }
    for _, v in ipairs(bad) do
      it("gives nil for " .. string.format("%q", tostring(v)), function()
        assert.is_nil(paginate.time(v))
      end)
    end
    it("gives nil for nil", function() assert.is_nil(paginate.time(nil)) end)
  end)

  describe("cursor_step()", function()
    it("an ascending page: newest first out, the oldest (by instant) is the cursor", function()
      local st = state{ page_size = 3 }
      local fresh, err = paginate.cursor_step(st, { hasNext = true, data = {
        msg("a", "2026-05-16T12:00:00+02:00"),       -- 10:00Z
        msg("b", "2026-05-16T10:30:00Z"),
        msg("c", "2026-05-16T13:00:00+02:00") } })   -- 11:00Z
      assert.is_nil(err)
      assert.same({ "c", "b", "a" }, ids_of(fresh))
      assert.equal("a", st.cursor)
      assert.is_false(st.done)
      assert.equal("asc", st.order)
    end)

    it("a newest-first page: out as it came, the last message is the cursor", function()
      local st = state{ page_size = 3 }
      local fresh = paginate.cursor_step(st, { hasNext = true, data = {
        msg("c", "2026-05-16T10:30:02Z"), msg("b", "2026-05-16T10:30:01Z"),
        msg("a", "2026-05-16T10:30:00Z") } })
      assert.same({ "c", "b", "a" }, ids_of(fresh))
      assert.equal("a", st.cursor)
      assert.equal("desc", st.order)
    end)

    it("ties at the oldest timestamp go to the older end of the page", function()
      local st = state{ page_size = 3 }
      paginate.cursor_step(st, { hasNext = true, data = {
        msg("c", "2026-05-16T10:30:01Z"), msg("b", "2026-05-16T10:30:00Z"),
        msg("a", "2026-05-16T10:30:00Z") } })
      assert.equal("a", st.cursor)
      st = state{ page_size = 3 }
      paginate.cursor_step(st, { hasNext = true, data = {
        msg("a", "2026-05-16T10:30:00Z"), msg("b", "2026-05-16T10:30:00Z"),
        msg("c", "2026-05-16T10:30:01Z") } })
      assert.equal("a", st.cursor)
    end)

    it("a page with some timestamps missing: the order from the others, then position",
      function()
      local st = state{ page_size = 4 }
      local fresh = paginate.cursor_step(st, { hasNext = true, data = {
        msg("a"), msg("b", "2026-05-16T10:30:00Z"), msg("c", "2026-05-16T10:30:01Z"),
        msg("d") } })
      assert.equal("asc", st.order)
      assert.equal("a", st.cursor)
      assert.same({ "d", "c", "b", "a" }, ids_of(fresh))
    end)

    it("no timestamps: assumes ascending, and flips once when the next page overlaps",
      function()
      local st = state{ page_size = 3 }
      local fresh = paginate.cursor_step(st, { hasNext = true,
        data = { msg("m9"), msg("m8"), msg("m7") } })      -- really newest first
      assert.same({ "m7", "m8", "m9" }, ids_of(fresh))
      assert.equal("m9", st.cursor)                        -- the wrong end
      fresh = paginate.cursor_step(st, { hasNext = true,
        data = { msg("m8"), msg("m7"), msg("m6") } })      -- older than m9
      assert.same({ "m6" }, ids_of(fresh))
      assert.equal("desc", st.order)
      assert.equal("m6", st.cursor)
      fresh = paginate.cursor_step(st, { hasNext = false,
        data = { msg("m5"), msg("m4"), msg("m3") } })
      assert.same({ "m5", "m4", "m3" }, ids_of(fresh))
      assert.is_true(st.done)
    end)

    it("page_order given: trusted over the timestamps", function()
      local st = state{ page_size = 2, page_order = "desc" }
      local fresh = paginate.cursor_step(st, { hasNext = true, data = {
        msg("x", "2026-05-16T10:30:00Z"), msg("y", "2026-05-16T10:30:01Z") } })
      assert.same({ "x", "y" }, ids_of(fresh))
      assert.equal("y", st.cursor)
    end)

    it("stops after hasNext = false, whatever the page size", function()
      local st = state{ page_size = 2 }
      paginate.cursor_step(st, { hasNext = false, data = { msg("a"), msg("b") } })
      assert.is_true(st.done)
    end)

    it("trusts hasNext = true on a short page (a server may cap the limit)", function()
      local st = state{ page_size = 5 }
      paginate.cursor_step(st, { hasNext = true, data = { msg("a"), msg("b") } })
      assert.is_false(st.done)
      assert.equal("a", st.cursor)
    end)

    it("without hasNext: goes on after a full page, stops after a short one", function()
      local st = state{ page_size = 2 }
      paginate.cursor_step(st, { data = { msg("c"), msg("d") } })
      assert.is_false(st.done)
      paginate.cursor_step(st, { data = { msg("b") } })
      assert.is_true(st.done)
    end)

    it("stops on an empty page, without an error", function()
      local st = state{ page_size = 2 }
      local fresh, err = paginate.cursor_step(st, { data = {}, hasNext = true })
      assert.same({}, fresh)
      assert.is_nil(err)
      assert.is_true(st.done)
    end)

    it("a page without a data array is a decode error", function()
      local st = state()
      local fresh, err = paginate.cursor_step(st, { total = 3 })
      assert.same({}, fresh)
      assert.equal("decode", err.kind)
      assert.equal("the list response has no data array", err.message)
      assert.is_true(st.done)
    end)

    it("a repeated page yields nothing and ends with a server error", function()
      local st = state{ page_size = 2 }
      local page = { hasNext = true, data = { msg("a"), msg("b") } }
      assert.equal(2, #paginate.cursor_step(st, page))
      local fresh, err = paginate.cursor_step(st, page)
      assert.same({}, fresh)
      assert.equal("server", err.kind)
      assert.is_false(err.retryable)
      assert.equal("/api/whatsapp/messages", err.path)
      assert.equal("pagination stopped after page 2: hasNext is true but it brought no new "
        .. "message (the server ignored the cursor); the listing may be incomplete",
        err.message)
      assert.is_true(st.done)
      assert.has_error(function() paginate.cursor_step(st, page) end,
        "chatmaid.paginate: cursor_step after the walk ended")
    end)

    it("a cursor that comes back ends the walk (a server going round in circles)", function()
      local st = state{ page_size = 2, page_order = "asc" }
      paginate.cursor_step(st, { hasNext = true, data = { msg("a1"), msg("a2") } })
      paginate.cursor_step(st, { hasNext = true, data = { msg("b1"), msg("b2") } })
      local fresh, err = paginate.cursor_step(st, { hasNext = true,
        data = { msg("a1"), msg("c2") } })
      assert.same({ "c2" }, ids_of(fresh))
      assert.equal("pagination stopped after page 3: the next cursor a1 was already used; "
        .. "the listing may be incomplete", err.message)
    end)

    it("the first cursor given counts as used", function()
      local st = state{ page_size = 2, before = "z" }
      local _, err = paginate.cursor_step(st, { hasNext = true, data = { msg("z"), msg("y") } })
      assert.equal("server", err.kind)
    end)

    it("ends when the server hands out more messages than its total", function()
      local st = state{ page_size = 2 }
      local _, err
      for p = 1, 10 do
        _, err = paginate.cursor_step(st, { hasNext = true, total = 4,
          data = { msg("p" .. p .. "a"), msg("p" .. p .. "b") } })
        if err then break end
      end
      assert.equal(4, st.pages)
      assert.equal("pagination stopped after page 4: the server gave 8 messages, more than "
        .. "its total of 4; the listing may be incomplete", err.message)
    end)

    it("passes messages without an id through, but they are no progress", function()
      local st = state{ page_size = 2 }
      local fresh, err = paginate.cursor_step(st, { hasNext = false,
        data = { { type = "text" }, msg("a") } })
      assert.is_nil(err)
      assert.equal(2, #fresh)
      st = state{ page_size = 2 }
      fresh, err = paginate.cursor_step(st, { hasNext = true, data = { { type = "text" } } })
      assert.equal(1, #fresh)
      assert.equal("server", err.kind)
    end)

    it("drops a repeated id inside a page", function()
      local st = state{ page_size = 3 }
      local fresh = paginate.cursor_step(st, { hasNext = false,
        data = { msg("a"), msg("b"), msg("a") } })
      assert.same({ "a", "b" }, ids_of(fresh))
    end)

    it("remembers at least two pages and CURSOR_SEEN ids, and not many more", function()
      local saved = paginate.CURSOR_SEEN
      paginate.CURSOR_SEEN = 6
      finally(function() paginate.CURSOR_SEEN = saved end)
      local st = state{ page_size = 4 }
      for p = 1, 50 do
        local data = {}
        for k = 1, 4 do data[k] = msg(("p%02d_%d"):format(p, k)) end
        local _, err = paginate.cursor_step(st, { hasNext = true, data = data })
        assert.is_nil(err)
        local n = 0
        for _ in pairs(st.seen) do n = n + 1 end
        assert.equal(st.held, n)
        assert.is_true(n >= math.min(p * 4, 8) and n <= 6 + 4, "holds " .. n)
      end
      -- the last page before this one is still known: its ids are dropped
      local fresh = paginate.cursor_step(st, { hasNext = false,
        data = { msg("p49_1"), msg("p50_4"), msg("new") } })
      assert.same({ "new" }, ids_of(fresh))
    end)
  end)
end)
