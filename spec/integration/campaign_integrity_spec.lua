-- SPDX-License-Identifier: MIT
-- Issue 22 against the real sandbox: one writer per journal (two real processes), a private
-- journal (0600, no symlinks), and cancel / close / timeouts saying what the server may have
-- (err.idempotency_key, err.maybe_sent), with the safe way to finish such a send.
local F = require "spec.support.fixtures"
local core = require "chatmaid.core"
local socket = require "socket"
local journal = require "chatmaid.journal"

local function params(to, key)
  return { from = F.PHONE, to = to, content = "integrity " .. to, idempotency_key = key }
end

local function created(sb) return sb:stats().messagesCreated end

local function until_created(sb, n)
  local deadline = socket.gettime() + 10
  while created(sb) < n and socket.gettime() < deadline do socket.sleep(0.01) end
  return created(sb)
end

local files = require "spec.support.files"
local mode = files.mode

describe("campaign integrity #integration", function()
  local sb = F.block_sandbox{ rate_limit = false }
  local dir
  local get_dir = files.block_dir()
  before_each(function() dir = get_dir() end)

  describe("one writer per journal", function()
    it("a second process on the journal gets nil, err naming the first's pid; nothing is"
       .. " sent twice", function()
      local path = dir .. "/two.journal"
      local script = files.client_script(dir .. "/two.lua", sb.url, ([[
local items = {}
for i = 1, 6 do items[i] = { from = F.PHONE, to = "+1559000000" .. i, content = "two " .. i } end
local r, s = c:send_batch(items, { journal = %q, concurrency = 1, rate_per_minute = false })
io.write(r and ("sent " .. s.sent .. " skipped " .. s.skipped) or tostring(s), "\n")
]]):format(path))
      assert(sb:fault{ path = "/v1/messages/send", method = "POST", type = "delay",
                       seconds = 0.15, count = 100 })
      local lua = os.getenv("CHATMAID_LUA") or "lua5.4"
      local child = assert(io.popen("echo $$; exec " .. lua .. " " .. script))
      local pid = assert(tonumber(child:read("*l")))
      assert.is_true(until_created(sb, 1) >= 1)
      -- this process, on the same journal: refused before anything is read or sent
      local c = F.client(sb)
      local items = {}
      for i = 1, 6 do items[i] = params("+1559000000" .. i) items[i].idempotency_key = nil end
      for i = 1, 6 do items[i].content = "two " .. i end
      local r, err = c:send_batch(items, { journal = path, rate_per_minute = false })
      assert.is_nil(r)
      assert.are.equal("validation", err.kind)
      assert.are.equal("busy", err.reason)
      assert.are.equal("journal: " .. path .. " is in use by another process (pid " .. pid
                       .. ")", err.message)
      local st, problem, kind = journal.acquire(path)
      assert.is_nil(st)
      assert.are.equal("busy", kind)
      assert.truthy(problem:find("(pid " .. pid .. ")", 1, true))
      assert.are.equal("sent 6 skipped 0\n", child:read("*a"))
      child:close()
      -- the lock went with the process: this run continues the journal and sends nothing
      local r2, s2 = c:send_batch(items, { journal = path, rate_per_minute = false })
      assert.is_truthy(r2)
      assert.are.same({ 0, 6 }, { s2.sent, s2.skipped })
      assert.are.equal(6, s2.already_sent)
      assert.are.equal(6, created(sb))
      c:close()
    end)

    it("a second batch in the same process is refused too", function()
      local path = dir .. "/same.journal"
      local held = assert(journal.acquire(path))
      local c = F.client(sb)
      local r, err = c:send_batch({ params("+15590000100") }, { journal = path })
      assert.is_nil(r)
      assert.are.equal("busy", err.reason)
      assert.are.equal(0, created(sb))
      -- a journal acquired by the caller is the batch's journal (the caller closes it)
      local r2, s2 = c:send_batch({ params("+15590000100") }, { journal = held })
      assert.is_truthy(r2)
      assert.are.equal(1, s2.sent)
      assert.is_truthy(held.lock)          -- still held
      -- the same journal for the next batch knows what the first one confirmed
      local requests = sb:stats().sendRequests
      local r3, s3 = c:send_batch({ params("+15590000100") }, { journal = held })
      assert.is_truthy(r3, tostring(s3))
      assert.are.same({ 0, 0, 1 }, { s3.sent, s3.replayed, s3.skipped })
      assert.are.equal(requests, sb:stats().sendRequests)   -- nothing asked again
      assert.is_true(held:close())
      local st = assert(journal.read(path))
      assert.is_truthy(st.confirmed[r2[1].idempotency_key])
      c:close()
    end)
  end)

  describe("a private journal", function()
    it("is created 0600; a symbolic link or a directory is refused with a clear error",
       function()
      local c = F.client(sb)
      local path = dir .. "/private.journal"
      assert(c:send_batch({ params("+15590000200") }, { journal = path }))
      assert.are.equal("600", mode(path))
      os.execute("ln -s " .. path .. " " .. dir .. "/link.journal")
      local r, err = c:send_batch({ params("+15590000200") }, { journal = dir .. "/link.journal" })
      assert.is_nil(r)
      assert.are.equal("validation", err.kind)
      assert.are.equal("symlink", err.reason)
      assert.are.equal("journal: " .. dir .. "/link.journal is a symbolic link: give the path"
                       .. " of the file itself", err.message)
      local _, err2 = c:send_batch({ params("+15590000200") }, { journal = dir })
      assert.are.equal("not_regular", err2.reason)
      assert.are.equal("journal: " .. dir .. " is not a regular file", err2.message)
      assert.are.equal(1, created(sb))
      c:close()
    end)
  end)

  describe("cancel, close and timeouts say what the server may have", function()
    it("cancel of a task whose send reached the server: maybe_sent, the key; re-sending"
       .. " with the key creates nothing", function()
      local c = F.client(sb, { sleep = core.sleep })
      assert(sb:fault{ path = "/v1/messages/send", method = "POST", type = "delay",
                       seconds = 1, count = 1 })
      local t = c:spawn(c.send, c, params("+15590000300", "cancel-key-1"))
      while created(sb) < 1 do c:step(0.01) end
      assert.is_true(t:cancel())
      local msg, err = t:result()
      assert.is_nil(msg)
      assert.are.equal("cancelled", err.kind)
      assert.are.equal("cancel-key-1", err.idempotency_key)
      assert.is_true(err.maybe_sent)
      local again = assert(c:send(params("+15590000300", err.idempotency_key)))
      assert.are.equal("+15590000300", again.to)
      assert.are.equal(1, created(sb))
      c:close()
    end)

    it("cancel before the request left: maybe_sent false, nothing created", function()
      local c = F.client(sb)
      local t = c:spawn(c.send, c, params("+15590000301", "cancel-key-2"))
      t:cancel()
      local _, err = t:result()
      assert.are.equal("cancelled", err.kind)
      assert.is_false(err.maybe_sent)
      assert.is_nil(err.idempotency_key)
      c:step(0)
      assert.are.equal(0, created(sb))
      c:close()
    end)

    it("client:close() during sends: every task says maybe_sent with its key", function()
      local c = F.client(sb, { sleep = core.sleep })
      assert(sb:fault{ path = "/v1/messages/send", method = "POST", type = "delay",
                       seconds = 1, count = 3 })
      local tasks = {}
      for i = 1, 3 do
        tasks[i] = c:spawn(c.send, c, params("+1559000040" .. i, "close-key-" .. i))
      end
      while created(sb) < 3 do c:step(0.01) end
      c:close()
      local c2 = F.client(sb)
      for i = 1, 3 do
        local _, err = tasks[i]:result()
        assert.are.equal("cancelled", err.kind)
        assert.are.equal("client closed", err.message)
        assert.are.equal("close-key-" .. i, err.idempotency_key)
        assert.is_true(err.maybe_sent)
        assert(c2:send(params("+1559000040" .. i, err.idempotency_key)))
      end
      assert.are.equal(3, created(sb))
      c2:close()
    end)

    it("a timeout after the request left is maybe_sent; a refused connection is not",
       function()
      local c = F.client(sb, { timeout = 0.3, max_retries = 0 })
      assert(sb:fault{ path = "/v1/messages/send", method = "POST", type = "delay",
                       seconds = 1, count = 1 })
      local _, err = c:send(params("+15590000500", "timeout-key"))
      assert.are.equal("timeout", err.kind)
      assert.are.equal("timeout-key", err.idempotency_key)
      assert.is_true(err.maybe_sent)
      c:close()
      local s = socket.bind("127.0.0.1", 0)
      local _, port = s:getsockname()
      s:close()
      local dead = require("chatmaid").new{ api_key = F.TEST_KEY, max_retries = 0,
                                            base_url = "http://127.0.0.1:" .. port }
      local _, err2 = dead:send(params("+15590000501", "refused-key"))
      assert.are.equal("transport", err2.kind)
      assert.are.equal("connect", err2.reason)
      assert.are.equal("refused-key", err2.idempotency_key)
      assert.is_false(err2.maybe_sent)
      dead:close()
    end)

    it("a batch closed with a send in flight: that item is interrupted and maybe_sent, the"
       .. " unstarted ones are not; the same keys finish them", function()
      local c = F.client(sb, { sleep = core.sleep })
      assert(sb:fault{ path = "/v1/messages/send", method = "POST", type = "delay",
                       seconds = 1, count = 1 })      -- item 1 slow, item 2 quick
      local items = {}
      for i = 1, 4 do items[i] = params("+1559000060" .. i) items[i].idempotency_key = nil end
      local r, err = c:send_batch(items, { concurrency = 2, rate_per_minute = false,
        batch_id = "inflight", on_progress = function(done) if done == 1 then c:close() end end })
      assert.is_nil(r)
      assert.are.equal("interrupted", err.kind)
      assert.are.equal("closed", err.reason)
      local res = err.results
      -- the first request to reach the sandbox is the slow one: item 1 or item 2
      local quick, slow = res[2], res[1]
      if res[1].message then quick, slow = res[1], res[2] end
      assert.is_truthy(quick.message)
      assert.are.equal("interrupted", slow.err.kind)
      assert.is_true(slow.err.maybe_sent)
      for i = 3, 4 do assert.is_false(res[i].err.maybe_sent) end
      assert.are.equal(2, created(sb))
      local c2 = F.client(sb)
      local r2, s2 = c2:send_batch(items, { batch_id = "inflight", rate_per_minute = false })
      assert.is_truthy(r2)
      assert.are.equal(4, s2.sent + s2.replayed)
      assert.are.equal(4, created(sb))         -- item 1 was not sent twice
      c2:close()
    end)
  end)
end)
