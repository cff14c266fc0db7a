-- SPDX-License-Identifier: MIT
-- chatmaid.redis inside nginx after a failover behind one address (issue 23, item 7): the
-- cosocket pool's connections to the old primary answer READONLY; each is closed and the
-- command retried, so the request that meets the failover already succeeds on the new one.
local H = require "spec.nginx.harness"
local rh = require "spec.support.redis_helper"
local faults = require "spec.support.redis_faults"

local NAME = "chatmaid.redis inside nginx: failover #nginx #redis"
if H.skip(NAME, H.redis_ready) then return end

-- SET key NX through chatmaid.redis.conn: "set", "exists" or the failure's reason
local SETNX = [[
  local conn = require "chatmaid.redis.conn"
  local c = conn.new{ url = "${REDIS}" }
  local r, err = c:call{ "SET", ngx.var.arg_k, "1", "NX" }
  local out = r == "OK" and "set" or r == false and "exists" or err.reason
  ngx.header.content_length = #out
  ngx.print(out)
]]

describe(NAME, function()
  local a, b, vip
  setup(function()
    a, b = rh.start(), rh.start()
    vip = faults.proxy(a.port)
  end)
  local ngx_srv = H.serve(function()
    return { workers = 1,
             server = "location = /set { content_by_lua_block {" .. SETNX .. "} }",
             vars = { REDIS = "redis://127.0.0.1:" .. vip.port .. "/0" } }
  end)
  teardown(function()
    vip:stop()
    a:stop()
    b:stop()
  end)

  local function set(k)
    local status, body = H.raw(ngx_srv.port, "GET", "/set?k=" .. k)
    assert.equal(200, status, body .. ngx_srv:error_log())
    return (body:gsub("%s+$", ""))
  end

  it("recovers within the request that meets the failover, then says readonly while the "
     .. "address stays on a replica", function()
    -- a few requests leave pooled connections to a
    for i = 1, 4 do assert.equal("set", set("before" .. i)) end
    assert.equal("OK", a:cli("REPLICAOF", "127.0.0.1", b.port))
    local deadline = os.time() + 5
    while not a:cli("SET", "probe", "1"):find("READONLY") and os.time() < deadline do
      os.execute("sleep 0.05")
    end
    vip:switch(b.port)
    assert.equal("set", set("after"))
    assert.equal("1", b:cli("GET", "after"))
    assert.equal("exists", set("after"))
    -- the address moves back to a, still a replica: a clear reason, not a loop
    vip:switch(a.port)
    assert.truthy(tonumber(b:cli("CLIENT", "KILL", "TYPE", "normal")) >= 1)  -- none to b
    assert.equal("readonly", set("x"))
  end)
end)
