-- SPDX-License-Identifier: MIT
-- chatmaid batch: a journal confirms rows for the API its run talked to. The sandbox's own
-- workflow (try the campaign against the sandbox, then send it for real) and "a test key,
-- then a live one" used to continue the campaign at the new place: every row "skipped,
-- already sent by an earlier run", exit 0, nothing sent there. Now such a run stops before
-- sending (exit 2) naming both places; --new sends there as a new campaign, --continue says
-- it is the same place. (The real API is stood in for by the same sandbox under another
-- host name, localhost: another destination to the client, the same message store here.)
local R = require "spec.cli.run"
local F = require "spec.support.fixtures"
local files = require "spec.support.files"
local journal = require "chatmaid.journal"
local cli_batch = require "chatmaid.cli.batch"

describe("chatmaid batch: a journal belongs to the API it was sent to", function()
  local sb = F.block_sandbox{ rate_limit = false }
  local dir
  local get_dir = files.block_dir()
  before_each(function() dir = get_dir() end)

  local function created() return sb:stats().messagesCreated end
  local function list(tag)
    return R.write(dir .. "/" .. tag .. ".csv", "to,content\n+15542000001,hi " .. tag
                   .. "\n+15542000002,hi " .. tag .. "\n+15542000003,hi " .. tag .. "\n")
  end
  local function run(file, env, ...)
    local _, err, code = R.run({ "batch", file, "--from", "ph_primary", ... }, { env = env })
    return code, err
  end

  it("the sandbox, then another API: stops before sending, naming both; --continue takes"
     .. " it as the same place, and the journal then records the new one", function()
    local file = list("spring")
    local sandbox = R.env(sb)
    local real = { CHATMAID_API_KEY = R.KEY,
                   CHATMAID_BASE_URL = sb.url:gsub("127%.0%.0%.1", "localhost") }
    local code, err = run(file, sandbox)
    assert.are.equal(0, code, err)
    assert.are.equal(3, created())
    local code2, err2 = run(file, real)
    assert.are.equal(2, code2, err2)
    assert.are.equal(3, created())                          -- nothing sent
    assert.truthy(err2:find("^chatmaid batch: campaign 'spring': its journal %("
      .. (dir .. "/spring.journal"):gsub("%p", "%%%0") .. "%) records the run of %d+%-%d+%-%d+"
      .. " %d+:%d+ UTC %(sent 3, failed 0%) with a test key at 127%.0%.0%.1; this run sends"
      .. " with a test key at localhost, where those rows were never sent%. Nothing was sent%."
      .. " Run again with %-%-new to send the campaign there as a new one %(the journal is kept"
      .. " aside%), with %-%-continue if both are the same account and API %(the rows the"
      .. " journal confirms are then skipped%), or with %-%-campaign OTHER%.\n$"), err2)
    local st = assert(journal.read(dir .. "/spring.journal"))
    assert.are.same({ 1, "a test key at 127.0.0.1" }, { st.runs, st.dest })  -- untouched
    -- --no-journal reads the journal all the same: the same stop
    local code3, err3 = run(file, real, "--no-journal")
    assert.are.equal(2, code3, err3)
    -- --continue: the same place after all; the journal's rows are skipped, none sent
    local code4, err4 = run(file, real, "--continue")
    assert.are.equal(0, code4, err4)
    assert.truthy(err4:find("sent 0, replayed 0, skipped 3, failed 0", 1, true), err4)
    assert.are.equal(3, created())
    assert.are.equal("a test key at localhost",
                     assert(journal.read(dir .. "/spring.journal")).dest)
    -- from then on the campaign continues there without a question, and stops at the first
    local code5, err5 = run(file, real)
    assert.are.equal(0, code5, err5)
    local code6, err6 = run(file, sandbox)
    assert.are.equal(2, code6, err6)
    assert.truthy(err6:find("with a test key at localhost; this run sends with a test key at"
                            .. " 127.0.0.1,", 1, true), err6)
    assert.are.equal(3, created())
  end)

  it("a test key, then a live one: stops; --new sends every row as live messages", function()
    local file = list("launch")
    local code, err = run(file, R.env(sb))
    assert.are.equal(0, code, err)
    local live = R.env(sb, R.LIVE)
    local code2, err2 = run(file, live)
    assert.are.equal(2, code2, err2)
    assert.truthy(err2:find("with a test key at 127.0.0.1; this run sends with a live key at"
                            .. " 127.0.0.1, where those rows were never sent.", 1, true), err2)
    assert.are.equal(3, created())
    local code3, err3 = run(file, live, "--new")
    assert.are.equal(0, code3, err3)
    -- new messages, not the test ones replayed (the API scopes idempotency keys per
    -- account, test and live alike: the live run's batch id is another one)
    assert.truthy(err3:find("sent 3, replayed 0, skipped 0, failed 0", 1, true), err3)
    assert.are.equal(6, created())
  end)

  it("without a journal, a live key's batch id is not the test key's: no test message is"
     .. " replayed as a live one", function()
    local file = list("nojournal")
    local code, err = run(file, R.env(sb), "--no-journal")
    assert.are.equal(0, code, err)
    local code2, err2 = run(file, R.env(sb, R.LIVE), "--no-journal")
    assert.are.equal(0, code2, err2)
    assert.truthy(err2:find("sent 3, replayed 0, skipped 0, failed 0", 1, true), err2)
    assert.are.equal(6, created())
  end)

  it("the derived batch id follows the key's scope: a rotated key keeps it (the API"
     .. " replays), a key of the other mode or of an unknown form gets its own", function()
    local id = cli_batch.default_batch_id
    assert.are.equal(id("c", "ph_primary", "sk_test_AAAA"), id("c", "ph_primary", "sk_test_BB"))
    assert.are.equal(id("c", "ph_primary", "sk_live_AAAA"), id("c", "ph_primary", "sk_live_B"))
    assert.are_not.equal(id("c", "ph_primary", "sk_test_A"), id("c", "ph_primary", "sk_live_A"))
    assert.are_not.equal(id("c", "ph_primary", "key-one"), id("c", "ph_primary", "key-two"))
    assert.are_not.equal(id("c", "ph_primary", "sk_test_A"), id("d", "ph_primary", "sk_test_A"))
    assert.are_not.equal(id("c", "ph_primary", "sk_test_A"), id("c", "ph_other", "sk_test_A"))
    assert.truthy(id("c", "ph_primary", "sk_test_A"):match("^csv%-%x+$"))
  end)
end)

describe("chatmaid.journal.destination", function()
  it("is the key's scope and the API's host: no port, path, credentials or case", function()
    local d = journal.destination
    assert.are.equal("a live key at developers-api.chatmaid.net",
                     d("https://developers-api.chatmaid.net", "sk_live_0123456789"))
    assert.are.equal("a test key at developers-api.chatmaid.net",
                     d("https://user:pw@Developers-API.chatmaid.net:443/v1/", "sk_test_x"))
    assert.are.equal("a test key at 127.0.0.1", d("http://127.0.0.1:8787", "sk_test_x"))
    assert.are.equal("a test key at [::1]", d("http://[::1]:8787/", "sk_test_x"))
  end)

  it("names a key of an unknown form by a keyed hash, never by the key", function()
    local secret = "my-own-secret-key-0123456789"
    local dest = journal.destination("https://api.example", secret)
    assert.truthy(dest:match("^key %x%x%x%x%x%x%x%x%x%x%x%x%x%x%x%x at api%.example$"), dest)
    assert.is_nil(dest:find(secret:sub(1, 6), 1, true))
    assert.are_not.equal(dest, journal.destination("https://api.example", secret .. "x"))
    assert.are.equal("test key", journal.key_scope("sk_test_sandbox_0000000000000001"))
    assert.truthy(journal.key_scope("sk_prod_x"):match("^key %x+$"))
  end)
end)
