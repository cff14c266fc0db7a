-- SPDX-License-Identifier: MIT
-- send_batch's parts (chatmaid.batch.plan, .run, .result) against a fake transport that
-- records what would be sent and answers like the API. Only the pipeline's own logic is
-- checked here; the real sandbox specs (spec/integration/batch_*) prove the behaviour.
local chatmaid = require "chatmaid"
local cjson = require "cjson"
local plan = require "chatmaid.batch.plan"
local run = require "chatmaid.batch.run"
local result = require "chatmaid.batch.result"
local journal = require "chatmaid.journal"
local idempotency = require "chatmaid.idempotency"
local response = require("chatmaid.transport").response

-- fake(answer) -> client, sent (the decoded bodies, in order). answer(body) -> status, data
local function fake(answer)
  local sent, now = {}, 1000
  local tr = { request = function(_, req)
    local body = cjson.decode(req.body)
    sent[#sent + 1] = body
    local status, data = 200, { id = "msg_" .. #sent, to = body.to, content = body.content,
                                phoneNumberId = body.fromPhoneId,
                                idempotencyKey = body.idempotencyKey,
                                createdAt = "2999-01-01T00:00:00.000Z" }
    local st, d = nil, nil
    if answer then st, d = answer(body, #sent) end
    if st then status, data = st, d end
    return response(status, cjson.encode(status < 300 and { success = true, data = data }
                                          or { success = false, message = "no" }), "")
  end }
  local c = assert(chatmaid.new{ api_key = "sk_test_unit_0001", base_url = "http://127.0.0.1:1",
                                 transport = tr, max_retries = 0,
                                 now = function() return now end,       -- a clock that a
                                 sleep = function(d) now = now + d end })  -- sleep moves
  return c, sent
end

local function items(n)
  local t = {}
  for i = 1, n do t[i] = { from = "ph_primary", to = "+1555000000" .. i, content = "c" .. i } end
  return t
end

local function tmp()
  local p = os.tmpname()
  os.remove(p)
  return p
end

describe("send_batch pipeline", function()
  describe("plan", function()
    it("raises for programmer errors, at the caller", function()
      assert.has_error(function() plan.options({ concurrency = 0 }) end,
                       "chatmaid: send_batch: concurrency must be an integer 1..64")
      assert.has_error(function() plan.options({ journal = {} }) end,
                       "chatmaid: send_batch: journal must be a path or a journal from "
                       .. "chatmaid.journal.acquire")
      for _, bad in ipairs{ "", "a\0b" } do
        assert.has_error(function() plan.options({ journal = bad }) end,
                         "chatmaid: send_batch: journal must be a file path: not empty, without"
                         .. " NUL bytes")
      end
      assert.has_error(function() plan.items({ 1 }) end,
                       "chatmaid: send_batch: items[1] must be a table of send parameters"
                       .. " (got number)")
      assert.are.equal(3, plan.items(items(3)))
    end)

    it("journal(): none, a path (batch id recorded), a busy one", function()
      assert.are.same({ false, "b1" }, { plan.journal({ batch_id = "b1" }) })
      local path = tmp()
      local j, id = plan.journal({ journal = path })
      assert.is_truthy(id:find("^j%-%x+$"))
      assert.are.equal(id, j.batch_id)
      local none, err = plan.journal({ journal = path })
      assert.is_nil(none)
      assert.are.equal("busy", err.reason)
      assert.are.equal("validation", err.kind)
      j:close()
      local j2, id2 = plan.journal({ journal = path })
      assert.are.equal(id, id2)                 -- the journal's id, from its header
      j2:close()
      os.remove(path)
    end)

    it("sort(): bad values fail alone, journal-confirmed items are skipped or conflicts",
       function()
      local c = fake()
      local list = items(4)
      list[2].to = "12"
      local keys = idempotency.keys("b", list)
      local confirmed = {
        [keys[3]] = { id = "msg_old", to = list[3].to, content = list[3].content },
        [keys[4]] = { id = "msg_other", to = "+15559999999", content = list[4].content },
      }
      local jobs, early, senders = plan.sort(c, list, 4, keys, confirmed)
      assert.are.equal(1, #jobs)
      assert.are.same({ 1, keys[1] }, { jobs[1].i, jobs[1].key })
      assert.are.same({ ph_primary = false }, senders)
      assert.are.equal(3, #early)
      assert.are.same({ 2, "validation" }, { early[1][1], early[1][2].err.kind })
      assert.are.same({ 3, true, "msg_old" }, { early[2][1], early[2][2].skipped,
                                                early[2][2].message.id })
      assert.are.same({ 4, "idempotency_conflict" }, { early[3][1], early[3][2].err.kind })
      c:close()
    end)
  end)

  describe("result", function()
    it("counts outcomes, and a stop becomes nil, err with the unsent items interrupted",
       function()
      local stop = run.stopper({}, nil)
      local progress = {}
      local acc = result.new(3, function(done, n) progress[#progress + 1] = done .. "/" .. n end,
                             stop)
      acc:early({ { 2, { message = { id = "m2" }, skipped = true } } })
      acc:report(1, { message = { id = "m1" }, replayed = true })
      local r, s = acc:finish({}, 1.5)
      assert.are.equal(r, acc.results)
      assert.are.same({ 1, 1, 0, 2, 1.5 }, { s.skipped, s.replayed, s.sent, s.already_sent,
                                             s.elapsed })
      assert.are.same({ "1/3", "2/3" }, progress)
      stop.stop("stop", "SIGINT")
      stop.stop("journal", "later causes are ignored")
      local none, err = acc:finish({ { i = 3, key = "k3", maybe_sent = true } }, 2)
      assert.is_nil(none)
      assert.are.same({ "interrupted", "stop", "SIGINT" }, { err.kind, err.reason, err.cause })
      assert.are.equal("stop requested (SIGINT); 1 of 3 items not sent (err.results,"
                       .. " err.summary)", err.message)
      local e3 = err.results[3].err
      assert.are.same({ "interrupted", "k3", true }, { e3.kind, e3.idempotency_key,
                                                       e3.maybe_sent })
      assert.are.equal(1, err.summary.interrupted)
    end)

    it("a raising on_progress stops the batch instead of raising", function()
      local stop = run.stopper({}, nil)
      local acc = result.new(1, function() error("boom", 0) end, stop)
      acc:report(1, { message = { id = "m" } })
      assert.are.same({ "callback", "boom" }, { stop.reason, stop.cause })
    end)
  end)

  describe("run, through send_batch", function()
    it("sends each item once, with its derived key, in order with concurrency 1", function()
      local c, sent = fake()
      local list = items(3)
      local r, s = c:send_batch(list, { batch_id = "unit", concurrency = 1,
                                        rate_per_minute = false })
      assert.are.equal(3, #sent)
      local keys = idempotency.keys("unit", list)
      for i = 1, 3 do
        assert.are.same({ list[i].to, keys[i], "ph_primary" }, { sent[i].to,
                        sent[i].idempotencyKey, sent[i].fromPhoneId })
        assert.are.equal("msg_" .. i, r[i].message.id)
      end
      assert.are.same({ 3, 3, 0 }, { s.sent, s.requests, s.already_sent })
      c:close()
    end)

    it("should_stop: nil, err (reason stop) and nothing more is sent", function()
      local c, sent = fake()
      -- 2 per minute: the third item waits for the window, where should_stop is polled
      local r, err = c:send_batch(items(5), { batch_id = "unit", concurrency = 1,
        rate_per_minute = 2, should_stop = function() return #sent >= 2 and "enough" end })
      assert.is_nil(r)
      assert.are.same({ "interrupted", "stop", "enough" }, { err.kind, err.reason, err.cause })
      assert.are.equal(2, #sent)
      assert.are.same({ 2, 3 }, { err.summary.sent, err.summary.interrupted })
      c:close()
    end)

    it("a journal that cannot be written: nil, err (reason journal), not a raise", function()
      local c, sent = fake()
      local path = tmp()
      local j = assert(journal.acquire(path))
      local lock = j.lock
      local fails = { close = function() return lock:close() end,
                      append = function() return nil, "io", "No space left on device" end }
      local r, err = c:send_batch(items(4), { batch_id = "unit", concurrency = 1,
        rate_per_minute = false, journal = j, on_progress = function()
          j.lock = fails                         -- the disk fills after the first outcome
        end })
      assert.is_nil(r)
      assert.are.same({ "interrupted", "journal" }, { err.kind, err.reason })
      assert.is_truthy(tostring(err.cause):find("No space left", 1, true))
      assert.is_true(#sent < 4)
      j:close()
      os.remove(path)
      c:close()
    end)

    it("a failed item is reported with its key and maybe_sent; a programmer error raises",
       function()
      local c = fake(function(_, n) if n == 2 then return 503 end end)
      local r, s = c:send_batch(items(2), { batch_id = "unit", rate_per_minute = false,
                                            concurrency = 1 })
      assert.are.equal("server", r[2].err.kind)
      assert.is_true(r[2].err.maybe_sent)
      assert.are.equal(idempotency.keys("unit", items(2))[2], r[2].idempotency_key)
      assert.are.same({ 1, 1 }, { s.sent, s.failed })
      c.on_request = function() error("a bug in a hook is a stop, not a crash", 0) end
      local none, err = c:send_batch(items(1), { rate_per_minute = false })
      assert.is_nil(none)
      assert.are.equal("callback", err.reason)
      assert.has_error(function() c:send_batch(items(1), { concurency = 2 }) end)
      c:close()
    end)
  end)
end)
