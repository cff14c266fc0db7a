-- SPDX-License-Identifier: MIT
-- chatmaid batch as a child process: results per line, bad rows, exit codes, re-runs that
-- send nothing twice (also after kill -9), progress on a terminal and on a pipe.
local cjson = require "cjson"
local socket = require "socket"
local R = require "spec.cli.run"

local function json_lines(s)
  local out = {}
  for _, l in ipairs(R.lines(s)) do out[#out + 1] = cjson.decode(l) end
  return out
end

local function csv_of(n, first)
  local rows = { "to,content" }
  for i = 1, n do
    rows[#rows + 1] = string.format("+1555%07d,hello %d", (first or 2000000) + i, i)
  end
  return table.concat(rows, "\n") .. "\n"
end

describe("chatmaid batch", function()
  local sb, env, dir

  setup(function()
    sb = require("chatmaid.sandbox").start{ rate_limit = false }
    env = R.env(sb)
    dir = os.tmpname()
    os.remove(dir)
    assert(os.execute("mkdir -p " .. R.quote(dir)))
  end)

  teardown(function()
    if sb then sb:stop() end
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

  it("writes --out and sends nothing twice when run again (default batch id)", function()
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
    local _, err2, code2 = R.run({ "batch", file, "--from", "ph_primary", "--out", outfile },
                                 { env = env })
    assert.are.equal(0, code2)
    assert.truthy(err2:find("batch " .. id .. ": sent 0, replayed 5, skipped 0, failed 0", 1,
                            true))
    local second = json_lines(R.read(outfile))
    for i = 1, 5 do assert.are.equal(first[i].id, second[i].id) end
    assert.are.equal(5, created() - before)
    -- a new batch id sends the file again on purpose
    local _, _, code3 = R.run({ "batch", file, "--from", "ph_primary", "--batch-id", "again-2",
                                "--out", outfile }, { env = env })
    assert.are.equal(0, code3)
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
    local new, replayed = err:match(": sent (%d+), replayed (%d+), skipped 0, failed 1 %(line "
                                    .. (n + 2) .. "%), " .. (n + 1) .. " rows in ")
    assert.are.equal(n, tonumber(new) + tonumber(replayed))
    assert.are.equal(n - partial, tonumber(new))
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
                           .. " in [%d.]+ s\n$"))
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
                           .. " in [%d.]+ s\r\n$"))
  end)
end)
