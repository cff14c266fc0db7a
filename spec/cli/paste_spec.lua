-- SPDX-License-Identifier: MIT
-- Issue 14's CLI items: messages --environment; `chatmaid sandbox` takes every option of
-- chatmaid-sandbox (one definition); webhook verify hints at an unsigned trailing newline;
-- hints in command-line words.
local cjson = require "cjson"
local webhook = require "chatmaid.webhook"
local sbcli = require "chatmaid.sandbox.cli"
local R = require "spec.cli.run"
local F = require "spec.support.fixtures"

local run = R.run

describe("chatmaid CLI (issue 14) #cli", function()
  local sb = F.block_sandbox({ rate_limit = false }, { reset = false })
  local env
  setup(function() env = R.env(sb, R.LIVE) end)

  describe("messages --environment", function()
    it("filters test or live messages (default: the key's environment)", function()
      assert(sb:reset())
      assert(sb:seed{ count = 2, environment = "test" })
      assert(sb:seed{ count = 3, environment = "live" })
      local function envs(extra)
        local args = { "messages", "--json" }
        for _, a in ipairs(extra) do args[#args + 1] = a end
        local out, err, code = run(args, { env = env })
        assert.are.equal(0, code, err)
        local seen = {}
        for _, l in ipairs(R.lines(out)) do
          local e = cjson.decode(l).environment
          seen[e] = (seen[e] or 0) + 1
        end
        return seen
      end
      assert.are.same({ test = 2 }, envs{ "--environment", "test" })
      assert.are.same({ live = 3 }, envs{ "--environment", "live" })
      assert.are.same({ live = 3 }, envs{})                        -- a live key's default
      assert.are.same({ test = 2 }, envs{ "--environment", "test", "--all" })
      local _, err, code = run({ "messages", "--environment", "prod" }, { env = env })
      assert.are.equal(2, code)
      assert.truthy(err:find("--environment", 1, true))
    end)
  end)

  describe("sandbox", function()
    it("takes every option chatmaid-sandbox takes (the same definition)", function()
      local help = run({ "sandbox", "--help" })
      local ph = io.popen(R.quote(R.LUA) .. " " .. R.quote(R.root .. "bin/chatmaid-sandbox")
                          .. " --help")
      local bin_help = ph:read("*a")
      ph:close()
      assert.are.equal(sbcli.usage(), bin_help)
      for _, o in ipairs(sbcli.OPTIONS) do
        assert.truthy(help:find(o[1], 1, true), o[1] .. " missing from chatmaid sandbox --help")
        assert.truthy(bin_help:find(o[1], 1, true), o[1])
      end
    end)

    it("applies them: a sandbox started with all options answers as configured", function()
      local cfg = R.write(os.tmpname() .. ".lua", "return { live_delay = 7 }")
      local h = io.popen("exec " .. R.command({ "sandbox", "--port", "0", "--config", cfg,
        "--control", "--time-factor", "0.5", "--live-delay", "3", "--rate-limit", "off",
        "--webhook-url", "http://127.0.0.1:9/hook", "--webhook-secret", "whsec_x",
        "--verbose" }, {}) .. " 2>/dev/null & echo $!")
      -- (not --exit-with-parent here: the shell that started it exits at once; parse() and
      -- from_args() are checked on it below)
      -- the shell's pid line and the sandbox's first line race on the pipe: tell them apart
      local pid, url, first
      for _ = 1, 2 do
        local line = h:read("*l")
        if not line then break end
        local u = line:match("listening on (http://127%.0%.0%.1:%d+)")
        if u then url, first = u, line elseif line:match("^%d+$") then pid = line
        else first = line end
      end
      finally(function()
        if pid then os.execute("kill " .. pid .. " 2>/dev/null") end
        h:close()
        os.remove(cfg)
      end)
      assert.truthy(url, tostring(first))
      -- --control: the control endpoints answer; POST /__sandbox/config {} reports the config
      -- (through the core's libcurl, not the curl program: under `make asan` a child curl
      -- inherits LD_PRELOAD's sanitizer runtime and can deadlock before it connects)
      local session = require("chatmaid.core").session{ timeout_ms = 10000 }
      local status, out = session:request("POST", url .. "/__sandbox/config",
        { "Content-Type: application/json", "X-Chatmaid-Sandbox: 1" }, "{}", 10000)
      session:close()
      assert.are.equal(200, status, tostring(out))
      local c = cjson.decode(out).data
      assert.are.equal(false, c.rate_limit)
      assert.are.equal(3, c.live_delay)           -- the flag over the config file's 7
      assert.are.equal(0.5, c.time_factor)
      assert.are.equal("http://127.0.0.1:9/hook", c.webhook.url)
    end)

    it("refuses a bad value the way chatmaid-sandbox does, exit 2", function()
      local _, err, code = run({ "sandbox", "--port", "0", "--time-factor", "fast" })
      assert.are.equal(2, code)
      assert.truthy(err:find("--time-factor needs a number, got 'fast'", 1, true), err)
      local bad = io.popen(R.quote(R.LUA) .. " " .. R.quote(R.root .. "bin/chatmaid-sandbox")
                           .. " --time-factor fast 2>&1; echo rc=$?"):read("*a")
      assert.truthy(bad:find("--time-factor needs a number, got 'fast'", 1, true), bad)
      assert.truthy(bad:find("rc=2", 1, true))
    end)

    it("parse() and from_args() agree on every option", function()
      local argv = { "--port=0", "--control", "--rate-limit", "off", "--live-delay", "1",
                     "-v", "--webhook-secret", "s", "--exit-with-parent" }
      local a = assert(sbcli.parse(argv))
      local b = assert(sbcli.from_args{ sandbox_port = "0", sandbox_control = true,
        sandbox_rate_limit = "off", sandbox_live_delay = "1", sandbox_verbose = true,
        sandbox_webhook_secret = "s", sandbox_exit_with_parent = true })
      assert.is_true(a.exit_with_parent)
      assert.are.same(a, b)
      assert.are.same({ nil, "unknown option --nope" }, { sbcli.parse{ "--nope" } })
      assert.are.same({ nil, "--port needs a value" }, { sbcli.parse{ "--port" } })
    end)
  end)

  describe("webhook verify", function()
    local SECRET = "whsec_sandbox_0000000000000000"
    local BODY = '{"event":"message.sent","data":{"messageId":"msg_1"}}'

    it("hints when the body file ends with a newline the sender did not sign", function()
      for _, nl in ipairs{ "\n", "\r\n" } do
        local _, err, code = run({ "webhook", "verify", "--secret-env", "S", "--header",
                                   webhook.sign(BODY, SECRET) },
                                 { env = { S = SECRET }, stdin = BODY .. nl })
        assert.are.equal(3, code)
        assert.truthy(err:find("[reason: mismatch]", 1, true))
        assert.truthy(err:find("hint: the body ends with a newline the sender did not sign",
                               1, true), err)
      end
    end)

    it("no hint when the newline is not the problem", function()
      local _, err, code = run({ "webhook", "verify", "--secret-env", "S", "--header",
                                 webhook.sign(BODY, "whsec_other") },
                               { env = { S = SECRET }, stdin = BODY .. "\n" })
      assert.are.equal(3, code)
      assert.falsy(err:find("hint", 1, true))
    end)
  end)

  describe("hints in command-line words", function()
    it("from is required: says --from, not from = ...", function()
      -- two connected phones: the library cannot pick a sender
      assert(sb:set_phone_state("ph_backup", "connected"))
      finally(function() sb:set_phone_state("ph_backup", "disconnected") end)
      local _, err, code = run({ "send", "--to", "+15557654321", "--content", "hi" },
                               { env = env })
      assert.are.equal(2, code)
      assert.truthy(err:find("--from is required", 1, true), err)
      assert.truthy(err:find("pass --from <phone id or E.164 number>", 1, true), err)
      assert.falsy(err:find("from =", 1, true))
      assert.falsy(err:find("default_from", 1, true))
    end)

    it("validation problems are led by their flags", function()
      local _, err, code = run({ "send", "--from", "ph_primary", "--to", "5557654321",
                                 "--media", "http://x/a.png" }, { env = env })
      assert.are.equal(2, code)
      assert.truthy(err:find("chatmaid validation: --to must be in E.164 format", 1, true), err)
      assert.truthy(err:find("; --media[1] must be a public https:// URL", 1, true), err)
    end)

    it("no API key: names CHATMAID_API_KEY and --api-key", function()
      local _, err, code = run({ "account" }, { env = { CHATMAID_API_KEY = false,
                                                        CHATMAID_BASE_URL = sb.url } })
      assert.are.equal(2, code)
      assert.truthy(err:find("no API key: set CHATMAID_API_KEY (or pass --api-key)", 1, true),
                    err)
    end)
  end)
end)
