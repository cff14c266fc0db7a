-- SPDX-License-Identifier: MIT
-- chatmaid batch, issue 22 tried from outside: the campaign's batch id lives in its journal
-- when it cannot be derived (after --new, or recorded by a version before 0.2 at its old
-- default place, <--out or CSV>.journal), so a re-run with another --out or with --no-journal
-- must still use it: an unchanged row is never sent twice. A journal of another user is
-- refused.
local R = require "spec.cli.run"
local F = require "spec.support.fixtures"
local files = require "spec.support.files"

local function csv(rows)
  local t = { "to,content" }
  for _, r in ipairs(rows) do t[#t + 1] = r[1] .. "," .. r[2] end
  return table.concat(t, "\n") .. "\n"
end

local function rows_of(n, tag, fixed)
  local rows = {}
  for i = 1, n do
    rows[i] = { string.format("+1553%07d", i), tag .. " " .. i .. (i == fixed and " fixed" or "") }
  end
  return rows
end

describe("chatmaid batch: the journal's batch id is used wherever the journal is", function()
  local sb = F.block_sandbox{ rate_limit = false }
  local env, dir
  local get_dir = files.block_dir()
  before_each(function() env, dir = R.env(sb), get_dir() end)

  local function created() return sb:stats().messagesCreated end
  local function batch(file, ...)
    local _, err, code = R.run({ "batch", file, "--from", "ph_primary", ... }, { env = env })
    return code, err
  end

  it("after --new, an edited list re-run with --no-journal sends only the changed row",
     function()
    local file = R.write(dir .. "/weekly.csv", csv(rows_of(6, "week 1")))
    assert.are.equal(0, batch(file))
    R.write(file, csv(rows_of(6, "week 2")))
    local code, err = batch(file, "--new")
    assert.are.equal(0, code, err)
    assert.are.equal(12, created())
    local id = err:match("\nbatch (%S+): sent 6,")
    assert.is_truthy(id, err)
    R.write(file, csv(rows_of(6, "week 2", 4)))
    code, err = batch(file, "--no-journal", "--out", dir .. "/other.jsonl")
    assert.are.equal(0, code, err)
    assert.are.equal(13, created())
    assert.truthy(err:find("batch " .. id .. ": sent 1, replayed 5, skipped 0", 1, true), err)
    -- another list with --no-journal: stopped, and pointed at what works without it
    R.write(file, csv(rows_of(6, "week 3")))
    code, err = batch(file, "--no-journal")
    assert.are.equal(2, code)
    assert.truthy(err:find("shares only 0 of its 6 rows with it. Nothing was sent. Run again"
      .. " with --continue to send the rows not sent yet as part of that campaign, without"
      .. " --no-journal and with --new to start a new campaign named 'weekly', or with"
      .. " --campaign OTHER.\n", 1, true), err)
    -- --new without a journal would make an id nothing remembers: refused
    code, err = batch(file, "--no-journal", "--new")
    assert.are.equal(2, code)
    assert.truthy(err:find("--new needs the journal", 1, true), err)
    assert.are.equal(13, created())
  end)

  for _, how in ipairs{ "another --out", "--no-journal" } do
    it("a journal an older version left beside the CSV (FILE.csv.journal, 0644) is used with "
       .. how .. " (and then moved beside it as NAME.journal, 0600)", function()
      local tag = how:sub(3, 6)
      local file = R.write(dir .. "/old-" .. tag .. ".csv", csv(rows_of(5, "old " .. tag)))
      local old = file .. ".journal"           -- where versions before 0.2 put it (no --out)
      local code, err = batch(file, "--batch-id", "csv-00112233445566" .. tag:sub(1, 2),
                              "--journal", old)
      assert.are.equal(0, code, err)
      os.execute("chmod 0644 " .. R.quote(old))
      local before = created()
      R.write(file, csv(rows_of(5, "old " .. tag, 2)))
      if how == "--no-journal" then
        code, err = batch(file, "--no-journal", "--out", dir .. "/n.jsonl")
      else
        code, err = batch(file, "--out", dir .. "/o.jsonl")
        assert.is_false(files.exists(old))                 -- moved to its place now
        assert.are.equal("600", files.mode(dir .. "/old-" .. tag .. ".journal"))
      end
      assert.are.equal(0, code, err)
      assert.are.equal(before + 1, created())
      assert.truthy(err:find("csv%-00112233445566" .. tag:sub(1, 2) .. ": sent 1, "), err)
    end)
  end

  it("an older version's journal at <--out>.journal moves beside the CSV on first use, so a"
     .. " later run with yet another --out still finds it", function()
    local file = R.write(dir .. "/moved.csv", csv(rows_of(4, "moved")))
    local out = dir .. "/monday.jsonl"
    local code, err = batch(file, "--batch-id", "csv-0011223344556677", "--journal",
                            out .. ".journal")
    assert.are.equal(0, code, err)
    local before = created()
    code, err = batch(file, "--out", out)           -- the old place: used, and moved
    assert.are.equal(0, code, err)
    assert.truthy(err:find("chatmaid batch: moved the journal " .. out .. ".journal to "
                           .. dir .. "/moved.journal (its place since 0.2)\n", 1, true), err)
    assert.is_false(files.exists(out .. ".journal"))
    assert.are.equal("600", files.mode(dir .. "/moved.journal"))
    R.write(file, csv(rows_of(4, "moved", 3)))
    code, err = batch(file, "--out", dir .. "/tuesday.jsonl")
    assert.are.equal(0, code, err)
    assert.truthy(err:find("batch csv-0011223344556677: sent 1, replayed 0, skipped 3", 1,
                           true), err)
    assert.are.equal(before + 1, created())
  end)

  it("--new never overwrites a journal kept aside before (same date of last run)", function()
    local file = R.write(dir .. "/aside.csv", csv(rows_of(2, "aside")))
    local header = '{"journal":"chatmaid.batch","v":1,"batch":"csv-aaaabbbbccccdddd","at":1000}\n'
    R.write(dir .. "/aside.journal", header)
    R.write(dir .. "/aside.journal.19700101T001640Z", "kept before\n")
    local code, err = batch(file, "--new")
    assert.are.equal(0, code, err)
    assert.are.equal("kept before\n", R.read(dir .. "/aside.journal.19700101T001640Z"))
    assert.are.equal(header, R.read(dir .. "/aside.journal.19700101T001640Z-2"))
    assert.truthy(err:find("journal is now " .. dir .. "/aside.journal.19700101T001640Z-2\n",
                           1, true), err)
  end)

  it("a journal that cannot be created says what to do (exit 2, nothing sent)", function()
    local file = R.write(dir .. "/nodir.csv", csv(rows_of(1, "nodir")))
    local before = created()
    local code, err = batch(file, "--journal", "")
    assert.are.equal(2, code)
    assert.truthy(err:find("chatmaid usage: --journal needs a file path", 1, true), err)
    code, err = batch(file, "--journal", dir .. "/no/such/x.journal")
    assert.are.equal(2, code)
    assert.truthy(err:find("--journal: cannot open " .. dir .. "/no/such/x.journal: No such file"
      .. " or directory (pass --journal PATH to keep the journal where you can write, or"
      .. " --no-journal)", 1, true), err)
    assert.are.equal(before, created())
  end)

  it("the list re-run with --from written another way stops, even with --continue: its rows"
     .. " were sent (same recipient and text) under other keys", function()
    local file = R.write(dir .. "/sender.csv", csv(rows_of(6, "sender")))
    local start = created()
    assert.are.equal(0, batch(file))                            -- --from ph_primary
    R.write(file, csv(rows_of(6, "sender", 5)))
    for _, extra in ipairs{ "--out", "--continue" } do
      local _, err, code = R.run({ "batch", file, "--from", "+15551230001", extra,
                                   extra == "--out" and dir .. "/x.jsonl" or nil },
                                 { env = env })
      assert.are.equal(2, code, err)
      assert.truthy(err:find("^chatmaid batch: campaign 'sender': 5 of this file's 6 rows were"
        .. " already sent by the run of [%d%- :]+ UTC %(sent 6, failed 0%) to the same"
        .. " recipients with the same text, under other idempotency keys: %-%-from is written"
        .. " differently from that run's %(it sent from %+15551230001%), or the rows'"
        .. " idempotency_key column changed%. Nothing was sent%. Run again with that run's"
        .. " %-%-from to continue the campaign; %-%-new sends every row again as a new"
        .. " campaign%.\n$"), err)
    end
    assert.are.equal(start + 6, created())                      -- nothing sent twice
    local before = created()
    local code, err = batch(file)                               -- the same --from again
    assert.are.equal(0, code, err)
    assert.truthy(err:find("sent 1, replayed 0, skipped 5", 1, true), err)
    assert.are.equal(before + 1, created())
  end)

  -- Below the stop's threshold (2 in 3), --continue takes the list as part of the campaign:
  -- its rows sent before under the other spelling of --from are answered from the journal
  -- (send_batch matches them by message), never sent a second time.
  it("with --continue, the few earlier rows in a list with --from written another way are"
     .. " skipped, not sent again; the new rows are sent", function()
    local file = R.write(dir .. "/few.csv", csv(rows_of(6, "few")))
    local start = created()
    assert.are.equal(0, batch(file))                            -- --from ph_primary
    local rows = { rows_of(6, "few")[1], rows_of(6, "few")[4] }  -- 2 of the 6, then 6 new
    for i = 1, 6 do rows[#rows + 1] = { string.format("+1553%07d", 100 + i), "new " .. i } end
    R.write(file, csv(rows))
    local _, err, code = R.run({ "batch", file, "--from", "+15551230001", "--continue" },
                               { env = env })
    assert.are.equal(0, code, err)
    assert.truthy(err:find("sent 6, replayed 0, skipped 2, failed 0, 8 rows", 1, true), err)
    assert.are.equal(start + 12, created())
  end)

  it("a file given as --journal by mistake is refused and keeps its mode", function()
    local file = R.write(dir .. "/mistake.csv", csv(rows_of(1, "mistake")))
    local res = R.write(dir .. "/results.jsonl", '{"line":2}\n')
    os.execute("chmod 0644 " .. R.quote(res))
    local code, err = batch(file, "--journal", res)
    assert.are.equal(2, code)
    assert.truthy(err:find(res .. " is not a chatmaid batch journal", 1, true), err)
    assert.are.equal("644", files.mode(res))
    assert.are.equal('{"line":2}\n', R.read(res))
  end)

  it("a journal whose run time is out of range (a damaged file) is no internal error",
     function()
    local file = R.write(dir .. "/when.csv", csv(rows_of(2, "when")))
    R.write(dir .. "/when.journal", '{"journal":"chatmaid.batch","v":1,"batch":"csv-aaaabbbb'
            .. 'ccccdddd","at":1e300}\n{"ok":"k","message":{"to":"+1","content":"x"}}\n')
    local code, err = batch(file)
    assert.are.equal(2, code, err)
    assert.truthy(err:find("with the run of an unknown date (sent 1, failed 0)", 1, true), err)
    code, err = batch(file, "--new")
    assert.are.equal(0, code, err)
    assert.truthy(err:find("journal is now " .. dir .. "/when.journal.19700101T000000Z\n", 1,
                           true), err)
  end)

  it("Ctrl-C while a big file is read exits 130 saying nothing was sent (no internal error)",
     function()
    local t = { "to,content" }
    for i = 1, 50000 do t[#t + 1] = '+1,"not a number ' .. i .. '"' end   -- nothing to send
    local file = R.write(dir .. "/big.csv", table.concat(t, "\n") .. "\n")
    local before = created()
    local pid, wait = R.spawn({ "batch", file, "--from", "ph_primary", "--out",
                               dir .. "/big.jsonl" }, env, dir .. "/big.err")
    require("socket").sleep(0.15)                 -- still reading the file
    os.execute("kill -INT " .. pid)
    local code = wait()
    local out = R.read(dir .. "/big.err")
    assert.are.equal(130, code, out)
    assert.is_nil(out:find("internal error", 1, true), out)
    assert.are.equal(before, created())
  end)

  it("--out naming the CSV file or the journal (a slip of the keyboard) is refused before"
     .. " either is touched", function()
    local text = csv(rows_of(2, "slip"))
    local file = R.write(dir .. "/slip.csv", text)
    assert.are.equal(0, batch(file))
    local journal = R.read(dir .. "/slip.journal")
    local before = created()
    for _, out in ipairs{ file, dir .. "/./slip.csv", dir .. "//slip.journal" } do
      for _, extra in ipairs{ "--continue", "--no-journal" } do
        local code, err = batch(file, "--out", out, extra)
        assert.are.equal(2, code, err)
        assert.truthy(err:find("--out " .. out .. " is the ", 1, true), err)
        assert.truthy(err:find(": the results would replace it; give another file", 1, true))
      end
    end
    assert.are.equal(text, R.read(file))
    assert.are.equal(journal, R.read(dir .. "/slip.journal"))
    assert.are.equal(before, created())
  end)

  it("an empty --batch-id, an empty or malformed --from: usage errors (exit 2), nothing sent",
     function()
    local file = R.write(dir .. "/opts.csv", csv(rows_of(2, "opts")))
    local before = created()
    for _, case in ipairs{
      { { "--batch-id", "" }, "--batch-id must be 1 to 48 printable ASCII characters" },
      { { "--from", "" }, "--from must be a non-empty string" },
      { { "--from", "+1 555" }, "--from must be in E.164 format" },
    } do
      local args = { "batch", file, case[1][1], case[1][2] }
      if case[1][1] ~= "--from" then args[#args + 1] = "--from"; args[#args + 1] = "ph_primary" end
      local _, err, code = R.run(args, { env = env })
      assert.are.equal(2, code, err)
      assert.truthy(err:find("chatmaid usage: " .. case[2], 1, true), err)
    end
    assert.are.equal(before, created())
  end)

  it("a journal file of another user is refused (exit 2), nothing sent", function()
    if files.uid() ~= 0 then return end   -- chown needs root (CI runs as root)
    local file = R.write(dir .. "/planted.csv", csv(rows_of(2, "planted")))
    R.write(dir .. "/planted.journal", "")
    os.execute("chown nobody " .. R.quote(dir .. "/planted.journal"))
    local before = created()
    local code, err = batch(file)
    assert.are.equal(2, code)
    assert.truthy(err:find(dir .. "/planted.journal belongs to another user (uid ", 1, true),
                  err)
    assert.are.equal(before, created())
  end)
end)
