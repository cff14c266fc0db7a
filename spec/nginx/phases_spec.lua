-- SPDX-License-Identifier: MIT
-- Phases without non-blocking I/O fail with a validation error naming ngx.timer.at; timers
-- (and a client made at init time, used later) work. Plus the shared rate limiter.
local H = require "spec.nginx.harness"
local F = require "spec.support.fixtures"
local socket = require "socket"

local NAME = "chatmaid.resty phases and rate limiter #nginx"
if H.skip(NAME) then return end

describe(NAME, function()
  local srv = H.serve{
    sandbox = { rate_limit = false },
    workers = 2,
    http = [[
lua_shared_dict results 1m;
lua_shared_dict chatmaid_ratelimit 1m;
init_by_lua_block {
  -- a client made at init time (no I/O here) and used later from timers and content
  shared_client = require("chatmaid").new{ api_key = "${KEY}", base_url = "${SANDBOX}",
                                           max_retries = 0 }
}
init_worker_by_lua_block {
  local r = ngx.shared.results
  local a, err = shared_client:account()
  r:set("init_worker", a and "ok" or (err.kind .. "|" .. err.message))
  ngx.timer.at(0, function()
    local acc, terr = shared_client:account()
    r:set("timer", acc and ("ok " .. acc.name) or tostring(terr))
  end)
}
]],
    server = [[
location = /content { content_by_lua_block {
  local a, err = shared_client:account()
  ngx.say(a and ("ok " .. a.name) or tostring(err))
} }
location = /log_phase {
  content_by_lua_block { ngx.say("x") }
  log_by_lua_block {
    local _, err = shared_client:account()
    ngx.shared.results:set("log", err and (err.kind .. "|" .. err.message) or "ok")
  }
}
location = /result { content_by_lua_block {
  local v = ngx.shared.results:get(ngx.var.arg_k)
  if not v then return ngx.exit(404) end
  ngx.header.content_length = #v
  ngx.print(v)
} }
location = /take { content_by_lua_block {
  local lim = require("chatmaid.resty").rate_limiter{ shared_dict = "chatmaid_ratelimit",
    key = "spec", per_minute = 600 }
  ngx.say(string.format("W=%.3f", lim:take(1)))
} }
]],
    vars = { KEY = F.TEST_KEY },
  }

  local function result(k)
    local deadline = socket.gettime() + 5
    while socket.gettime() < deadline do
      local status, body = H.raw(srv.port, "GET", "/result?k=" .. k)
      if status == 200 then return body end
      socket.sleep(0.05)
    end
  end

  it("fails in init_worker with a validation error pointing at ngx.timer.at", function()
    local v = result("init_worker")
    assert.matches("^validation|", v)
    assert.matches("init_worker phase", v, 1, true)
    assert.matches("ngx.timer.at", v, 1, true)
  end)

  it("works from a timer, with a client made in init_by_lua", function()
    assert.equal("ok Sandbox Inc", result("timer"))
  end)

  it("works from content", function()
    local _, body = H.raw(srv.port, "GET", "/content")
    assert.matches("ok Sandbox Inc", body, 1, true)
  end)

  it("fails in the log phase with a validation error", function()
    H.raw(srv.port, "GET", "/log_phase")
    local v = result("log")
    assert.matches("^validation|", v)
    assert.matches("log phase", v, 1, true)
  end)

  it("rate limiter: concurrent takes across 2 workers get distinct slots 0.1 s apart", function()
    local args = { "--no-progress-meter --parallel --parallel-immediate --parallel-max 10" }
    for _ = 1, 10 do args[#args + 1] = H.shq(srv:url("/take")) end
    local out = H.curl(table.concat(args, " "))
    local waits = {}
    for w in out:gmatch("W=([%d%.]+)") do waits[#waits + 1] = tonumber(w) end
    table.sort(waits)
    assert.equal(10, #waits, out)
    for i = 1, 10 do
      -- slot i starts (i-1) * 0.1 s after the first; small drift from ngx.now between calls
      assert.is_true(math.abs(waits[i] - (i - 1) * 0.1) < 0.06,
                     "wait " .. i .. " = " .. waits[i] .. " (" .. out:gsub("\n", " ") .. ")")
    end
  end)
end)
