-- SPDX-License-Identifier: MIT
-- Issue 25 item 4, papercuts users found, each against the real sandbox: an unknown sender
-- names the phone and what to do; a base URL ending in /v1 works, a wrong base path says what
-- was configured; a wrong webhook secret says the secret may be wrong (and where it comes
-- from, never what it is); the ETA under --rate follows the rate limit; public IPv6 media
-- hosts are accepted and ports past 65535 refused, by the client and the sandbox alike.
local socket = require "socket"
local chatmaid = require "chatmaid"
local webhook = require "chatmaid.webhook"
local F = require "spec.support.fixtures"
local R = require "spec.cli.run"

local HINT = "; pass from = one of the account's phone ids or numbers: list them with "
             .. "client:phone_numbers() (CLI: chatmaid phones)"

describe("papercuts #integration", function()
  local sb = F.block_sandbox{ rate_limit = false }

  local function requests(path)
    return (sb:stats().byPath or {})[path] or 0
  end

  describe("an unknown sender", function()
    it("names the phone id that was not found and how to list the account's phones", function()
      local c = F.client(sb)
      local m, err = c:send{ from = "ph_nope", to = "+15557654321", content = "hi" }
      assert.is_nil(m)
      assert.equal("not_found", err.kind)
      assert.equal("sender_phone", err.resource)
      assert.equal("ph_nope", err.resource_id)
      assert.equal("sender ph_nope was not found in this account (the API said: Phone number "
                   .. "not found)" .. HINT, err.message)
      -- the same through default_from, and in send_batch's item results
      c = F.client(sb, { default_from = "ph_gone" })
      local _, e2 = c:send{ to = "+15557654321", content = "hi" }
      assert.truthy(e2.message:find("^sender ph_gone was not found in this account"), e2.message)
    end)

    it("says it in command-line words in the CLI", function()
      local _, err, code = R.run({ "send", "--from", "ph_nope", "--to", "+15557654321",
                                   "--content", "hi" }, { env = R.env(sb) })
      assert.are_not.equal(0, code)
      assert.truthy(err:find("sender ph_nope was not found in this account", 1, true), err)
      assert.truthy(err:find("pass --from with one of the account's phone ids or numbers: list "
                             .. "them with `chatmaid phones`", 1, true), err)
    end)
  end)

  describe("the base URL", function()
    it("may end in /v1 (or /v1/): taken as the API's root, and reported as such", function()
      for _, suffix in ipairs{ "/v1", "/v1/" } do
        local c = assert(chatmaid.new{ api_key = F.TEST_KEY, base_url = sb.url .. suffix })
        assert.equal(sb.url, c.base_url)
        assert.truthy(tostring(c):find("(test, " .. sb.url .. ")", 1, true), tostring(c))
        local before = requests("GET /v1/account")
        assert.truthy(c:account())
        assert.equal(before + 1, requests("GET /v1/account"))
      end
      -- a path that merely ends in v1 is left alone
      local c = assert(chatmaid.new{ api_key = F.TEST_KEY, base_url = sb.url .. "/xv1" })
      assert.equal(sb.url .. "/xv1", c.base_url)
    end)

    it("with a wrong path says what was configured and what it must be", function()
      local c = assert(chatmaid.new{ api_key = F.TEST_KEY, base_url = sb.url .. "/api" })
      local v, err = c:account()
      assert.is_nil(v)
      assert.equal("not_found", err.kind)
      assert.equal("Cannot GET /api/v1/account: the server has no such route; check base_url ("
                   .. sb.url .. "/api): it must be the API's root URL, such as "
                   .. "https://developers-api.chatmaid.net", err.message)
      -- and a send to it is not blamed on the sender
      local _, serr = c:send{ from = "ph_primary", to = "+15557654321", content = "hi" }
      assert.truthy(serr.message:find("^Cannot POST /api/v1/messages/send: the server has no "
                                      .. "such route; check base_url"), serr.message)
    end)
  end)

  describe("media URLs", function()
    local function raw_send(media)
      return sb:request("POST", "/v1/messages/send",
        { fromPhoneId = "ph_primary", to = "+15557654321", content = "pic",
          mediaUrls = { media } }, { Authorization = "Bearer " .. F.TEST_KEY })
    end

    it("with a public IPv6 literal host are accepted by the sandbox and the client", function()
      for _, u in ipairs{ "https://[2606:4700:4700::1111]/a.jpg",
                          "https://[2606:4700:4700::1111]:8443/a.jpg" } do
        local status, body = raw_send(u)
        assert.equal(201, status, u)
        assert.same({ u }, body.data.mediaUrls)
        local m, err = F.client(sb):send{ from = "ph_primary", to = "+15557654321",
                                          media_urls = { u } }
        assert.truthy(m, tostring(err))
      end
      -- private IPv6 hosts stay refused, as private IPv4 ones are
      for _, u in ipairs{ "https://[::1]/a.jpg", "https://[fd00::1]/a.jpg",
                          "https://[fe80::1]/a.jpg", "https://[::ffff:10.0.0.1]/a.jpg" } do
        local status, body = raw_send(u)
        assert.equal(400, status, u)
        assert.same({ "each value in mediaUrls must be a public HTTPS URL" }, body.message)
      end
    end)

    it("with a port past 65535 are refused by the sandbox, and by the client before sending",
       function()
      local u = "https://example.com:99999/a.jpg"
      local status, body = raw_send(u)
      assert.equal(400, status)
      assert.same({ "each value in mediaUrls must be a public HTTPS URL" }, body.message)
      local before = requests("POST /v1/messages/send")
      local m, err = F.client(sb):send{ from = "ph_primary", to = "+15557654321",
                                        media_urls = { "https://example.com/ok.jpg", u } }
      assert.is_nil(m)
      assert.equal("validation", err.kind)
      assert.equal("media_urls[2] has an invalid port (99999): a port is 1 to 65535; got "
                   .. '"https://example.com:99999/a.jpg"', err.fields[1].message)
      assert.equal(before, requests("POST /v1/messages/send"))   -- nothing sent
      assert.equal(201, (raw_send("https://example.com:65535/a.jpg")))
    end)
  end)
end)

