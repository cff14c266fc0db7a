-- SPDX-License-Identifier: MIT
-- chatmaid webhook verify | sign as a child process: raw stdin, secrets from env, exit 3.
local cjson = require "cjson"
local webhook = require "chatmaid.webhook"
local R = require "spec.cli.run"

local SECRET = "whsec_sandbox_0000000000000000"
local OTHER = "whsec_other_secret_1111111111"
local ENV = { WH_SECRET = SECRET, WH_OLD = OTHER }
local BODY = '{"event":"message.sent","timestamp":"2026-01-01T00:00:00.000Z",'
             .. '"data":{"messageId":"msg_1","status":"sent"}}'

local function verify(header, body, extra)
  local args = { "webhook", "verify", "--secret-env", "WH_SECRET", "--header", header }
  for _, a in ipairs(extra or {}) do args[#args + 1] = a end
  return R.run(args, { env = ENV, stdin = body })
end

describe("chatmaid webhook", function()
  it("verify prints the verified body and exits 0", function()
    local out, err, code = verify(webhook.sign(BODY, SECRET), BODY)
    assert.are.equal(0, code)
    assert.are.equal("", err)
    assert.are.equal(BODY .. "\n", out)
    assert.are.equal("msg_1", cjson.decode(out).data.messageId)
  end)

  it("verify reads stdin byte for byte (CRLF, trailing newline, UTF-8)", function()
    local body = '{"event":"message.sent",\r\n "data":{"content":"caf\195\169 \240\159\152\128"}}\n'
    local out, _, code = verify(webhook.sign(body, SECRET), body)
    assert.are.equal(0, code)
    assert.are.equal(body, out)
  end)

  it("verify accepts any of several secrets (rotation)", function()
    local _, _, code = R.run({ "webhook", "verify", "--secret-env", "WH_OLD", "--secret-env",
                               "WH_SECRET", "--header", webhook.sign(BODY, SECRET) },
                             { env = ENV, stdin = BODY })
    assert.are.equal(0, code)
  end)

  it("verify exits 3 with the reason for a changed body", function()
    local out, err, code = verify(webhook.sign(BODY, SECRET), BODY .. " ")
    assert.are.equal(3, code)
    assert.are.equal("", out)
    assert.are.equal("chatmaid signature: no signature matches the payload: ", err:sub(1, 54))
    assert.are.equal(" [reason: mismatch]\n", err:sub(-20))
    assert.is_nil(err:find(SECRET, 1, true))
  end)

  it("verify exits 3 for an old timestamp, honouring --tolerance", function()
    local header = webhook.sign(BODY, SECRET, os.time() - 1000)
    local _, err, code = verify(header, BODY)
    assert.are.equal(3, code)
    assert.are.equal(" [reason: timestamp_out_of_tolerance]\n", err:sub(-38))
    local _, _, code2 = verify(header, BODY, { "--tolerance", "2000" })
    assert.are.equal(0, code2)
  end)

  it("verify exits 3 for a malformed header", function()
    local _, err, code = verify("v1=abc", BODY)
    assert.are.equal(3, code)
    assert.are.equal("chatmaid signature: malformed signature header: t is missing (expected"
                     .. " \"t=<unix seconds>,v1=<hex>\") [reason: malformed_header]\n", err)
  end)

  it("exits 2 when the secret variable is not set", function()
    local _, err, code = R.run({ "webhook", "verify", "--secret-env", "WH_MISSING", "--header",
                                 "t=1,v1=00" }, { env = ENV, stdin = BODY })
    assert.are.equal(2, code)
    assert.are.equal("chatmaid usage: environment variable WH_MISSING (--secret-env) is not set"
                     .. " or empty (see 'chatmaid webhook verify --help')\n", err)
  end)

  it("sign prints the header for stdin (fixed --timestamp), --json as a document", function()
    local out, err, code = R.run({ "webhook", "sign", "--secret-env", "WH_SECRET",
                                   "--timestamp", "1767225600" }, { env = ENV, stdin = BODY })
    assert.are.equal(0, code)
    assert.are.equal("", err)
    assert.are.equal(webhook.sign(BODY, SECRET, 1767225600) .. "\n", out)
    local j = cjson.decode((R.run({ "webhook", "sign", "--secret-env", "WH_SECRET",
                                    "--timestamp", "1767225600", "--json" },
                                  { env = ENV, stdin = BODY })))
    assert.are.equal(1767225600, j.timestamp)
    assert.are.equal(webhook.sign(BODY, SECRET, 1767225600), j.header)
    assert.is_nil(out:find(SECRET, 1, true))
  end)

  it("sign then verify round-trips through the CLI", function()
    local header = R.run({ "webhook", "sign", "--secret-env", "WH_SECRET" },
                         { env = ENV, stdin = BODY })
    local _, _, code = verify((header:gsub("\n$", "")), BODY)
    assert.are.equal(0, code)
  end)
end)
