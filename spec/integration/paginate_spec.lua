-- SPDX-License-Identifier: MIT
-- client:messages / message_pages / collect_messages against the sandbox (real sockets), and
-- against fake transports that misbehave in ways the sandbox does not.
local F = require "spec.support.fixtures"
local chatmaid = require "chatmaid"
local cjson = require "cjson"

local function list_requests(sb)
  return sb:stats().byPath["GET /v1/messages"] or 0
end

-- newest first: the reverse of creation order
local function reversed(ids)
  local out = {}
  for i = #ids, 1, -1 do out[#out + 1] = ids[i] end
  return out
end

describe("chatmaid pagination #integration", function()
  local sb = F.block_sandbox{ rate_limit = false }
  local c, seeded

  setup(function()
    c = F.client(sb, { max_retries = 0 })
  end)

  teardown(function()
    if c then c:close() end
  end)

  before_each(function()
    local r = assert(sb:seed{ count = 1000 })
    seeded = reversed(r.ids)
  end)

  describe("messages()", function()
    for _, case in ipairs{ { size = 7, requests = 143 }, { size = 100, requests = 10 },
                           { size = 1, requests = 1000 } } do
      it("walks 1000 messages in pages of " .. case.size .. ", newest first, each once, in "
         .. case.requests .. " requests", function()
        local ids, seen = {}, {}
        for msg, err in c:messages{ page_size = case.size } do
          assert.is_truthy(msg, tostring(err))
          assert.is_nil(seen[msg.id])
          seen[msg.id] = true
          ids[#ids + 1] = msg.id
        end
        assert.are.same(seeded, ids)
        assert.are.equal(case.requests, list_requests(sb))
      end)
    end

    it("is lazy: page n+1 is fetched only once page n is used up", function()
      local n = 0
      for msg in c:messages{ page_size = 7 } do
        assert.is_truthy(msg)
        n = n + 1
        if n == 7 then assert.are.equal(1, list_requests(sb)) end
        if n == 8 then assert.are.equal(2, list_requests(sb)) end
        if n == 10 then break end
      end
      assert.are.equal(2, list_requests(sb))
    end)

    it("stops at max_items without fetching further pages", function()
      local ids = {}
      for msg in c:messages{ page_size = 100, max_items = 250 } do ids[#ids + 1] = msg.id end
      assert.are.equal(250, #ids)
      assert.are.equal(seeded[250], ids[250])
      assert.are.equal(3, list_requests(sb))
    end)

    it("defaults to pages of 100", function()
      local n = 0
      for msg in c:messages() do if msg then n = n + 1 end end
      assert.are.equal(1000, n)
      assert.are.equal(10, list_requests(sb))
    end)

    it("passes the filters: status and phone_number_id", function()
      assert(sb:seed{ count = 5, status = "failed" })
      local n = 0
      for msg, err in c:messages{ status = "failed", phone_number_id = F.PHONE, page_size = 2 } do
        assert.is_truthy(msg, tostring(err))
        assert.are.equal("failed", msg.status)
        n = n + 1
      end
      assert.are.equal(5, n)
      assert.are.equal(3, list_requests(sb))
    end)

    it("never yields an id twice when messages arrive during the walk; the new ones are "
       .. "not part of it", function()
      local ids, seen, added = {}, {}, nil
      for msg, err in c:messages{ page_size = 10 } do
        assert.is_truthy(msg, tostring(err))
        assert.is_nil(seen[msg.id], "duplicate " .. msg.id)
        seen[msg.id] = true
        ids[#ids + 1] = msg.id
        if #ids == 25 then
          -- 15 newer messages push every older one 15 places back: page 4 (offsets 30..39)
          -- now holds messages 15..24, all seen already
          added = assert(sb:seed{ count = 15 }).ids
        end
      end
      assert.are.same(seeded, ids)          -- every message that existed, once, in order
      for _, id in ipairs(added) do assert.is_nil(seen[id]) end
      assert.are.equal(102, list_requests(sb))   -- ceil(1015 / 10)
    end)
  end)

  describe("an error in the middle", function()
    it("yields false, err once (page 3 fails) and then ends", function()
      local got, errs, after_error = 0, {}, 0
      for msg, err in c:messages{ page_size = 10 } do
        if msg then
          got = got + 1
          if got == 20 then
            assert(sb:fault{ path = "/v1/messages", method = "GET", type = "json_503" })
          end
        else
          errs[#errs + 1] = err
        end
        if #errs > 0 and msg then after_error = after_error + 1 end
      end
      assert.are.equal(20, got)
      assert.are.equal(1, #errs)
      assert.are.equal(0, after_error)
      assert.are.equal("server", errs[1].kind)
      assert.are.equal(503, errs[1].status)
      assert.are.equal(3, errs[1].page)
      assert.are.equal("GET", errs[1].method)
      assert.are.equal("/v1/messages?page=3&limit=10", errs[1].path)
      assert.are.equal(3, list_requests(sb))
    end)

    it("is retried away by the client policy when retries are allowed", function()
      local rc = F.client(sb, { max_retries = 2 })
      local n = 0
      for msg, err in rc:messages{ page_size = 100 } do
        assert.is_truthy(msg, tostring(err))
        n = n + 1
        if n == 200 then
          assert(sb:fault{ path = "/v1/messages", method = "GET", type = "json_503" })
        end
      end
      rc:close()
      assert.are.equal(1000, n)
      assert.are.equal(11, list_requests(sb))
    end)

    it("makes collect_messages return nil, err with what was read in err.collected", function()
      assert(sb:fault{ path = "/v1/messages", method = "GET", type = "html_500" })
      local all, err = c:collect_messages{ max_items = 50 }
      assert.is_nil(all)
      assert.are.equal("server", err.kind)
      assert.are.equal(500, err.status)
      assert.are.equal(0, #err.collected)
    end)
  end)

  describe("message_pages()", function()
    it("yields each page with its data and pagination", function()
      local pages = {}
      for page, err in c:message_pages{ page_size = 100 } do
        assert.is_truthy(page, tostring(err))
        pages[#pages + 1] = page
      end
      assert.are.equal(10, #pages)
      for i, page in ipairs(pages) do
        assert.are.equal(i, page.page)
        assert.are.equal(100, #page.data)
        assert.are.equal(seeded[(i - 1) * 100 + 1], page.data[1].id)
        assert.are.same({ page = i, limit = 100, total = 1000, totalPages = 10 },
                        page.pagination)
      end
    end)

    it("cuts the last page at max_items", function()
      local sizes = {}
      for page in c:message_pages{ page_size = 7, max_items = 10 } do
        sizes[#sizes + 1] = #page.data
      end
      assert.are.same({ 7, 3 }, sizes)
      assert.are.equal(2, list_requests(sb))
    end)
  end)

  describe("collect_messages()", function()
    it("returns an array of at most max_items", function()
      local all = assert(c:collect_messages{ max_items = 1000, page_size = 100 })
      assert.are.equal(1000, #all)
      assert.are.equal(chatmaid.array_mt, getmetatable(all))
      assert.are.equal(seeded[1], all[1].id)
      assert.are.equal(seeded[1000], all[1000].id)
      local some = assert(c:collect_messages{ max_items = 5, page_size = 2 })
      assert.are.equal(5, #some)
    end)

    it("raises without max_items", function()
      assert.has_error(function() c:collect_messages{} end,
        "chatmaid: collect_messages requires max_items (a positive integer): collecting "
        .. "without a bound could hold every message of the account in memory")
      assert.has_error(function() c:collect_messages() end)
    end)
  end)

  describe("parameters are checked before the first request", function()
    it("raises on an unknown parameter", function()
      assert.has_error(function() c:messages{ limit = 5 } end,
        "chatmaid: messages: unknown parameter 'limit'")
      assert.has_error(function() c:message_pages{ page = 2 } end,
        "chatmaid: message_pages: unknown parameter 'page'")
    end)

    it("raises when not called as a method", function()
      assert.has_error(function() c.messages{} end,
        "chatmaid: messages must be called as client:messages(...)")
    end)

    it("yields false, validation err once for a bad page_size, and sends nothing", function()
      for _, bad in ipairs{ 0, 101, 2.5, "10" } do
        local calls, first = 0, nil
        for msg, err in c:messages{ page_size = bad } do
          calls = calls + 1
          assert.is_false(msg)
          first = err
        end
        assert.are.equal(1, calls)
        assert.are.equal("validation", first.kind)
        assert.are.equal("page_size must be an integer 1..100; got " .. tostring(bad),
                         first.message)
      end
      assert.are.equal(0, list_requests(sb))
    end)

    it("reports every bad value at once", function()
      local _, err = c:collect_messages{ max_items = 0, status = "lost", environment = "prod" }
      assert.are.equal("validation", err.kind)
      assert.are.same({
        "max_items must be an integer >= 1; got 0",
        "status must be one of delivered, failed, pending, read, sent; got lost",
        "environment must be one of live, test; got prod",
      }, err.messages)
      assert.are.equal(0, list_requests(sb))
    end)
  end)
end)

-- A fake transport that answers GET /v1/messages with whatever `page_for(page, limit)` says.
local function fake_client(page_for)
  local calls = 0
  local transport = {
    request = function(_, req)
      calls = calls + 1
      local page = tonumber(req.url:match("[?&]page=(%d+)"))
      local limit = tonumber(req.url:match("[?&]limit=(%d+)"))
      local data, pagination = page_for(page, limit)
      return { status = 200, headers = {},
               body = cjson.encode{ success = true,
                                    data = { data = data, pagination = pagination } } }
    end,
  }
  local c = assert(chatmaid.new{ api_key = F.TEST_KEY, transport = transport,
                                 sleep = function() end, max_retries = 0 })
  return c, function() return calls end
end

local function msgs(from, to)
  local out = {}
  for i = from, to do out[#out + 1] = { id = "msg_" .. i, status = "sent" } end
  return out
end

describe("chatmaid pagination against a misbehaving server", function()
  it("stops with an error when a full page repeats and the total does not grow", function()
    local c, calls = fake_client(function(page, limit)
      return msgs(1, 3), { page = page, limit = limit, total = 9, totalPages = 3 }
    end)
    local got, errs = {}, {}
    for msg, err in c:messages{ page_size = 3 } do
      if msg then got[#got + 1] = msg.id else errs[#errs + 1] = err end
    end
    assert.are.same({ "msg_1", "msg_2", "msg_3" }, got)
    assert.are.equal(1, #errs)
    assert.are.equal("server", errs[1].kind)
    assert.is_false(errs[1].retryable)
    assert.are.equal("pagination stopped at page 2: the page brought no new message and the "
      .. "total did not grow; the listing may be incomplete (restart the walk)",
      errs[1].message)
    assert.are.equal(2, calls())
  end)

  it("stops with an error when totalPages keeps growing past the total", function()
    local c, calls = fake_client(function(page, limit)
      return msgs(page * 10, page * 10 + limit - 1),
             { page = page, limit = limit, total = 9, totalPages = 1000 }
    end)
    local n, errs = 0, {}
    for msg, err in c:messages{ page_size = 3 } do
      if msg then n = n + 1 else errs[#errs + 1] = err end
    end
    -- ceil(9 / 3) + 3 extra pages, all delivered, then the error
    assert.are.equal(6, calls())
    assert.are.equal(18, n)
    assert.are.equal(1, #errs)
    assert.are.equal("pagination stopped at page 6: more pages than the announced total "
      .. "allows; the listing may be incomplete (restart the walk)", errs[1].message)
  end)

  it("ends at an empty page even when totalPages says more", function()
    local c, calls = fake_client(function(page, limit)
      if page > 2 then return {}, { page = page, limit = limit, total = 30, totalPages = 10 } end
      return msgs(page * 10, page * 10 + limit - 1),
             { page = page, limit = limit, total = 30, totalPages = 10 }
    end)
    local n = 0
    for msg in c:messages{ page_size = 3 } do if msg then n = n + 1 end end
    assert.are.equal(6, n)
    assert.are.equal(3, calls())
  end)
end)
