-- SPDX-License-Identifier: MIT
-- chatmaid batch as a child process: results per line, bad rows, exit codes, re-runs that
-- send nothing twice (also after kill -9), progress on a terminal and on a pipe.
local cjson = require "cjson"
local socket = require "socket"
local R = require "spec.cli.run"
local F = require "spec.support.fixtures"

local json_lines = R.json_lines

local function csv_of(n, first)
  local rows = { "to,content" }
  for i = 1, n do
    rows[#rows + 1] = string.format("+1555%07d,hello %d", (first or 2000000) + i, i)
  end
  return table.concat(rows, "\n") .. "\n"
end

describe("chatmaid batch", function()
  local sb = F.block_sandbox({ rate_limit = false }, { reset = false })
  local env, dir

  setup(function()
    env = R.env(sb)
    dir = os.tmpname()
    os.remove(dir)
    assert(os.execute("mkdir -p " .. R.quote(dir)))
  end)

  teardown(function()
    if dir then os.execute("rm -rf " .. R.quote(dir)) end
  end)

  local function created() return sb:stats().messagesCreated end

  it("reports bad rows with their line numbers and sends the rest", function()
    local file = R.write(dir .. "/mixed.csv", table.concat({
      "to,content,media_url,idempotency_key",
      '+15557000001,"Hello, ""friend""",,',
      "123,bad number,,",
      '+15557000002,"two\nlines",https://example.com/a.png https://example.com/b.png,mine-1',
      '+15557000003,x"y,,',
      "+15557000004,short",
      "+15557000005,last,,",
    }, "\n") .. "\n")
    local before = created()
    local out, err, code = R.run({ "batch", file, "--from", "ph_primary", "--batch-id", "t1" },
                                 { env = env })
    assert.are.equal(1, code)
    local res = json_lines(out)
    assert.are.equal(6, #res)
    assert.are.same({ 2, 3, 4, 6, 7, 8 },
                    { res[1].line, res[2].line, res[3].line, res[4].line, res[5].line,
                      res[6].line })
    assert.are.equal("+15557000001", res[1].to)
    assert.are.equal("sent", res[1].status)
    assert.are.equal("t1:", res[1].idempotency_key:sub(1, 3))
    assert.are.equal(64, #res[1].idempotency_key)
    assert.are.equal("validation", res[2].error.kind)
    assert.are.equal("123", res[2].to)
    assert.are.equal("to must be in E.164 format", res[2].error.message:sub(1, 26))
    assert.are.equal("mine-1", res[3].idempotency_key)
    assert.are.equal("validation", res[4].error.kind)
    assert.are.equal("malformed CSV: quote inside an unquoted field",
                     res[4].error.message:sub(1, 45))
    assert.are.same({ kind = "validation",
                      message = "expected 4 fields (as in the header), got 2" }, res[5].error)
    assert.are.equal("+15557000004", res[5].to)
    assert.are.equal("t1:", res[6].idempotency_key:sub(1, 3))
    assert.are_not.equal(res[1].idempotency_key, res[6].idempotency_key)
    assert.are.equal(3, created() - before)
    local m = cjson.decode((R.run({ "message", res[3].id, "--json" }, { env = env })))
    assert.are.equal("two\nlines", m.content)
    assert.are.same({ "https://example.com/a.png", "https://example.com/b.png" }, m.mediaUrls)
    local summary = R.lines(err)
    assert.are.equal("batch t1: sent 3, replayed 0, skipped 0, failed 3 (lines 3, 6, 7), "
                     .. "6 rows in ", summary[#summary]:sub(1, 77))
  end)

  it("exits 2 naming unknown columns, and for a missing file", function()
    local file = R.write(dir .. "/cols.csv", "to,body,content,x\n+15557000001,a,b,c\n")
    local out, err, code = R.run({ "batch", file }, { env = env })
    assert.are.equal(2, code)
    assert.are.equal("", out)
    assert.are.equal("chatmaid usage: " .. file .. ": unknown columns body, x in the header"
                     .. " (allowed: to, content, media_url, idempotency_key) (see 'chatmaid"
                     .. " batch --help')\n", err)
    local _, err2, code2 = R.run({ "batch", dir .. "/none.csv" }, { env = env })
    assert.are.equal(2, code2)
    assert.are.equal("chatmaid usage: cannot read " .. dir .. "/none.csv: No such file or"
                     .. " directory (see 'chatmaid batch --help')\n", err2)
  end)

  it("writes --out and a journal, and asks nothing again when run again", function()
    local file = R.write(dir .. "/again.csv", csv_of(5, 3000000))
    local outfile = dir .. "/again.jsonl"
    local before = created()
    local out, err, code = R.run({ "batch", file, "--from", "ph_primary", "--out", outfile },
                                 { env = env })
    assert.are.equal(0, code)
    assert.are.equal("", out)
    local first = json_lines(R.read(outfile))
    assert.are.equal(5, #first)
    assert.are.equal(5, created() - before)
    local id = err:match("batch (csv%-%x+): sent 5, replayed 0, skipped 0, failed 0, 5 rows in ")
    assert.are.equal(20, #id)
    assert.are.equal(id .. ":", first[1].idempotency_key:sub(1, 21))
    assert.truthy(R.read(dir .. "/again.journal"))     -- beside the CSV, named after it
    local requests = sb:stats().requests
    local _, err2, code2 = R.run({ "batch", file, "--from", "ph_primary", "--out", outfile },
                                 { env = env })
    assert.are.equal(0, code2)
    assert.truthy(err2:find("batch " .. id .. ": continuing campaign 'again' recorded in " .. dir
                            .. "/again.journal (the run of ", 1, true))
    assert.truthy(err2:find("batch " .. id .. ": sent 0, replayed 0, skipped 5, failed 0", 1,
                            true))
    assert.are.equal(requests, sb:stats().requests)       -- the journal answered
    local second = json_lines(R.read(outfile))
    for i = 1, 5 do
      assert.are.equal(first[i].id, second[i].id)
      assert.is_true(second[i].skipped)
    end
    assert.are.equal(5, created() - before)
    -- without the journal the keys still find the messages (replayed)
    socket.sleep(0.05)
    local _, err3, code3 = R.run({ "batch", file, "--from", "ph_primary", "--out", outfile,
                                   "--no-journal" }, { env = env })
    assert.are.equal(0, code3)
    assert.truthy(err3:find("batch " .. id .. ": sent 0, replayed 5, skipped 0, failed 0", 1,
                            true))
    assert.are.equal(5, created() - before)
    -- a new batch id sends the file again on purpose
    local _, _, code4 = R.run({ "batch", file, "--from", "ph_primary", "--batch-id", "again-2",
                                "--out", outfile }, { env = env })
    assert.are.equal(0, code4)
    assert.are.equal(10, created() - before)
  end)

  it("resumes after kill -9 with exactly one message per valid row", function()
    local n = 12
    local file = R.write(dir .. "/killed.csv", csv_of(n, 4000000) .. "bad,row\n")
    local before = created()
    assert(sb:fault{ path = "/v1/messages/send", method = "POST", type = "delay",
                     seconds = 0.2, count = 6 })
    local h = io.popen("exec sh -c 'echo $$; exec " .. R.command({ "batch", file, "--from",
                       "ph_primary", "--concurrency", "1", "--out", dir .. "/killed.jsonl" },
                       env):gsub("'", "'\\''") .. " 2>/dev/null'")
    local pid = tonumber(h:read("*l"))
    local deadline = socket.gettime() + 10
    while created() - before < 3 and socket.gettime() < deadline do socket.sleep(0.02) end
    os.execute("kill -9 " .. pid)
    h:close()
    local partial = created() - before
    assert.is_true(partial >= 3 and partial < n)
    local _, err, code = R.run({ "batch", file, "--from", "ph_primary", "--concurrency", "1",
                                 "--out", dir .. "/killed.jsonl" }, { env = env })
    assert.are.equal(1, code)   -- the bad row
    local new, replayed, skipped = err:match(": sent (%d+), replayed (%d+), skipped (%d+), "
      .. "failed 1 %(line " .. (n + 2) .. "%), " .. (n + 1) .. " rows in ")
    new, replayed, skipped = tonumber(new), tonumber(replayed), tonumber(skipped)
    assert.are.equal(n, new + replayed + skipped)
    assert.are.equal(n - partial, new)
    -- the journal confirmed every row answered before the kill; one at a time, at most
    -- the row in flight was unknown, and it was sent again with its key
    assert.is_true(skipped >= partial - 1 and replayed <= 1, err)
    assert.are.equal(n, created() - before)
    local ids = {}
    for _, r in ipairs(json_lines(R.read(dir .. "/killed.jsonl"))) do
      if r.id then
        assert.is_nil(ids[r.id])
        ids[r.id] = true
      end
    end
  end)

  it("prints plain progress lines at each 10% when stderr is not a terminal", function()
    local file = R.write(dir .. "/plain.csv", csv_of(20, 5000000))
    local _, err, code = R.run({ "batch", file, "--from", "ph_primary", "--out",
                                 dir .. "/plain.jsonl" }, { env = env })
    assert.are.equal(0, code)
    local counts = {}
    for done in err:gmatch("batch: (%d+)/20 %(%d+%%%) [%d.]+/s") do
      counts[#counts + 1] = tonumber(done)
    end
    assert.are.same({ 2, 4, 6, 8, 10, 12, 14, 16, 18, 20 }, counts)
    assert.is_nil(err:find("\r", 1, true))
    assert.truthy(err:find("\nbatch csv%-%x+: sent 20, replayed 0, skipped 0, failed 0, 20 rows"
                           .. " in [%d.]+ s; 0 rows were already sent by an earlier run\n$"))
  end)

  it("draws a bar with rate and ETA when stderr is a terminal", function()
    local file = R.write(dir .. "/tty.csv", csv_of(20, 6000000))
    local out, code = R.pty({ "batch", file, "--from", "ph_primary", "--out",
                              dir .. "/tty.jsonl" }, env)
    assert.are.equal(0, code)
    assert.truthy(out:find("\r[" .. string.rep("=", 30) .. "] 20/20 (100%) ", 1, true))
    assert.truthy(out:find("^\r%[[= ]+%] %d+/20 %(%d+%%%) [%d.]+/s ETA %d+s\027%[K"))
    assert.is_nil(out:find("batch: 20/20", 1, true))
    assert.truthy(out:find("\nbatch csv%-%x+: sent 20, replayed 0, skipped 0, failed 0, 20 rows"
                           .. " in [%d.]+ s; 0 rows were already sent by an earlier run\r\n$"))
  end)
end)

-- Issue 15: edited files, Ctrl-C during a rate-limit wait.
describe("chatmaid batch: resume", function()
  local sb = F.block_sandbox({ rate_limit = false }, { reset = false })
  local env, dir, c

  setup(function()
    env = R.env(sb)
    dir = os.tmpname()
    os.remove(dir)
    assert(os.execute("mkdir -p " .. R.quote(dir)))
    c = assert(require("chatmaid").new{ api_key = R.KEY, base_url = sb.url })
  end)

  teardown(function()
    if c then c:close() end
    if dir then os.execute("rm -rf " .. R.quote(dir)) end
  end)

  local function csv(rows)
    local t = { "to,content" }
    for _, r in ipairs(rows) do t[#t + 1] = r[1] .. "," .. r[2] end
    return table.concat(t, "\n") .. "\n"
  end

  -- messages at the sandbox: count by recipient, and by id
  local function census()
    local all = assert(c:collect_messages{ max_items = 1000 })
    local by_to, by_id = {}, {}
    for _, m in ipairs(all) do
      by_to[m.to] = (by_to[m.to] or 0) + 1
      by_id[m.id] = m
    end
    return by_to, by_id
  end

  -- the edit of issue 15: the first row deleted, a row inserted, the rest reordered
  local function edit(rows, new_row)
    local t = {}
    for i = #rows, 2, -1 do t[#t + 1] = rows[i] end
    table.insert(t, 3, new_row)
    return t
  end

  local function check(rows, results, by_to, by_id, identical_to)
    assert.are.equal(#rows, #results)
    for k, r in ipairs(rows) do
      local res = results[k]
      assert.are.equal(k + 1, res.line)
      local m = by_id[res.id]
      assert.is_truthy(m, "line " .. res.line .. " has no message at the sandbox")
      assert.are.equal(r[1], m.to)           -- its own message, not another row's
      assert.are.equal(r[2], m.content)
      assert.are.equal(r[1] == identical_to and 2 or 1, by_to[r[1]], r[1])
    end
  end

  for _, mode in ipairs{ "journal", "batch-id" } do
    it("an edited file (rows deleted, inserted, reordered) re-run with the " .. mode
       .. ": one message per row, each row its own message", function()
      assert(sb:reset())
      local rows = {}
      for i = 1, 8 do rows[i] = { string.format("+1557%07d", i), "hello " .. i } end
      -- two identical rows are two messages
      rows[9] = { "+15570000099", "same" }
      rows[10] = { "+15570000099", "same" }
      local file = R.write(dir .. "/edit-" .. mode .. ".csv", csv(rows))
      local out = dir .. "/edit-" .. mode .. ".jsonl"
      local args = { "batch", file, "--from", "ph_primary", "--out", out }
      if mode == "batch-id" then args[#args + 1] = "--no-journal" end
      local _, err, code = R.run(args, { env = env })
      assert.are.equal(0, code, err)
      local id = err:match("batch (csv%-%x+): sent 10,")
      assert.is_truthy(id, err)
      local edited = edit(rows, { "+15570000077", "inserted" })
      R.write(file, csv(edited))
      if mode == "batch-id" then
        args[#args + 1] = "--batch-id"
        args[#args + 1] = id
      end
      socket.sleep(0.05)
      local _, err2, code2 = R.run(args, { env = env })
      assert.are.equal(0, code2, err2)
      local counts = mode == "journal" and "sent 1, replayed 0, skipped 9, failed 0"
                     or "sent 1, replayed 9, skipped 0, failed 0"
      assert.truthy(err2:find("batch " .. id .. ": " .. counts, 1, true), err2)
      local by_to, by_id = census()
      check(edited, json_lines(R.read(out)), by_to, by_id, "+15570000099")
      assert.are.equal(1, by_to[rows[1][1]])     -- the deleted row: sent once, by run 1
      assert.are.equal(11, sb:stats().messagesCreated)
    end)
  end

  local function spawn(args) return R.spawn(args, env, dir .. "/stderr") end

  local function until_created(n)
    local deadline = socket.gettime() + 15
    while sb:stats().messagesCreated < n and socket.gettime() < deadline do
      socket.sleep(0.02)
    end
    return sb:stats().messagesCreated
  end

  it("Ctrl-C (SIGINT) during a rate-limit wait exits 130 within a second, journal intact;"
     .. " SIGTERM exits 143; the next run finishes", function()
    assert(sb:reset())
    local rows = {}
    for i = 1, 6 do rows[i] = { string.format("+1558%07d", i), "wait " .. i } end
    local file = R.write(dir .. "/wait.csv", csv(rows))
    local out = dir .. "/wait.jsonl"
    local args = { "batch", file, "--from", "ph_primary", "--out", out, "--rate", "2",
                   "--concurrency", "1" }
    local pid, wait = spawn(args)
    assert.are.equal(2, until_created(2))
    socket.sleep(0.3)                 -- it is now waiting about 60 s for the rate window
    local t0 = socket.gettime()
    os.execute("kill -INT " .. pid)
    local code = wait()
    local waited = socket.gettime() - t0
    assert.are.equal(130, code)
    assert.is_true(waited < 1, "exited " .. waited .. " s after SIGINT")
    local err = R.read(dir .. "/stderr")
    assert.truthy(err:find("sent 2, replayed 0, skipped 0, failed 0, 6 rows in [%d.]+ s; "
      .. "interrupted %(SIGINT%): 4 rows not sent, run the same command again to continue; 0 rows"
      .. " were already sent by an earlier run\n"),
      err)
    local res = json_lines(R.read(out))
    assert.are.equal(6, #res)
    assert.is_truthy(res[1].id and res[2].id)
    for k = 3, 6 do
      assert.are.equal("interrupted", res[k].error.kind)
      assert.are.equal("not sent: the batch was interrupted (SIGINT); run the same command"
                       .. " again to continue", res[k].error.message)
    end
    local st = assert(require("chatmaid.journal").read(dir .. "/wait.journal"))
    assert.is_false(st.torn)
    assert.are.equal(res[1].id, st.confirmed[res[1].idempotency_key].id)
    assert.are.equal(res[2].id, st.confirmed[res[2].idempotency_key].id)
    -- again, stopped by SIGTERM after two more
    pid, wait = spawn(args)
    assert.are.equal(4, until_created(4))
    socket.sleep(0.3)
    t0 = socket.gettime()
    os.execute("kill -TERM " .. pid)
    code = wait()
    waited = socket.gettime() - t0
    assert.are.equal(143, code)
    assert.is_true(waited < 1, "exited " .. waited .. " s after SIGTERM")
    -- and the last run sends only the rest
    local _, err3, code3 = R.run({ "batch", file, "--from", "ph_primary", "--out", out,
                                   "--rate", "100" }, { env = env })
    assert.are.equal(0, code3, err3)
    assert.truthy(err3:find("sent 2, replayed 0, skipped 4, failed 0, 6 rows", 1, true), err3)
    assert.are.equal(6, sb:stats().messagesCreated)
    local by_to = census()
    for _, r in ipairs(rows) do assert.are.equal(1, by_to[r[1]]) end
  end)
end)
