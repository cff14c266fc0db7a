-- fork() with a chatmaid.redis connection open: parent and child each get their own
-- answers (the child reconnects; the parent's connection survives the child's exit).
local host = require "spec.support.host"
local rh = require "spec.support.redis_helper"

describe("a Redis connection used across fork() #integration #redis", function()
  local srv = rh.serve()

  it("gives parent and child their own answers; the parent keeps its connection", function()
    local out, code = host.run("spec/host/redis_fork.lua", { srv.url, 200 })
    assert.equal(0, code, out)
    assert.truthy(out:find("child ok", 1, true), out)
    assert.truthy(out:find("parent ok", 1, true), out)
    -- two connections in all: the parent's (kept) and the child's
    local clients = srv:cli("INFO", "stats"):match("total_connections_received:(%d+)")
    assert.truthy(tonumber(clients) <= 4, clients)
  end)
end)
