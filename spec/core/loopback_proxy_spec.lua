-- Loopback never goes through a proxy (issue 13 item 7): plain http is allowed only to
-- loopback, and a proxy would read the API key in clear text. The "proxy" here is a raw
-- server on 127.0.0.1 that logs what it receives and answers 502.
local F = require "spec.support.fixtures"
local core = require "chatmaid.core"
local raw_script = require "spec.support.raw_script"

local PROXY = [[
  while true do
    local line, h = read()
    if not line then return end
    log(line .. " | " .. tostring(h.authorization))
    c:send("HTTP/1.1 502 Bad Gateway\r\nContent-Length: 0\r\n\r\n")
  end
]]

describe("loopback and proxies #integration", function()
  local sb = F.block_sandbox({ rate_limit = false }, { reset = false })
  local proxy
  before_each(function() proxy = raw_script.start(PROXY) end)
  after_each(function() proxy:stop() end)

  local function account_through(base_url)
    local c = assert(require("chatmaid").new{ api_key = F.TEST_KEY, base_url = base_url,
                                              proxy = proxy.url, max_retries = 0 })
    local acc, err = c:account()
    c:close()
    return acc, err
  end

  it("the proxy option is ignored for 127.0.0.1", function()
    local acc, err = account_through(sb.url)
    assert.is_nil(err)
    assert.is_table(acc)
    assert.same({}, proxy:log())
  end)

  it("the proxy option is ignored for localhost", function()
    local acc, err = account_through("http://localhost:" .. sb.port)
    assert.is_nil(err)
    assert.is_table(acc)
    assert.same({}, proxy:log())
  end)

  it("every spelling of 127.0.0.0/8 bypasses it (core session)", function()
    local s = core.session{ proxy = proxy.url, raw_headers = true }
    for _, host in ipairs{ "127.0.0.1", "127.1", "0x7f.1", "2130706433",
                           "LOCALHOST", "user@127.0.0.1" } do
      local status, body = s:request("GET", "http://" .. host .. ":" .. sb.port
                                     .. "/v1/account", { "Authorization: Bearer " .. F.TEST_KEY })
      assert.equal(200, status, host .. ": " .. tostring(body))
    end
    s:close()
    assert.same({}, proxy:log())
  end)

  it("a non-loopback host still goes through the proxy option", function()
    local s = core.session{ proxy = proxy.url }
    local status = s:request("GET", "http://api.chatmaid.invalid/v1/account", {})
    s:close()
    assert.equal(502, status)
    assert.same({ "GET http://api.chatmaid.invalid/v1/account HTTP/1.1 | nil" }, proxy:log())
  end)

  it("http_proxy, HTTPS_PROXY and ALL_PROXY in the environment are ignored for loopback",
    function()
    local lua = os.getenv("CHATMAID_LUA") or "lua5.4"
    local script = os.tmpname()
    local f = assert(io.open(script, "w"))
    f:write(string.format([[
      package.path = "lua/?.lua;lua/?/init.lua;" .. package.path
      package.cpath = %q .. ";" .. package.cpath
      local c = assert(require("chatmaid").new{ api_key = %q, base_url = %q, max_retries = 0 })
      local acc, err = c:account()
      io.write(acc and "ok" or tostring(err))
    ]], package.cpath:match("^[^;]+"), F.TEST_KEY, sb.url))
    f:close()
    local env = "http_proxy=" .. proxy.url .. " HTTP_PROXY=" .. proxy.url .. " HTTPS_PROXY="
                .. proxy.url .. " ALL_PROXY=" .. proxy.url .. " all_proxy=" .. proxy.url
                .. " NO_PROXY= no_proxy="
    local p = assert(io.popen(env .. " " .. lua .. " " .. script .. " 2>&1"))
    local out = p:read("*a")
    p:close()
    os.remove(script)
    assert.equal("ok", out)
    assert.same({}, proxy:log())
  end)
end)
