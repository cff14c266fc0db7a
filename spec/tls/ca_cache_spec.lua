-- New TLS connections reuse the parsed CA store: the client trusts one CA file (ca_file, or
-- libcurl's bundle) and no CA directory, so libcurl's per-multi CA cache applies. With
-- Debian's default CA directory set as well, every new connection parsed the ~140
-- certificates of the bundle again: 35-40 ms of CPU each, inside a task's step.
local F = require "spec.support.fixtures"
local tls_front = require "spec.support.tls_front"

describe("TLS CA store reuse #integration", function()
  local sb = F.block_sandbox({ rate_limit = false }, { reset = false })
  local front, why, bundle

  setup(function()
    front, why = tls_front.start(sb.port)
    if front then
      -- a trust store as large as the system's, plus the front's own certificate
      bundle = front.dir .. "/bundle.pem"
      local sys = io.open("/etc/ssl/certs/ca-certificates.crt", "rb")
      local out = assert(io.open(bundle, "wb"))
      if sys then out:write(sys:read("*a")); sys:close() end
      out:write(assert(io.open(front.cert, "rb")):read("*a"))
      out:close()
    end
  end)
  teardown(function()
    if front then front.stop() end
  end)

  -- n requests as tasks at once (each on its own new connection while the sandbox holds
  -- them 0.3 s) -> CPU seconds the process spent
  local function round(c, n)
    assert(sb:fault{ path = "/v1/account", type = "delay", seconds = 0.3, count = n })
    local t0 = os.clock()
    local tasks = {}
    for i = 1, n do tasks[i] = c:spawn(function() return c:account() end) end
    while c:step(0.05) > 0 do end
    local cpu = os.clock() - t0
    for i = 1, n do
      local acct, err = tasks[i]:result()
      assert(acct, tostring(err))
    end
    return cpu
  end

  it("parses a large CA bundle once per client, not once per connection", function()
    if not front then return pending("no TLS front: " .. tostring(why)) end
    local c = assert(require("chatmaid").new{ api_key = F.TEST_KEY, base_url = front.url,
                                              ca_file = bundle, timeout = 10 })
    local first = round(c, 1)        -- parses the bundle: tens of ms of CPU
    local six = round(c, 6)          -- 5 more new connections (1 kept alive)
    c:close()
    -- cached: 5 handshakes at ~2 ms; re-parsed: 5 x 35 ms, 5x the first round
    assert.is_true(six < first * 2, ("first %.1f ms, six more %.1f ms")
                                    :format(first * 1e3, six * 1e3))
  end)

  it("still verifies: a client trusting only the system CAs refuses the front", function()
    if not front then return pending("no TLS front: " .. tostring(why)) end
    local c = assert(require("chatmaid").new{ api_key = F.TEST_KEY, base_url = front.url,
                                              max_retries = 0, timeout = 10 })
    local acct, err = c:account()
    assert.is_nil(acct)
    assert.equal("transport", err.kind)
    assert.equal("tls", err.reason)
    c:close()
  end)
end)
