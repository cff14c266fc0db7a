-- fork() (issue 13 item 3): a process that used a client forks, and parent and child use
-- that client at the same time. Each must get its own answers: the child starts fresh
-- handles (abandoning the parent's, untouched), and the parent keeps its connection.
local F = require "spec.support.fixtures"
local host = require "spec.support.host"

describe("a client used across fork() #integration", function()
  local sb
  setup(function() sb = F.sandbox{ rate_limit = false } end)
  teardown(function() sb:stop() end)

  it("gives parent and child their own answers; the parent keeps its connection", function()
    local out, code = host.run("spec/host/fork.lua", { sb.url, 30 })
    assert.equal(0, code, out)
    assert.truthy(out:find("child ok", 1, true), out)
    assert.truthy(out:find("parent ok", 1, true), out)
  end)
end)
