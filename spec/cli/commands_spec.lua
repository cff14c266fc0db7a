-- SPDX-License-Identifier: MIT
-- The chatmaid command line as a child process against the sandbox: every command, --json
-- parsed back, exit codes 0/1/2, terminal and pipe output.
local cjson = require "cjson"
local R = require "spec.cli.run"
local F = require "spec.support.fixtures"

local run, pty = R.run, R.pty

local function json_lines(s)
  local out = {}
  for _, l in ipairs(R.lines(s)) do out[#out + 1] = cjson.decode(l) end
  return out
end

describe("chatmaid CLI", function()
  local sb = F.block_sandbox({ rate_limit = false, live_delay = 0.3 }, { reset = false })
  local env

  setup(function()
    env = R.env(sb)
  end)

  describe("send", function()
    it("sends and prints the message as key/value lines", function()
      local out, err, code = run({ "send", "--from", "ph_primary", "--to", "+15557654321",
                                   "--content", "Hello" }, { env = env })
      assert.are.equal("", err)
      assert.are.equal(0, code)
      local kv = R.kv(out)
      assert.are.equal("sent", kv.status)
      assert.are.equal("+15557654321", kv.to)
      assert.are.equal("Hello", kv.content)
      assert.are.equal("+15551230001", kv.from)   -- ph_primary
      assert.are.equal("id", out:match("^(%S+)"))
    end)

    it("prints one JSON document with --json, and message ID finds it", function()
      local out, err, code = run({ "send", "--from", "+15551230001", "--to", "+15557654322",
                                   "--content", "Hi, json", "--idempotency-key", "cli-k1",
                                   "--json" }, { env = env })
      assert.are.equal(0, code)
      assert.are.equal("", err)
      local m = cjson.decode(out)
      assert.are.equal("sent", m.status)
      assert.are.equal("cli-k1", m.idempotencyKey)
      assert.are.equal("+15551230001", m.from)
      local out2, _, code2 = run({ "message", m.id, "--json" }, { env = env })
      assert.are.equal(0, code2)
      local m2 = cjson.decode(out2)
      assert.are.equal(m.id, m2.id)
      assert.are.equal("Hi, json", m2.content)
      -- the same idempotency key again: the same message, nothing new
      local out3 = run({ "--json", "send", "--from", "ph_primary", "--to", "+15557654322",
                         "--content", "Hi, json", "--idempotency-key", "cli-k1" }, { env = env })
      assert.are.equal(m.id, cjson.decode(out3).id)
    end)

    it("sends media URLs (repeatable --media)", function()
      local out, _, code = run({ "send", "--to", "+15557654323", "--media",
                                 "https://example.com/a.png", "--media",
                                 "https://example.com/b.png", "--json" }, { env = env })
      assert.are.equal(0, code)
      assert.are.same({ "https://example.com/a.png", "https://example.com/b.png" },
                      cjson.decode(out).mediaUrls)
    end)

    it("exits 2 without --content or --media", function()
      local out, err, code = run({ "send", "--to", "+15557654321" }, { env = env })
      assert.are.equal(2, code)
      assert.are.equal("", out)
      assert.are.equal("chatmaid usage: send needs --content or --media (see 'chatmaid send"
                       .. " --help')\n", err)
    end)

    it("exits 2 with the validation error for a bad number (nothing sent)", function()
      local before = sb:stats().sendRequests
      local _, err, code = run({ "send", "--to", "123", "--content", "x" }, { env = env })
      assert.are.equal(2, code)
      assert.are.equal("chatmaid validation: --to must be in E.164 format: '+', a country code"
                       .. " starting 1-9, at most 15 digits, no spaces or dashes (like"
                       .. " +15557654321); got \"123\" (POST /v1/messages/send)\n", err)
      assert.are.equal(before, sb:stats().sendRequests)
    end)

    it("exits 2 when --to is missing, with the command's usage", function()
      local _, err, code = run({ "send", "--content", "x" }, { env = env })
      assert.are.equal(2, code)
      assert.truthy(err:find("^Usage: chatmaid send "))
      local tail = "\nchatmaid usage: missing option '--to'\n"
      assert.are.equal(tail, err:sub(-#tail))
    end)
  end)

  describe("message", function()
    it("exits 1 with the error kind for an unknown id", function()
      local out, err, code = run({ "message", "msg_nope" }, { env = env })
      assert.are.equal(1, code)
      assert.are.equal("", out)
      assert.are.equal("chatmaid not_found: Message not found (GET /v1/messages/msg_nope,"
                       .. " HTTP 404)\n", err)
    end)
  end)

  describe("wait", function()
    it("waits for a live message to leave pending", function()
      local live = R.env(sb, R.LIVE)
      local out = run({ "send", "--to", "+15557654324", "--content", "live", "--json" },
                      { env = live })
      local m = cjson.decode(out)
      assert.are.equal("pending", m.status)
      local out2, err2, code = run({ "wait", m.id, "--interval", "0.1", "--json" },
                                   { env = live })
      assert.are.equal("", err2)
      assert.are.equal(0, code)
      local w = cjson.decode(out2)
      assert.are.equal(m.id, w.id)
      assert.are.equal("sent", w.status)
    end)

    it("exits 1 with a timeout error when the status never comes", function()
      local m = cjson.decode((run({ "send", "--to", "+15557654325", "--content", "t",
                                    "--json" }, { env = env })))
      local out, err, code = run({ "wait", m.id, "--until", "read", "--timeout", "0.3",
                                   "--interval", "0.1" }, { env = env })
      assert.are.equal(1, code)
      assert.are.equal("", out)
      assert.are.equal("chatmaid timeout: ", err:sub(1, 18))
      assert.are.equal(1, #R.lines(err))
    end)

    it("exits 2 for an unknown --until status", function()
      local _, err, code = run({ "wait", "msg_x", "--until", "sent,gone" }, { env = env })
      assert.are.equal(2, code)
      assert.are.equal("chatmaid usage: --until: unknown status gone (pending, sent,"
                       .. " delivered, read, failed) (see 'chatmaid wait --help')\n", err)
    end)
  end)

  describe("messages", function()
    it("prints JSON lines, newest first, honouring --limit and --status", function()
      local a = cjson.decode((run({ "send", "--to", "+15550001001", "--content", "one",
                                    "--json" }, { env = env })))
      local b = cjson.decode((run({ "send", "--to", "+15550001002", "--content", "two",
                                    "--json" }, { env = env })))
      local out, err, code = run({ "messages", "--limit", "2", "--status", "sent", "--json" },
                                 { env = env })
      assert.are.equal(0, code)
      assert.are.equal("", err)
      local list = json_lines(out)
      assert.are.equal(2, #list)
      assert.are.equal(b.id, list[1].id)
      assert.are.equal(a.id, list[2].id)
    end)

    it("walks every page with --all", function()
      local out, _, code = run({ "messages", "--all", "--json" }, { env = env })
      assert.are.equal(0, code)
      local list, seen = json_lines(out), {}
      for _, m in ipairs(list) do
        assert.is_nil(seen[m.id])
        seen[m.id] = true
        assert.are.equal("test", m.environment)
      end
      local total = cjson.decode((run({ "account", "--json" }, { env = env }))).stats.messages
      -- the account counts live messages too; --all lists the key's environment (test)
      local live = #json_lines((run({ "messages", "--all", "--json" },
                                    { env = R.env(sb, R.LIVE) })))
      assert.are.equal(total, #list + live)
    end)

    it("prints TSV without a header when stdout is not a terminal", function()
      local out, _, code = run({ "messages", "--limit", "1", "--phone", "ph_primary" },
                               { env = env })
      assert.are.equal(0, code)
      local lines = R.lines(out)
      assert.are.equal(1, #lines)
      local cols = {}
      for c in (lines[1] .. "\t"):gmatch("([^\t]*)\t") do cols[#cols + 1] = c end
      assert.are.equal(6, #cols)
      assert.are.equal("msg_", cols[1]:sub(1, 4))
      assert.are.equal("+15551230001", cols[4])
    end)

    it("prints an aligned table with a header on a terminal", function()
      local out, code = pty({ "messages", "--limit", "2" }, env)
      assert.are.equal(0, code)
      local lines = R.lines((out:gsub("\r\n", "\n")))
      assert.are.equal(3, #lines)
      assert.truthy(lines[1]:find("^ID%s+STATUS%s+TO%s+FROM%s+CREATED%s+CONTENT$"))
      local col = lines[1]:find("STATUS", 1, true)
      assert.are.equal("sent", lines[2]:sub(col, col + 3))
      assert.are.equal("sent", lines[3]:sub(col, col + 3))
    end)

    it("exits 2 for --limit 0 and for --limit with --all", function()
      local _, err, code = run({ "messages", "--limit", "0" }, { env = env })
      assert.are.equal(2, code)
      assert.truthy(err:find("chatmaid usage: expected a whole number >= 1, got '0'\n", 1, true))
      local _, _, code2 = run({ "messages", "--limit", "3", "--all" }, { env = env })
      assert.are.equal(2, code2)
    end)
  end)

  describe("phones and phone", function()
    it("lists the phones as JSON lines", function()
      local out, _, code = run({ "phones", "--json" }, { env = env })
      assert.are.equal(0, code)
      local list = json_lines(out)
      assert.are.equal(3, #list)
      assert.are.same({ "ph_primary", "ph_backup", "ph_pairing" },
                      { list[1].id, list[2].id, list[3].id })
      assert.are.equal("+15551230001", list[1].phoneNumber)
      assert.are.equal("connected", list[1].connectionStatus)
    end)

    it("lists the phones as TSV when piped", function()
      local out, _, code = run({ "phones" }, { env = env })
      assert.are.equal(0, code)
      assert.are.equal(
        "ph_primary\t+15551230001\tPrimary Sender\tconnected\t2026-01-01T09:00:00.000Z\n"
        .. "ph_backup\t+15551230002\tBackup Sender\tdisconnected\t2026-01-01T09:00:00.000Z\n"
        .. "ph_pairing\t+15551230003\tPairing Phone\tconnecting\t\n", out)
    end)

    it("lists the phones as an aligned table on a terminal", function()
      local out, code = pty({ "phones" }, env)
      assert.are.equal(0, code)
      assert.are.equal(
        "ID          NUMBER        NAME            STATUS        LAST CONNECTED\r\n"
        .. "ph_primary  +15551230001  Primary Sender  connected     2026-01-01T09:00:00.000Z\r\n"
        .. "ph_backup   +15551230002  Backup Sender   disconnected  2026-01-01T09:00:00.000Z\r\n"
        .. "ph_pairing  +15551230003  Pairing Phone   connecting    \r\n", out)
    end)

    it("shows one phone by id and by E.164 number, and its status", function()
      local out, _, code = run({ "phone", "ph_backup", "--json" }, { env = env })
      assert.are.equal(0, code)
      assert.are.equal("+15551230002", cjson.decode(out).phoneNumber)
      local out2, _, code2 = run({ "phone", "+15551230003", "--status", "--json" },
                                 { env = env })
      assert.are.equal(0, code2)
      local st = cjson.decode(out2)
      assert.are.equal("ph_pairing", st.id)
      assert.are.equal("connecting", st.connectionStatus)
      local out3 = run({ "phone", "ph_primary", "--status" }, { env = env })
      assert.are.equal("connected", R.kv(out3).connectionStatus)
    end)

    it("exits 1 for an unknown phone", function()
      local _, err, code = run({ "phone", "ph_nope" }, { env = env })
      assert.are.equal(1, code)
      assert.are.equal("chatmaid not_found: ", err:sub(1, 20))
    end)
  end)

  describe("account and usage", function()
    it("shows the account, nested fields dotted", function()
      local out, _, code = run({ "account" }, { env = env })
      assert.are.equal(0, code)
      local kv = R.kv(out)
      assert.are.equal("Sandbox Inc", kv.name)
      assert.are.equal("acc_sandbox", kv.accountId)
      assert.are.equal("4", kv["stats.apiKeys"])
      assert.are.equal("3", kv["stats.phoneNumbers"])
      local j = cjson.decode((run({ "account", "--json" }, { env = env })))
      assert.are.equal("sandbox@example.com", j.email)
    end)

    it("shows usage for a period (default month)", function()
      local out, _, code = run({ "usage", "week", "--json" }, { env = env })
      assert.are.equal(0, code)
      assert.are.equal("week", cjson.decode(out).period)
      local out2 = run({ "--json", "usage" }, { env = env })
      assert.are.equal("month", cjson.decode(out2).period)
      local _, err, code3 = run({ "usage", "year" }, { env = env })
      assert.are.equal(2, code3)
      assert.truthy(err:find("chatmaid usage: argument 'period' must be one of 'day', 'week',"
                             .. " 'month'\n", 1, true))
    end)
  end)

  describe("global options and errors", function()
    it("exits 2 when no API key is set", function()
      local _, err, code = run({ "account" }, { env = { CHATMAID_API_KEY = false,
                                                        CHATMAID_BASE_URL = sb.url } })
      assert.are.equal(2, code)
      assert.are.equal("chatmaid validation: no API key: set CHATMAID_API_KEY (or pass"
                       .. " --api-key)\n", err)
    end)

    it("exits 1 for a rejected key and never prints it", function()
      local bad = "sk_test_not_a_real_key_123456"
      local out, err, code = run({ "account" }, { env = R.env(sb, bad) })
      assert.are.equal(1, code)
      assert.are.equal("", out)
      assert.are.equal("chatmaid auth: ", err:sub(1, 15))
      assert.is_nil(err:find(bad, 1, true))
    end)

    it("warns about --api-key on stderr without echoing the key", function()
      local out, err, code = run({ "--api-key", R.KEY, "account", "--json" },
                                 { env = { CHATMAID_API_KEY = false,
                                           CHATMAID_BASE_URL = sb.url } })
      assert.are.equal(0, code)
      assert.are.equal("acc_sandbox", cjson.decode(out).accountId)
      assert.are.equal("chatmaid: warning: --api-key is visible to other users of this"
                       .. " machine (ps, /proc); prefer the CHATMAID_API_KEY environment"
                       .. " variable\n", err)
      assert.is_nil((out .. err):find(R.KEY, 1, true))
    end)

    it("takes --base-url over CHATMAID_BASE_URL, and exits 1 when unreachable", function()
      local out, _, code = run({ "--base-url", sb.url, "phones", "--json" },
                               { env = { CHATMAID_API_KEY = R.KEY,
                                         CHATMAID_BASE_URL = "http://127.0.0.1:1" } })
      assert.are.equal(0, code)
      assert.are.equal(3, #R.lines(out))
      local _, err, code2 = run({ "--max-retries", "0", "--timeout", "2", "account" },
                                { env = { CHATMAID_API_KEY = R.KEY,
                                          CHATMAID_BASE_URL = "http://127.0.0.1:1" } })
      assert.are.equal(1, code2)
      assert.are.equal("chatmaid transport: could not connect to the API: ", err:sub(1, 50))
    end)

    it("exits 2 for an unknown command and a bad global option", function()
      local _, err, code = run({ "launch" }, { env = env })
      assert.are.equal(2, code)
      assert.truthy(err:find("chatmaid usage: unknown command 'launch'", 1, true))
      local _, _, code2 = run({ "--max-retries", "x", "account" }, { env = env })
      assert.are.equal(2, code2)
      local _, _, code3 = run({}, { env = env })
      assert.are.equal(2, code3)
    end)

    it("prints --help with examples for every command, exit 0", function()
      for _, cmd in ipairs{ {}, { "send" }, { "message" }, { "wait" }, { "messages" },
                            { "phones" }, { "phone" }, { "account" }, { "usage" },
                            { "webhook" }, { "webhook", "verify" }, { "webhook", "sign" },
                            { "batch" }, { "sandbox" } } do
        local args = { (table.unpack or unpack)(cmd) }
        args[#args + 1] = "--help"
        local out, err, code = run(args, { env = env })
        assert.are.equal(0, code)
        assert.are.equal("", err)
        assert.truthy(out:find("^Usage: chatmaid"))
        assert.truthy(out:find("\nExamples:\n", 1, true), table.concat(cmd, " "))
      end
    end)

    it("prints the version", function()
      local out, _, code = run({ "--version" }, { env = env })
      assert.are.equal(0, code)
      assert.are.equal("chatmaid " .. require("chatmaid.client").VERSION .. "\n", out)
    end)
  end)

  describe("sandbox", function()
    it("runs the emulator in the foreground and prints the URL and demo keys", function()
      local h = io.popen("exec " .. R.command({ "sandbox", "--port", "0" }, {})
                         .. " 2>/dev/null")
      local first = h:read("*l")
      local url, pid = first:match("^chatmaid sandbox listening on (http://127%.0%.0%.1:%d+)"
                                   .. " pid=(%d+)$")
      assert.truthy(url, first)
      local lines = {}
      for _ = 1, 6 do lines[#lines + 1] = h:read("*l") end
      assert.are.equal("  export CHATMAID_BASE_URL=" .. url, lines[1])
      assert.are.equal("  key sk_test_sandbox_0000000000000001  (acc_sandbox; messages:send,"
                       .. "messages:write,messages:read,phone_numbers:read,account:read)",
                       lines[2])
      assert.are.equal("  key sk_test_sandbox_noscopes_00001  (acc_sandbox; no scopes)",
                       lines[5])
      assert.are.equal("Ctrl-C to stop.", lines[6])
      local out, _, code = run({ "phone", "ph_primary", "--json" },
                               { env = { CHATMAID_API_KEY = R.KEY, CHATMAID_BASE_URL = url } })
      os.execute("kill " .. pid)
      h:close()
      assert.are.equal(0, code)
      assert.are.equal("+15551230001", cjson.decode(out).phoneNumber)
    end)

    it("exits 2 for an unreadable --config", function()
      local _, err, code = run({ "sandbox", "--port", "0", "--config", "/nonexistent.json" })
      assert.are.equal(2, code)
      assert.are.equal("chatmaid usage: cannot read config: /nonexistent.json: No such file or"
                       .. " directory (see 'chatmaid sandbox --help')\n", err)
    end)
  end)
end)
