-- SPDX-License-Identifier: MIT
-- send_batch{ journal = path }: confirmed items are never requested again, unknown ones are
-- sent again with their key, a torn last line is ignored, and 20 kill -9 at random moments
-- end with exactly one message per item; interrupts (should_stop, a raising hook) stop
-- within a second, also during a rate-limit wait or a retry sleep.
local F = require "spec.support.fixtures"
local core = require "chatmaid.core"
local socket = require "socket"
local batch = require "chatmaid.batch"
local journal = require "chatmaid.journal"

local function recipient(i) return "+1556" .. string.format("%07d", i) end

local function make_items(n, first)
  local items = {}
  for i = 1, n do
    local k = (first or 0) + i
    items[i] = { from = F.PHONE, to = recipient(k), content = "journal message " .. k }
  end
  return items
end

local function read(path)
  local f = io.open(path, "rb")
  if not f then return nil end
  local s = f:read("*a")
  f:close()
  return s
end

local function write(path, s)
  local f = assert(io.open(path, "wb"))
  f:write(s)
  f:close()
end

local function sends(sb) return sb:stats().byPath["POST /v1/messages/send"] or 0 end

-- every message at the sandbox, by recipient
local function census(c)
  local all = assert(c:collect_messages{ max_items = 5000 })
  local by_to = {}
  for _, m in ipairs(all) do by_to[m.to] = (by_to[m.to] or 0) + 1 end
  return by_to, #all
end

