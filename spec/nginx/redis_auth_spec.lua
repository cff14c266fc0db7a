-- SPDX-License-Identifier: MIT
-- chatmaid.redis inside nginx: a pooled connection is reused only by a client with the same
-- credentials. Two clients of one Redis (same host, port, db, user) with different passwords
-- must not share a cosocket pool, or a wrong (stale, rotated) password is taken whenever a
-- connection authenticated with the right one is idle in the worker.
local H = require "spec.nginx.harness"
local rh = require "spec.support.redis_helper"

local NAME = "chatmaid.redis inside nginx: pools keyed by credentials #nginx #redis"
if H.skip(NAME, function()
  if not rh.binary() then return false, "no redis-server" end
  if not (H.read("/usr/share/lua/5.1/nginx/redis.lua") ~= ""
          or H.read("/usr/share/lua/5.1/resty/redis.lua") ~= "") then
    return false, "no cosocket Redis client (apt-get install lua-nginx-redis)"
  end
  return true
end) then return end

local PING = [[
  local conn = require("chatmaid.redis.conn").new{
    url = "redis://:" .. ngx.var.arg_pw .. "@127.0.0.1:${RPORT}/0", timeout = 1 }
  local r, err = conn:call{ "PING" }
  ngx.say(r or (err.kind .. " " .. tostring(err.reason) .. " " .. tostring(err)))
]]

describe(NAME, function()
  local srv = rh.serve({ password = "right-password-1" })
  local ngx_srv = H.serve(function()
    return {
      workers = 1,
      server = "location = /ping { content_by_lua_block {" .. PING .. "} }",
      vars = { RPORT = srv.port },
    }
  end)

  it("a wrong password is refused even while a connection made with the right one is pooled",
     function()
    local _, ok = H.raw(ngx_srv.port, "GET", "/ping?pw=right-password-1")
    assert.truthy(ok:find("PONG", 1, true), ok .. ngx_srv:error_log())
    local _, bad = H.raw(ngx_srv.port, "GET", "/ping?pw=wrong-password-2")
    assert.truthy(bad:find("\ntransport redis ", 1, true), bad)
    assert.falsy(bad:find("PONG", 1, true), bad)
    assert.falsy(bad:find("wrong-password-2", 1, true), bad)
    -- and the right one still reuses its own pool
    local _, again = H.raw(ngx_srv.port, "GET", "/ping?pw=right-password-1")
    assert.truthy(again:find("PONG", 1, true), again)
  end)
end)
