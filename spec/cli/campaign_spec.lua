-- SPDX-License-Identifier: MIT
-- chatmaid batch, issue 22: a campaign is its name. An edited list re-run with another --out,
-- or without its journal (another machine), never sends an unchanged row twice; another list
-- under an earlier campaign's name stops before sending (exit 2) naming that run, until
-- --continue or --new decides; one writer per journal (a second process exits 2 naming the
-- first); the journal is 0600 and never a symbolic link.
local socket = require "socket"
local R = require "spec.cli.run"
local F = require "spec.support.fixtures"

local files = require "spec.support.files"
local json_lines, exists = R.json_lines, files.exists

local function csv(rows)
  local t = { "to,content" }
  for _, r in ipairs(rows) do t[#t + 1] = r[1] .. "," .. r[2] end
  return table.concat(t, "\n") .. "\n"
end

describe("chatmaid batch: a campaign is its name", function()
  local sb = F.block_sandbox{ rate_limit = false }
  local env, dir
  local get_dir = files.block_dir()
  before_each(function()
    env, dir = R.env(sb), get_dir()
  end)

  local function created() return sb:stats().messagesCreated end

  local function rows_of(n, tag)
    local rows = {}
    for i = 1, n do rows[i] = { string.format("+1554%07d", i), tag .. " " .. i } end
    return rows
  end

  -- 3 of the 10 rows fixed (their text changed)
  local function fix3(rows)
    local t = {}
    for i, r in ipairs(rows) do t[i] = { r[1], i % 3 == 0 and (r[2] .. " fixed") or r[2] } end
    return t
  end

  for _, how in ipairs{ "another --out", "--no-journal and another --out" } do
    it("an edited list re-run with " .. how .. " sends only the changed rows", function()
      local tag = how:sub(1, 4)
      local file = R.write(dir .. "/edit-" .. tag .. ".csv", csv(rows_of(10, tag)))
      local base = { "batch", file, "--from", "ph_primary" }
      local _, err, code = R.run({ base[1], base[2], base[3], base[4], "--out",
                                   dir .. "/first.jsonl" }, { env = env })
      assert.are.equal(0, code, err)
      assert.are.equal(10, created())
      assert.truthy(err:find("; 0 rows were already sent by an earlier run\n", 1, true), err)
      R.write(file, csv(fix3(rows_of(10, tag))))
      socket.sleep(0.05)
      local args = { base[1], base[2], base[3], base[4], "--out", dir .. "/second.jsonl" }
      if how:find("no-journal", 1, true) then args[#args + 1] = "--no-journal" end
      local _, err2, code2 = R.run(args, { env = env })
      assert.are.equal(0, code2, err2)
      assert.are.equal(13, created())           -- the 3 fixed rows, nothing else
      local counts = how:find("no-journal", 1, true) and "sent 3, replayed 7, skipped 0"
                     or "sent 3, replayed 0, skipped 7"
      assert.truthy(err2:find(counts .. ", failed 0, 10 rows in [%d.]+ s; 7 rows were already"
                              .. " sent by an earlier run\n"), err2)
      local res = json_lines(R.read(dir .. "/second.jsonl"))
      assert.are.equal(10, #res)
    end)
  end

  it("another list under an earlier campaign's name stops before sending, naming that run;"
     .. " --new sends it as a new campaign, --continue as part of the old one", function()
    local file = R.write(dir .. "/weekly.csv", csv({ { "+15541000001", "week 49" },
      { "+15541000002", "reminder" }, { "+15541000003", "reminder" } }))
    local out = dir .. "/weekly.jsonl"
    local _, err, code = R.run({ "batch", file, "--from", "ph_primary", "--out", out },
                               { env = env })
    assert.are.equal(0, code, err)
    assert.are.equal(3, created())
    -- next week's list, saved under the same name: 2 of its 3 rows read as last week's
    R.write(file, csv({ { "+15541000001", "week 50" }, { "+15541000002", "reminder" },
                        { "+15541000003", "reminder" } }))
    R.write(out, "last week's results\n")
    local _, err2, code2 = R.run({ "batch", file, "--from", "ph_primary", "--out", out },
                                 { env = env })
    assert.are.equal(2, code2)
    assert.are.equal(3, created())                       -- nothing sent
    assert.are.equal("last week's results\n", R.read(out))  -- nor the results overwritten
    local today = os.date("!%Y%%-%m%%-%d")
    assert.truthy(err2:find("^chatmaid batch: campaign 'weekly' already has a journal %("
      .. dir:gsub("%p", "%%%0") .. "/weekly%.journal%) with the run of " .. today
      .. " %d%d:%d%d UTC %(sent 3, failed 0%); this file shares only 2 of its 3 rows with it%."
      .. " Nothing was sent%. Run again with %-%-continue to send the rows not sent yet as"
      .. " part of that campaign, with %-%-new to start a new campaign named 'weekly', or with"
      .. " %-%-campaign OTHER%.\n$"), err2)
    -- --new: every row is sent; the old journal is kept aside
    local _, err3, code3 = R.run({ "batch", file, "--from", "ph_primary", "--out", out,
                                   "--new" }, { env = env })
    assert.are.equal(0, code3, err3)
    assert.are.equal(6, created())
    assert.truthy(err3:find("sent 3, replayed 0, skipped 0, failed 0", 1, true), err3)
    local aside = err3:match("the earlier campaign's journal is now (%S+)\n")
    assert.is_truthy(aside and exists(aside), err3)
    -- and that new campaign continues under the name, with no question
    local _, err4, code4 = R.run({ "batch", file, "--from", "ph_primary", "--out", out },
                                 { env = env })
    assert.are.equal(0, code4, err4)
    assert.truthy(err4:find("skipped 3, failed 0, 3 rows in [%d.]+ s; 3 rows were already sent"
                            .. " by an earlier run\n"), err4)
    assert.are.equal(6, created())
    -- --continue: a list under the name, taken as part of that campaign
    R.write(file, csv({ { "+15541000001", "week 50" }, { "+15541000009", "new one" } ,
                        { "+15541000008", "new two" } }))
    local _, err5, code5 = R.run({ "batch", file, "--from", "ph_primary", "--out", out },
                                 { env = env })
    assert.are.equal(2, code5, err5)
    local _, err6, code6 = R.run({ "batch", file, "--from", "ph_primary", "--out", out,
                                   "--continue" }, { env = env })
    assert.are.equal(0, code6, err6)
    assert.truthy(err6:find("sent 2, replayed 0, skipped 1", 1, true), err6)
    assert.are.equal(8, created())
    local _, err7, code7 = R.run({ "batch", file, "--continue", "--new" }, { env = env })
    assert.are.equal(2, code7)
    assert.truthy(err7:find("--continue and --new: pick one", 1, true), err7)
  end)

  it("--campaign names it: the same list under another file name continues it", function()
    local rows = rows_of(4, "named")
    local a = R.write(dir .. "/spring-v1.csv", csv(rows))
    local b = R.write(dir .. "/spring-v2.csv", csv(rows))
    local _, err, code = R.run({ "batch", a, "--from", "ph_primary", "--campaign", "spring" },
                               { env = env })
    assert.are.equal(0, code, err)
    assert.is_true(exists(dir .. "/spring.journal"))
    local _, err2, code2 = R.run({ "batch", b, "--from", "ph_primary", "--campaign", "spring" },
                                 { env = env })
    assert.are.equal(0, code2, err2)
    assert.truthy(err2:find("skipped 4", 1, true), err2)
    assert.are.equal(4, created())
    local _, err3, code3 = R.run({ "batch", b, "--campaign", "../x" }, { env = env })
    assert.are.equal(2, code3)
    assert.truthy(err3:find("--campaign must be 1 to 64 characters", 1, true), err3)
  end)

  it("one writer: a second process on the campaign exits 2 naming the first; nothing is"
     .. " sent twice", function()
    local file = R.write(dir .. "/busy.csv", csv(rows_of(6, "busy")))
    assert(sb:fault{ path = "/v1/messages/send", method = "POST", type = "delay",
                     seconds = 0.2, count = 100 })
    local cmd = R.command({ "batch", file, "--from", "ph_primary", "--concurrency", "1",
                            "--out", dir .. "/busy1.jsonl" }, env)
    local h = io.popen("sh -c " .. R.quote("echo $$; exec " .. cmd .. " 2>&1"))
    local pid = assert(tonumber(h:read("*l")))
    local deadline = socket.gettime() + 10
    while created() < 1 and socket.gettime() < deadline do socket.sleep(0.01) end
    local _, err, code = R.run({ "batch", file, "--from", "ph_primary", "--out",
                                 dir .. "/busy2.jsonl" }, { env = env })
    assert.are.equal(2, code)
    assert.are.equal("chatmaid batch: " .. dir .. "/busy.journal is in use by another process"
                     .. " (pid " .. pid .. "): another chatmaid batch is sending this campaign;"
                     .. " nothing was sent (wait for it, or kill it and run again)\n", err)
    assert.is_nil(R.read(dir .. "/busy2.jsonl"))
    local first = h:read("*a")
    h:close()
    assert.truthy(first:find("sent 6, replayed 0, skipped 0, failed 0", 1, true), first)
    assert.are.equal(6, created())
  end)

  it("the journal is created 0600; a symbolic link as journal is refused", function()
    local file = R.write(dir .. "/priv.csv", csv(rows_of(1, "priv")))
    local _, err, code = R.run({ "batch", file, "--from", "ph_primary" }, { env = env })
    assert.are.equal(0, code, err)
    assert.are.equal("600", files.mode(dir .. "/priv.journal"))
    os.execute("ln -s " .. R.quote(dir .. "/priv.journal") .. " " .. R.quote(dir .. "/l.j"))
    local _, err2, code2 = R.run({ "batch", file, "--from", "ph_primary", "--journal",
                                   dir .. "/l.j" }, { env = env })
    assert.are.equal(2, code2)
    assert.truthy(err2:find("--journal: " .. dir .. "/l.j is a symbolic link: give the path of"
                            .. " the file itself", 1, true), err2)
    assert.are.equal(1, created())
  end)
end)