describe("a wrong webhook secret #integration", function()
  local server
  local SECRET = "whsec_papercut_" .. tostring(os.time())
  local WRONG = "whsec_not_the_one_0001"
  local sb = F.block_sandbox({ rate_limit = false, time_factor = 0.001 }, { reset = false })

  setup(function()
    server = assert(socket.bind("127.0.0.1", 0))
    local _, port = server:getsockname()
    assert(sb:config{ webhook = { url = "http://127.0.0.1:" .. port .. "/hooks",
                                  secret = SECRET } })
  end)
  teardown(function() if server then server:close() end end)

  -- one delivery from the sandbox: the raw body and the signature header
  local function delivery()
    local status = sb:request("POST", "/v1/messages/send",
      { to = "+15557654321", content = "hook", fromPhoneId = "ph_primary" },
      { Authorization = "Bearer " .. F.TEST_KEY })
    assert.equal(201, status)
    server:settimeout(10)
    local c = assert(server:accept())
    c:settimeout(5)
    c:receive("*l")
    local headers = {}
    while true do
      local h = c:receive("*l")
      if not h or h == "" then break end
      local k, v = h:match("^([^:]+):%s*(.-)%s*$")
      headers[k:lower()] = v
    end
    local body = c:receive(tonumber(headers["content-length"]))
    c:send("HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
    c:close()
    return body, headers["x-chatmaid-signature"]
  end

  it("says the secret may be wrong and where it comes from, never what it is", function()
    local body, sig = delivery()
    assert.truthy(webhook.construct_event(body, sig, SECRET))
    local ev, err = webhook.construct_event(body, sig, WRONG)
    assert.is_nil(ev)
    assert.equal("mismatch", err.reason)
    assert.truthy(err.message:find("no signature matches the payload: the secret (the secret "
      .. "argument of webhook.construct_event) may not be the one the sender signs with", 1,
      true), err.message)
    ev, err = webhook.construct_event(body, sig, { WRONG, "whsec_also_wrong" },
                                      { secret_name = "MY_HOOK_SECRETS" })
    assert.is_nil(ev)
    assert.truthy(err.message:find("the 2 secrets (MY_HOOK_SECRETS) may all differ from the "
                                   .. "one the sender signs with", 1, true), err.message)
    -- the CLI names the variables it read
    local _, stderr, code = R.run({ "webhook", "verify", "--secret-env", "PAPERCUT_SECRET",
                                    "--header", sig }, { stdin = body,
                                    env = { PAPERCUT_SECRET = WRONG } })
    assert.equal(3, code)
    assert.truthy(stderr:find("the secret ($PAPERCUT_SECRET, from --secret-env) may not be the "
                              .. "one the sender signs with", 1, true), stderr)
    for _, text in ipairs{ err.message, tostring(err), stderr } do
      assert.is_nil(text:find(WRONG, 1, true))
      assert.is_nil(text:find(SECRET, 1, true))
    end
  end)
end)

describe("the batch progress ETA under --rate #integration", function()
  local sb = F.block_sandbox{ rate_limit = false }
  local dir

  setup(function()
    dir = os.tmpname()
    os.remove(dir)
    assert(os.execute("mkdir -p " .. R.quote(dir)))
  end)
  teardown(function() os.execute("rm -rf " .. R.quote(dir)) end)

  it("follows the rate limit, not the pace of the first burst", function()
    -- 3 rows at 1 per minute: the first goes at once, the rest wait a window each. The ETA
    -- after the first row is about two windows (2 x 61 s), not the burst's "0s".
    local file = R.write(dir .. "/rows.csv", "to,content\n+15558000001,a\n+15558000002,b\n"
                                             .. "+15558000003,c\n")
    local cmd = R.command({ "batch", file, "--from", "ph_primary", "--out", dir .. "/out.jsonl",
                            "--rate", "1", "--concurrency", "1" }, R.env(sb))
                .. " 2>" .. R.quote(dir .. "/stderr")
    local h = io.popen("sh -c " .. R.quote("sh -c " .. R.quote("echo $$; exec " .. cmd)
                                           .. " & wait $!; echo \"=$?\""))
    local pid = assert(tonumber(h:read("*l")))
    local deadline = socket.gettime() + 15
    while sb:stats().messagesCreated < 1 and socket.gettime() < deadline do socket.sleep(0.02) end
    socket.sleep(0.3)                 -- it is now waiting for the rate window
    os.execute("kill -INT " .. pid)
    local code = tonumber(h:read("*a"):match("=(%d+)"))
    h:close()
    assert.equal(130, code)
    local err = R.read(dir .. "/stderr")
    local eta = err:match("batch: 1/3 %(33%%%) [%d.]+/s ETA (%S+)\n")
    assert.truthy(eta, err)
    local m, s = eta:match("^(%d+)m(%d+)s$")
    local secs = m and (tonumber(m) * 60 + tonumber(s))
    assert.truthy(secs and secs >= 115 and secs <= 125, "ETA " .. eta .. ":\n" .. err)
  end)
end)