describe("send_batch with a journal #integration", function()
  local sb = F.block_sandbox{ rate_limit = false }
  local dir

  setup(function()
    dir = os.tmpname()
    os.remove(dir)
    assert(os.execute("mkdir -p " .. dir))
  end)
  teardown(function()
    if dir then os.execute("rm -rf " .. dir) end
  end)

  it("a re-run makes no request for the items the journal confirmed", function()
    local path = dir .. "/again.journal"
    local c = F.client(sb)
    local items = make_items(10)
    local r1, s1 = c:send_batch(items, { journal = path, batch_id = "again",
                                         rate_per_minute = false })
    assert.are.same({ 10, 0, 0, 0 }, { s1.sent, s1.replayed, s1.skipped, s1.failed })
    local before = sb:stats().requests
    local progress = 0
    local r2, s2 = c:send_batch(items, { journal = path, rate_per_minute = false,
                                         on_progress = function() progress = progress + 1 end })
    assert.are.equal(before, sb:stats().requests)     -- not one request, not even a lookup
    assert.are.same({ 0, 0, 10, 0, 0 }, { s2.sent, s2.replayed, s2.skipped, s2.failed,
                                          s2.requests })
    assert.are.equal(10, progress)
    for i = 1, 10 do
      assert.is_true(r2[i].skipped)
      assert.are.equal(r1[i].message.id, r2[i].message.id)
      assert.are.equal(recipient(i), r2[i].message.to)
      assert.are.equal(r1[i].idempotency_key, r2[i].idempotency_key)
    end
    -- the journal remembers the batch id: the keys are the same without passing it
    assert.are.same(batch.keys("again", items), { r2[1].idempotency_key, r2[2].idempotency_key,
      r2[3].idempotency_key, r2[4].idempotency_key, r2[5].idempotency_key,
      r2[6].idempotency_key, r2[7].idempotency_key, r2[8].idempotency_key,
      r2[9].idempotency_key, r2[10].idempotency_key })
    -- an edited list: one removed, two added, the rest reordered
    local edited = { items[10], items[3], make_items(1, 100)[1], items[7], items[2],
                     items[9], items[4], items[5], items[6], make_items(1, 200)[1] }
    local r3, s3 = c:send_batch(edited, { journal = path, rate_per_minute = false })
    assert.are.same({ 2, 0, 8 }, { s3.sent, s3.replayed, s3.skipped })
    assert.are.equal(r1[10].message.id, r3[1].message.id)
    assert.are.equal(r1[3].message.id, r3[2].message.id)
    assert.are.equal(recipient(101), r3[3].message.to)
    assert.are.equal(12, sb:stats().messagesCreated)
    c:close()
  end)

  it("makes up a batch id when given none, and keeps it in the journal", function()
    local path = dir .. "/anon.journal"
    local c = F.client(sb)
    local items = make_items(3)
    local r1 = c:send_batch(items, { journal = path, rate_per_minute = false })
    local st = assert(journal.read(path))
    assert.is_truthy(st.batch_id:find("^j%-%x+$"))
    assert.are.equal(batch.keys(st.batch_id, items)[2], r1[2].idempotency_key)
    local _, s2 = c:send_batch(items, { journal = path, rate_per_minute = false })
    assert.are.equal(3, s2.skipped)
    c:close()
  end)

  it("sends launched items without an outcome again with their key (replayed)", function()
    local path = dir .. "/unknown.journal"
    local c = F.client(sb)
    local items = make_items(4)
    -- a run without a journal created the messages; the journal only saw them leave
    c:send_batch(items, { batch_id = "unk", rate_per_minute = false })
    socket.sleep(0.05)
    local keys = batch.keys("unk", items)
    write(path, '{"journal":"chatmaid.batch","v":1,"batch":"unk"}\n{"launch":"' .. keys[1]
          .. '"}\n{"launch":"' .. keys[2] .. '"}\n')
    local results, s = c:send_batch(items, { journal = path, rate_per_minute = false })
    assert.are.same({ 0, 4, 0 }, { s.sent, s.replayed, s.skipped })
    assert.are.equal(4, sb:stats().messagesCreated)
    assert.is_true(results[1].replayed)
    c:close()
  end)

  it("ignores a torn last line, and refuses a file that is not a journal", function()
    local path = dir .. "/torn.journal"
    local c = F.client(sb)
    local items = make_items(3)
    c:send_batch(items, { journal = path, batch_id = "torn", rate_per_minute = false,
                          concurrency = 1 })     -- so the last line is item 3's outcome
    local text = read(path)
    -- the last line (item 3's outcome) cut in the middle, as by a kill -9 mid-write
    local last = text:sub(1, -2):match(".*\n()")
    write(path, text:sub(1, last + 20))
    local st = assert(journal.read(path))
    assert.is_true(st.torn)
    socket.sleep(0.05)      -- createdAt has millisecond steps: let them pass
    local results, s = c:send_batch(items, { journal = path, rate_per_minute = false })
    assert.are.same({ 2, 1 }, { s.skipped, s.replayed })
    assert.is_nil(results[3].skipped)
    -- the fragment stayed on a line of its own: the journal reads back whole
    st = assert(journal.read(path))
    assert.is_false(st.torn)
    local _, s2 = c:send_batch(items, { journal = path, rate_per_minute = false })
    assert.are.equal(3, s2.skipped)
    -- a header torn before its newline: the file starts again
    write(dir .. "/head.journal", '{"journal":"chatm')
    local _, s3 = c:send_batch(items, { journal = dir .. "/head.journal", batch_id = "torn",
                                        rate_per_minute = false })
    assert.are.same({ 0, 3 }, { s3.skipped, s3.replayed })
    assert.are.equal("{", read(dir .. "/head.journal"):sub(1, 1))
    assert.are.equal(3, assert(journal.read(dir .. "/head.journal")).lines - 1 - 3)
    -- a results file passed by mistake is left alone
    write(dir .. "/results.jsonl", '{"line":2,"id":"msg_1"}\n')
    local r, err = c:send_batch(items, { journal = dir .. "/results.jsonl" })
    assert.is_nil(r)
    assert.are.equal("validation", err.kind)
    assert.are.equal("journal: " .. dir .. "/results.jsonl is not a chatmaid batch journal"
                     .. " (its first line is not one)", err.message)
    assert.are.equal('{"line":2,"id":"msg_1"}\n', read(dir .. "/results.jsonl"))
    local _, err2 = c:send_batch(items, { journal = dir .. "/no/such/dir/j" })
    assert.are.equal("validation", err2.kind)
    assert.are.equal(3, sb:stats().messagesCreated)
    c:close()
  end)

  it("a journal entry for the key that is another message is a conflict, with no request",
     function()
    local path = dir .. "/conflict.journal"
    local c = F.client(sb)
    local items = make_items(2)
    items[1].idempotency_key = "mine-1"
    c:send_batch(items, { journal = path, batch_id = "cj", rate_per_minute = false })
    local before = sb:stats().requests
    items[1].to = recipient(50)      -- same own key, another recipient
    local results, s = c:send_batch(items, { journal = path, rate_per_minute = false })
    assert.are.equal(before, sb:stats().requests)
    assert.are.equal("idempotency_conflict", results[1].err.kind)
    assert.are.equal(recipient(1), results[1].err.message_returned.to)
    assert.are.same({ 1, 1 }, { s.failed, s.skipped })
    c:close()
  end)

  it("stops on should_stop during a rate-limit wait within a second; the journal holds "
     .. "what was sent", function()
    local path = dir .. "/stop.journal"
    local c = F.client(sb, { sleep = core.sleep })
    local t_stop
    local res, err = c:send_batch(make_items(5), {
      journal = path, batch_id = "stop", rate_per_minute = 2,
      should_stop = function()
        if sends(sb) >= 2 and not t_stop then t_stop = core.monotime() + 0.3 end
        return t_stop and core.monotime() >= t_stop and "test" or nil
      end })
    local took = core.monotime() - t_stop
    assert.is_nil(res)   -- a runtime stop returns nil, err
    assert.are.equal("interrupted", err.kind)
    assert.are.equal("stop", err.reason)
    assert.are.equal("test", err.cause)
    assert.is_true(took < 1, "stopped " .. took .. " s after the request")
    assert.are.same({ 2, 3 }, { err.summary.sent, err.summary.interrupted })
    assert.are.equal("interrupted", err.results[3].err.kind)
    assert.are.equal(batch.keys("stop", make_items(5))[3], err.results[3].idempotency_key)
    local st = assert(journal.read(path))
    local confirmed = 0
    for _ in pairs(st.confirmed) do confirmed = confirmed + 1 end
    assert.are.equal(2, confirmed)
    -- and the rest goes out on the next run
    local _, s = c:send_batch(make_items(5), { journal = path, rate_per_minute = false })
    assert.are.same({ 3, 2 }, { s.sent, s.skipped })
    c:close()
  end)

  -- A journal confirms rows for the API its run talked to. Tried against the sandbox and
  -- then pointed at another API (here the same sandbox under another host name), or used
  -- with a live key after a test one, it must not skip rows that were never sent there.
  it("a journal written at another API or with a key of another mode is refused: reason"
     .. " destination, nothing sent; a new journal sends there", function()
    local path = dir .. "/dest.journal"
    local items = make_items(3, 700)
    local c = F.client(sb)
    local _, s1 = c:send_batch(items, { journal = path, rate_per_minute = false })
    assert.are.same({ 3, 0 }, { s1.sent, s1.skipped })
    local id = journal.read(path).batch_id
    local others = {
      { F.client(sb, { base_url = sb.url:gsub("127%.0%.0%.1", "localhost") }),
        "a test key at localhost" },
      { F.client(sb, { api_key = F.LIVE_KEY }), "a live key at 127.0.0.1" },
    }
    for _, o in ipairs(others) do
      local before = sends(sb)
      local r, err = o[1]:send_batch(items, { journal = path, rate_per_minute = false })
      assert.is_nil(r)
      assert.are.same({ "validation", "destination" }, { err.kind, err.reason })
      assert.are.equal("journal: " .. path .. " records a run of batch " .. id .. " that sent"
        .. " with a test key at 127.0.0.1; this client sends with " .. o[2] .. ", where the"
        .. " rows it confirms were never sent. Nothing was sent: give this batch a new journal"
        .. " file (keep that one for the other destination)", err.message)
      assert.are.equal(before, sends(sb))
      assert.is_nil(tostring(err):find(F.LIVE_KEY, 1, true))
      -- the journal is not touched (no header for a run that did not happen), and free
      assert.are.equal(1, journal.read(path).runs)
      local j = assert(journal.acquire(path))
      j:close()
      local r2, s2 = o[1]:send_batch(items, { journal = path .. "." .. o[2]:match("(%a+) key"),
                                              rate_per_minute = false })
      assert.is_table(r2)
      assert.are.same({ 3, 0, 0 }, { s2.sent, s2.skipped, s2.failed })
      o[1]:close()
    end
    -- at the API it was written for, it still resumes: nothing asked again
    local before = sends(sb)
    local _, s3 = c:send_batch(items, { journal = path, rate_per_minute = false })
    assert.are.same({ 0, 3 }, { s3.sent, s3.skipped })
    assert.are.equal(before, sends(sb))
    c:close()
  end)

  -- The sender enters the key as written: "ph_primary" one run and "+15551230001" (the same
  -- phone) the next made other keys, and a journal that had confirmed the rows did not see
  -- them: every row was sent twice. The journal now matches by message within the batch.
  it("rows re-run with the sender written another way are answered from the journal, not"
     .. " sent again; a row repeated on purpose and another batch still send", function()
    local path = dir .. "/spelt.journal"
    local function list(from, n)
      local t = {}
      for i = 1, n do t[i] = { from = from, to = recipient(800 + i), content = "spelt " .. i } end
      return t
    end
    local c = F.client(sb)
    local r1, s1 = c:send_batch(list(F.PHONE, 3), { journal = path, batch_id = "spelt",
                                                    rate_per_minute = false })
    assert.are.same({ 3, 0 }, { s1.sent, s1.skipped })
    local before = sends(sb)
    local r2, s2 = c:send_batch(list(F.PHONE_E164, 3), { journal = path, batch_id = "spelt",
                                                         rate_per_minute = false })
    assert.are.equal(before, sends(sb))                 -- not one request
    assert.are.same({ 0, 0, 3, 0, 3 }, { s2.sent, s2.replayed, s2.skipped, s2.failed,
                                         s2.already_sent })
    for i = 1, 3 do
      assert.is_true(r2[i].skipped and r2[i].other_key, "row " .. i)
      assert.are.equal(r1[i].idempotency_key, r2[i].idempotency_key)   -- the key it lives under
      assert.are.equal(r1[i].message.id, r2[i].message.id)
    end
    -- the same row twice now (on purpose), the sender spelt the new way: one was sent, the
    -- second copy is new and is sent; the third row's text changed: sent
    local again = list(F.PHONE_E164, 3)
    again[3].content = "spelt 3, fixed"
    table.insert(again, 2, { from = F.PHONE_E164, to = recipient(801), content = "spelt 1" })
    local r3, s3 = c:send_batch(again, { journal = path, batch_id = "spelt",
                                         rate_per_minute = false })
    assert.are.same({ 2, 2 }, { s3.sent, s3.skipped })
    assert.is_true(r3[1].other_key)
    assert.is_nil(r3[2].skipped)
    assert.are_not.equal(r1[1].message.id, r3[2].message.id)
    assert.is_true(r3[3].other_key)
    -- another batch in the same journal sending the same messages is its own: sent
    local _, s4 = c:send_batch(list(F.PHONE, 2), { journal = path, batch_id = "spelt-2",
                                                   rate_per_minute = false })
    assert.are.same({ 2, 0 }, { s4.sent, s4.skipped })
    -- an item with its own idempotency_key is the caller's: never matched by its message
    local own = list(F.PHONE_E164, 1)
    own[1].idempotency_key = "spelt-own-1"
    local _, s5 = c:send_batch(own, { journal = path, batch_id = "spelt",
                                      rate_per_minute = false })
    assert.are.same({ 1, 0 }, { s5.sent, s5.skipped })
    c:close()
  end)

  it("a hook raising during a 429 stops at once instead of waiting retry_after", function()
    local c = F.client(sb, { sleep = core.sleep })
    assert(sb:fault{ path = "/v1/messages/send", method = "POST", type = "rate_limit",
                     retry_after = 30, count = 1 })
    c.on_response = function(r) if r.status == 429 then error({ code = 429 }) end end
    local t0 = core.monotime()
    local res, err = c:send_batch(make_items(6), { concurrency = 2,
                                                            rate_per_minute = false })
    local took = core.monotime() - t0
    assert.is_nil(res)   -- a runtime stop returns nil, err
    assert.are.equal("callback", err.reason)
    assert.are.same({ code = 429 }, err.cause)
    assert.is_true(took < 1, "took " .. took)
    assert.are.equal(6, err.summary.sent + err.summary.failed + err.summary.interrupted)
    c:close()
  end)

  it("should_stop during a retry sleep stops within a second", function()
    local c = F.client(sb, { sleep = core.sleep, max_retries = 5 })
    assert(sb:fault{ path = "/v1/messages/send", method = "POST", type = "json_503",
                     count = 20 })
    local t0 = core.monotime()
    local res, err = c:send_batch(make_items(1), { rate_per_minute = false,
      should_stop = function() return core.monotime() - t0 > 1.2 and "late" or nil end })
    local took = core.monotime() - t0
    assert.is_nil(res)   -- a runtime stop returns nil, err
    assert.are.equal("late", err.cause)
    assert.is_true(took < 2.2, "took " .. took)
    local r = err.results[1]
    -- stopped in a retry sleep: interrupted, with what the last attempt got; on a slow run
    -- (ASan) the stop can land while an attempt is in flight: that attempt finishes and is
    -- the item's outcome
    if r.err.kind == "interrupted" then
      assert.are.equal("server", r.err.last.kind)
    else
      assert.are.equal("server", r.err.kind)
    end
    c:close()
  end)

  -- (b) of issue 15: a process killed with kill -9 at 20 random moments, resumed each time.
  it("20 kill -9 at random moments, each resumed: every item exactly once", function()
    local lua = os.getenv("CHATMAID_LUA") or "lua5.4"
    local n = 100
    local path = dir .. "/kill.journal"
    local script = dir .. "/kill.lua"
    write(script, ([[
package.path = %q
package.cpath = %q
local F = require "spec.support.fixtures"
local c = assert(require("chatmaid").new{ api_key = F.TEST_KEY, base_url = %q, timeout = 5 })
local items = {}
for i = 1, %d do
  items[i] = { from = F.PHONE, to = "+1556" .. string.format("%%07d", i),
               content = "journal message " .. i }
end
local _, s = c:send_batch(items, { batch_id = "kill-20", journal = %q, concurrency = 2,
                                   rate_per_minute = false })
io.write("finished ", s.sent, " ", s.replayed, " ", s.skipped, "\n")
]]):format(package.path, package.cpath, sb.url, n, path))
    -- every send answered 80 ms late (created first), two at a time: a run gets through a
    -- few items before its kill, which lands before, during or after answers, and while
    -- the journal is written
    assert(sb:fault{ path = "/v1/messages/send", method = "POST", type = "delay",
                     seconds = 0.08, count = 100000 })
    math.randomseed(os.time())
    local finished, kills, mid = nil, 0, 0
    local created, sent_before, created_at_20 = 0, 0, nil
    for round = 1, 21 do
      local child = assert(io.popen("echo $$; exec " .. lua .. " " .. script, "r"))
      local pid = assert(tonumber(child:read("*l")))
      if round <= 20 then
        -- a random moment once this run is sending (its start-up time varies with load)
        local before, deadline = sends(sb), socket.gettime() + 5
        while sends(sb) == before and socket.gettime() < deadline do socket.sleep(0.005) end
        socket.sleep(math.random() * 0.25)
        os.execute("kill -9 " .. pid .. " 2>/dev/null")
        kills = kills + 1
      end
      local rest = child:read("*a")
      child:close()
      if rest:find("^finished") then finished = rest end
      if round == 20 then created_at_20 = sb:stats().messagesCreated end
      -- killed while sending: this run made requests, and the batch was not complete
      local now_sends, now_created = sends(sb), sb:stats().messagesCreated
      if round <= 20 and now_sends > sent_before and created < n then mid = mid + 1 end
      created, sent_before = now_created, now_sends
    end
    assert.are.equal(20, kills)
    -- the kills landed while the runs were sending (new messages, or the replays of the
    -- ones left unknown by the previous kill), not before or after
    assert.is_true(mid >= 18, mid .. " kills in the middle of sending")
    assert.is_true(created_at_20 > 0 and created_at_20 < n, "created " .. created_at_20)
    assert.is_truthy(finished, "the last run finished")
    -- counted at the sandbox: every recipient once, nothing else
    local c = F.client(sb)
    local by_to, total = census(c)
    assert.are.equal(n, total)
    for i = 1, n do assert.are.equal(1, by_to[recipient(i)], recipient(i)) end
    assert.are.equal(n, sb:stats().messagesCreated)
    -- the final journal accounts for each item
    local st = assert(journal.read(path))
    local keys = batch.keys("kill-20", make_items(n))
    for i = 1, n do assert.are.equal(recipient(i), st.confirmed[keys[i]].to) end
    c:close()
  end)
end)
