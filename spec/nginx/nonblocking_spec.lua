-- SPDX-License-Identifier: MIT
-- The proof of issue 7: inside nginx a send that waits 2 s on the API does not hold up the
-- worker. One worker; /send goes through the auto-selected client to a sandbox that delays
-- the send 2 s, while 20 concurrent requests to /fast are each answered within 100 ms.
local H = require "spec.nginx.harness"
local F = require "spec.support.fixtures"
local socket = require "socket"

local NAME = "chatmaid in nginx (non-blocking) #nginx"
if H.skip(NAME) then return end

local SEND = [[
  local c = assert(require("chatmaid").new{ api_key = "${KEY}", base_url = "${SANDBOX}",
                                            max_retries = 0, timeout = 10 %s })
  local t0 = ngx.now()
  local m, err = c:send{ from = "ph_primary", to = "+15557654321", content = "from nginx" }
  ngx.update_time()
  ngx.say(m and "sent" or ("error " .. tostring(err)), " ",
          tostring(c.transport.backend or "libcurl"), " ",
          string.format("%%.3f", ngx.now() - t0))
]]

describe(NAME, function()
  local ngx_srv = H.serve{
    sandbox = { rate_limit = false },
    server = table.concat({
      "location = /send { content_by_lua_block {", SEND:format(""), "} }",
      "location = /send_blocking { content_by_lua_block {",
      SEND:format(', transport = require("chatmaid.transport").new{ timeout_ms = 10000 }'),
      "} }",
      'location = /fast { content_by_lua_block { ngx.say("fast") } }',
    }, "\n"),
    vars = { KEY = F.TEST_KEY },
  }
  local tmp

  setup(function() tmp = os.tmpname() end)
  teardown(function() if tmp then os.remove(tmp) end end)

  -- Starts /path in the background, then 20 parallel GET /fast while it runs.
  -- -> per-request seconds (array), the slow request's output, whether it was still running
  --    when the 20 had all been answered.
  local function race(path)
    os.remove(tmp)
    assert(ngx_srv.sandbox:fault{ type = "delay", path = "/v1/messages/send", method = "POST",
                     seconds = 2, count = 1 })
    os.execute("curl -sS --max-time 30 -o " .. H.shq(tmp) .. " "
               .. H.shq(ngx_srv:url(path)) .. " &")
    socket.sleep(0.3)   -- the send is now waiting on the sandbox
    local args = { "--no-progress-meter --parallel --parallel-immediate --parallel-max 20"
                   .. " -w 'T=%{http_code},%{time_total}\\n'" }
    for _ = 1, 20 do
      args[#args + 1] = "-o /dev/null " .. H.shq(ngx_srv:url("/fast"))
    end
    local out = H.curl(table.concat(args, " "))
    local during = H.read(tmp) == ""
    local times = {}
    for code, t in out:gmatch("T=(%d+),([%d%.]+)") do
      assert.equal("200", code, out)
      times[#times + 1] = tonumber(t)
    end
    local deadline = socket.gettime() + 15
    while H.read(tmp) == "" and socket.gettime() < deadline do socket.sleep(0.05) end
    return times, H.read(tmp), during
  end

  it("answers 20 concurrent requests within 100 ms each while a send waits 2 s", function()
    local times, send_out, during = race("/send")
    table.sort(times)
    io.stderr:write(string.format("\n[nginx proof] /fast x%d during a 2 s send: min %.1f ms, "
      .. "median %.1f ms, max %.1f ms; send: %s\n", #times, times[1] * 1000,
      times[math.ceil(#times / 2)] * 1000, times[#times] * 1000, send_out:gsub("\n", "")))
    assert.equal(20, #times)
    for i, t in ipairs(times) do
      assert.is_true(t < 0.1, "request " .. i .. " took " .. t .. " s")
    end
    assert.is_true(during, "the send had already finished: nothing was proven")
    local status, backend, elapsed = send_out:match("^(%S+) (%S+) ([%d%.]+)")
    assert.equal("sent", status, send_out .. "\n" .. ngx_srv:error_log())
    assert.equal("cosocket", backend)
    assert.is_true(tonumber(elapsed) >= 1.9, "send took " .. elapsed .. " s")
  end)

  it("(control) the same race with the blocking libcurl transport stalls the worker", function()
    local times, send_out = race("/send_blocking")
    table.sort(times)
    io.stderr:write(string.format("[nginx control] blocking transport: /fast max %.1f ms\n",
                                  times[#times] * 1000))
    assert.matches("^sent libcurl", send_out)
    assert.is_true(times[#times] > 1, "the control did not block: the race proves nothing")
  end)
end)
