-- SPDX-License-Identifier: MIT
-- Issue 13 item 10: --rate 0 turns the limiter off; out-of-range numbers are usage errors
-- (exit 2); text from the network never reaches the terminal with its control characters.
local R = require "spec.cli.run"
local F = require "spec.support.fixtures"
local raw_server = require "spec.support.raw_server"

local HOSTILE = "pwn\027]0;owned\007\027[2J\027[31mred\194\155\0631h\r\nnext\127"

local function has_controls(s)
  return s:find("[%z\1-\8\11-\31\127]") ~= nil or s:find("\194[\128-\159]") ~= nil
end

local function raw(status, body)
  local file = os.tmpname()
  R.write(file, "HTTP/1.1 " .. status .. " X\r\nContent-Type: application/json\r\n"
          .. "Content-Length: " .. #body .. "\r\n\r\n" .. body)
  local srv = raw_server.start(file)
  srv.file = file
  return srv, { CHATMAID_API_KEY = R.KEY, CHATMAID_BASE_URL = srv.url }
end

local function stop(srv)
  srv:stop()
  os.remove(srv.file)
end

describe("chatmaid CLI hardening", function()
  describe("number options", function()
    local env = { CHATMAID_API_KEY = R.KEY, CHATMAID_BASE_URL = "http://127.0.0.1:1" }
    local cases = {
      { "--timeout", "1e9", { "account" } },
      { "--timeout", "1e400", { "account" } },
      { "--timeout", "86401", { "account" } },
      { "--max-retries", "1e9", { "account" } },
      { "--rate", "1e99", { "batch", "/dev/null" } },
      { "--concurrency", "1e9", { "batch", "/dev/null" } },
      { "--limit", "1e300", { "messages" } },
      { "--timeout", "1e9", { "wait", "msg_1" } },
      { "--interval", "1e9", { "wait", "msg_1" } },
    }
    for _, case in ipairs(cases) do
      it(table.concat(case[3], " ") .. " " .. case[1] .. " " .. case[2]
         .. " is a usage error (exit 2)", function()
        local args = {}
        for i, a in ipairs(case[3]) do args[i] = a end
        args[#args + 1] = case[1]
        args[#args + 1] = case[2]
        local _, err, code = R.run(args, { env = env })
        assert.equal(2, code)
        assert.truthy(err:find("chatmaid usage:", 1, true), err)
        assert.falsy(err:find("internal error", 1, true), err)
      end)
    end

    it("--timeout 86400 is accepted", function()
      local _, err, code = R.run({ "account", "--timeout", "86400", "--max-retries", "0" },
                                 { env = env })
      assert.equal(1, code)
      assert.truthy(err:find("could not connect", 1, true), err)
    end)
  end)

  describe("batch --rate 0", function()
    local sb = F.block_sandbox({ rate_limit = false }, { reset = false })

    it("turns the limiter off and sends", function()
      local file = os.tmpname()
      R.write(file, "to,content\n+15557100001,one\n+15557100002,two\n")
      local out, err, code = R.run({ "batch", file, "--from", "ph_primary", "--rate", "0" },
                                   { env = R.env(sb) })
      os.remove(file)
      assert.equal(0, code, err)
      assert.falsy(err:find("internal error", 1, true), err)
      assert.equal(2, #R.lines(out))
      assert.equal(2, sb:stats().messagesCreated)
    end)
  end)

  describe("control characters from the network", function()
    it("are escaped in an error message", function()
      local body = require("cjson").encode{ success = false, error = "Bad Request",
                                            message = { HOSTILE }, statusCode = 400 }
      local srv, env = raw(400, body)
      local out, err, code = R.run({ "account" }, { env = env })
      stop(srv)
      assert.equal(1, code)
      assert.equal("", out)
      assert.falsy(has_controls(err:sub(1, -2)), err)
      assert.truthy(err:find("pwn\\x1B]0;owned\\x07\\x1B[2J\\x1B[31mred\\u009B?1h next\\x7F",
                             1, true), err)
    end)

    it("are escaped in values and keys, as text and as JSON, on a terminal too", function()
      local body = require("cjson").encode{ success = true, data = {
        name = HOSTILE, ["k\027[2Jey"] = "v", email = "a@b.c" } }
      local srv, env = raw(200, body)
      local out, err, code = R.run({ "account" }, { env = env })
      assert.equal(0, code, err)
      assert.falsy(has_controls((out:gsub("\n", ""))), out)
      assert.truthy(out:find("pwn\\x1B]0;owned", 1, true), out)
      assert.truthy(out:find("k\\x1B[2Jey", 1, true), out)
      local js
      js, err, code = R.run({ "account", "--json" }, { env = env })
      assert.equal(0, code, err)
      assert.falsy(has_controls((js:gsub("\n$", ""))), js)
      assert.equal(HOSTILE, require("cjson").decode(js).name)
      local tty
      tty, code = R.pty({ "account" }, env)
      stop(srv)
      assert.equal(0, code)
      assert.falsy(tty:find("\027", 1, true), tty)
    end)
  end)
end)
