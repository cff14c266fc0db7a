-- Many lua_States on many threads (issue 13 item 9, issue 16): 8 threads of one process
-- each load chatmaid into their own state at the same moment (global init through
-- pthread_once), make their own client and real requests, and check every answer.
local F = require "spec.support.fixtures"
local host = require "spec.support.host"

describe("chatmaid on 8 threads of one process #integration", function()
  local sb = F.block_sandbox({ rate_limit = false }, { reset = false })

  it("loads and works in 8 lua_States at once; every thread gets its own answers", function()
    local out, code = host.run("spec/host/threads.lua", { sb.url, 15 }, 8)
    assert.equal(0, code, out)
    for t = 1, 8 do assert.truthy(out:find("thread " .. t .. " ok", 1, true), out) end
    assert.equal(8 * 15, sb:stats().byPath["POST /v1/messages/send"])
  end)
end)
