-- SPDX-License-Identifier: MIT
-- chatmaid.redis inside nginx (lua-nginx-redis cosockets, pooled connections):
-- receive_webhook{ redis = ... } on three nginx instances that each get the same 100 signed
-- deliveries at once (exactly 100 are handled in all), the shared limiter, and Redis down.
local H = require "spec.nginx.harness"
local rh = require "spec.support.redis_helper"
local webhook = require "chatmaid.webhook"

local NAME = "chatmaid.redis inside nginx #nginx #redis"
if H.skip(NAME, H.redis_ready) then return end

local SECRET = "whsec_nginx_redis_spec_000000000"

local HANDLER = [[
  local resty = require "chatmaid.resty"
  local event, err = resty.receive_webhook{ secret = "${SECRET}", redis = "${REDIS}" }
  if event then
    local f = assert(io.open("${PREFIX}/handled.log", "a"))
    f:write(event.data.messageId, " ", ngx.worker.pid(), "\n")
    f:close()
  elseif err ~= "duplicate" and err ~= "in_progress" then
    ngx.log(ngx.ERR, "webhook: ", tostring(err))
  end
]]

-- the two-phase claim with a short lease and a handler (issue 23 item 2)
local CLAIM = [[
  local resty = require "chatmaid.resty"
  local set = require("chatmaid.redis").seen_set{ url = "${REDIS}", lease = 0.5,
                                                  timeout = 0.3, prefix = "ngxclaim:" }
  local event, err = resty.receive_webhook{ secret = "${SECRET}", redis = set,
    handler = function(ev)
      local mark = "${PREFIX}/failed_" .. ev.data.messageId
      if ev.data.status == "fail" and not io.open(mark) then
        assert(io.open(mark, "w")):close()
        error("the handler failed once")
      end
      local f = assert(io.open("${PREFIX}/claimed.log", "a"))
      f:write(ev.data.messageId, "\n")
      f:close()
    end }
]]

local LIMITER = [[
  local resty = require "chatmaid.resty"
  local lim = resty.rate_limiter{ redis = "${REDIS}", key = ngx.var.arg_key,
                                  per_minute = 600 }
  local a = lim:take()
  local b = lim:take()
  ngx.say(string.format("%.3f %.3f %s", a, b,
          tostring(package.loaded["resty.redis"] or package.loaded["nginx.redis"] or false)
            ~= "false" and "cosocket" or "other"))
]]

local DOWN = [[
  local resty = require "chatmaid.resty"
  local event, err = resty.receive_webhook{ secret = "${SECRET}",
                                            redis = "redis://127.0.0.1:${DEAD}/0" }
  ngx.log(ngx.WARN, "down: ", event and "event" or (err.kind .. " " .. err.reason))
]]

local BAD = [[
  local resty = require "chatmaid.resty"
  local _, e1 = pcall(resty.receive_webhook, { secret = "s", redis = 5 })
  local _, e2 = pcall(resty.receive_webhook, { secret = "s", redis = "${REDIS}",
                                               shared_dict = "x" })
  local _, e3 = pcall(resty.rate_limiter, { redis = "${REDIS}", shared_dict = "x",
                                            per_minute = 5 })
  ngx.say(e1) ngx.say(e2) ngx.say(e3)
]]

local function payload(i)
  return '{"event":"message.delivered","timestamp":"2026-01-01T00:00:00Z","data":'
         .. '{"messageId":"msg_redis_' .. i .. '","status":"delivered"}}'
end

describe(NAME, function()
  local redis_srv, nginxes = nil, {}
  local dir

  setup(function()
    redis_srv = rh.start()
    dir = H.sh("mktemp -d /tmp/chatmaid-whredis.XXXXXX"):match("([^\n]+)")
  end)
  for i = 1, 3 do
    nginxes[i] = H.serve(function()
      return {
        workers = 2,
        server = "location = /webhook { content_by_lua_block {" .. HANDLER .. "} }\n"
          .. "location = /take { content_by_lua_block {" .. LIMITER .. "} }\n"
          .. "location = /down { content_by_lua_block {" .. DOWN .. "} }\n"
          .. "location = /bad { content_by_lua_block {" .. BAD .. "} }\n"
          .. "location = /claim { content_by_lua_block {" .. CLAIM .. "} }",
        vars = { SECRET = SECRET, REDIS = redis_srv.url, DEAD = rh.free_port() },
      }
    end)
  end
  teardown(function()     -- after the nginx instances' teardowns
    if redis_srv then redis_srv:stop() end
    if dir then os.execute("rm -rf " .. H.shq(dir)) end
  end)

  it("(b) 3 receivers get the same 100 signed deliveries at once: 100 handled in all",
     function()
    local t = os.time()
    -- one curl config per receiver; every receiver gets all 100, 20 in flight at a time,
    -- each starting at another third of the list so that they race on every delivery
    local cfgs = {}
    for r = 1, 3 do
      local lines = {}
      for k = 1, 100 do
        local i = (k - 1 + (r - 1) * 33) % 100 + 1
        local body = payload(i)
        H.write(dir .. "/body" .. i, body)
        lines[#lines + 1] = 'url = "http://127.0.0.1:' .. nginxes[r].port .. '/webhook"\n'
          .. 'header = "Content-Type: application/json"\n'
          .. 'header = "X-Chatmaid-Signature: ' .. webhook.sign(body, SECRET, t) .. '"\n'
          .. 'data-binary = "@' .. dir .. "/body" .. i .. '"\n'
          .. 'output = "/dev/null"\n'
          .. 'write-out = "%{http_code}\\n"\n'
      end
      cfgs[r] = dir .. "/curl" .. r
      H.write(cfgs[r], table.concat(lines, "next\n"))
    end
    local cmd = {}
    for r = 1, 3 do
      cmd[r] = "curl -sS --no-progress-meter -Z --parallel-max 20 --max-time 60 -K "
               .. H.shq(cfgs[r]) .. " > " .. H.shq(dir .. "/out" .. r)
    end
    os.execute("(" .. table.concat(cmd, " & ") .. " & wait)")
    -- 200 (handled or duplicate), or 503 in_progress: a delivery that raced with the one
    -- being handled is told to come back (that one could still fail), never acknowledged
    local codes = {}
    for r = 1, 3 do
      for code in H.read(dir .. "/out" .. r):gmatch("%d+") do
        codes[code] = (codes[code] or 0) + 1
      end
    end
    assert.equal(300, (codes["200"] or 0) + (codes["503"] or 0))
    assert.truthy((codes["200"] or 0) >= 200)
    local handled, ids = 0, {}
    for r = 1, 3 do
      for id in H.read(nginxes[r].prefix .. "/handled.log"):gmatch("(%S+) %d+\n") do
        handled = handled + 1
        ids[id] = (ids[id] or 0) + 1
      end
    end
    assert.equal(100, handled)
    for i = 1, 100 do assert.equal(1, ids["msg_redis_" .. i], "msg_redis_" .. i) end
    for r = 1, 3 do
      assert.falsy(nginxes[r]:error_log():find("webhook: ", 1, true), nginxes[r]:error_log())
    end
  end)

  it("resty.rate_limiter{ redis = ... } shares one budget across nginx instances, over "
     .. "cosockets", function()
    local _, a = H.raw(nginxes[1].port, "GET", "/take?key=ngx1")
    local _, b = H.raw(nginxes[2].port, "GET", "/take?key=ngx1")
    local a1, a2, how = a:match("(%d+%.%d+) (%d+%.%d+) (%a+)")
    assert(a1, a .. nginxes[1]:error_log())
    local b1, b2 = b:match("(%d+%.%d+) (%d+%.%d+)")
    assert.equal("cosocket", how)
    assert.equal(0, tonumber(a1))
    assert.truthy(tonumber(a2) > 0.05 and tonumber(a2) <= 0.1, a)
    -- the second instance queues behind the first one's two starts
    assert.truthy(tonumber(b1) > 0.1 and tonumber(b1) <= 0.2, b)
    assert.truthy(tonumber(b2) > tonumber(b1), b)
  end)

  it("raises on a bad redis option, and on redis with shared_dict", function()
    local _, body = H.raw(nginxes[1].port, "GET", "/bad")
    assert.truthy(body:find("chatmaid.resty.receive_webhook: option 'redis' must be a "
                            .. "redis:// URL or a chatmaid.redis.seen_set (got number)", 1, true),
                  body)
    assert.truthy(body:find("chatmaid.resty.receive_webhook: give shared_dict or redis, not "
                            .. "both", 1, true), body)
    assert.truthy(body:find("chatmaid.resty.rate_limiter: give shared_dict or redis, not both",
                            1, true), body)
  end)

  it("SIGSTOP of Redis during deliveries: 503, then each event handled exactly once",
     function()
    local function deliver(id, status)
      local body = '{"event":"message.delivered","timestamp":"2026-01-01T00:00:00Z",'
                   .. '"data":{"messageId":"' .. id .. '","status":"' .. (status or "ok")
                   .. '"}}'
      local code, resp = H.raw(nginxes[1].port, "POST", "/claim",
        { "Content-Type: application/json",
          "X-Chatmaid-Signature: " .. webhook.sign(body, SECRET) }, body)
      return code, resp
    end
    redis_srv:pause()
    local ok, e = pcall(function()
      for i = 1, 5 do
        local code, resp = deliver("msg_stall_" .. i)
        assert.equal(503, code)
        assert.matches('"error":"dedupe_unavailable"', resp, 1, true)
      end
    end)
    redis_srv:resume()   -- the claims that timed out are applied now, as 0.5 s leases
    assert(ok, e)
    -- the sender's retries: until every delivery is answered 200
    local answered, busy = {}, 0
    local deadline = os.time() + 6
    repeat
      for i = 1, 5 do
        if not answered[i] then
          local code, resp = deliver("msg_stall_" .. i)
          if code == 200 then answered[i] = resp
          elseif resp:find('"in_progress"', 1, true) then busy = busy + 1 end
        end
      end
      local left = 0
      for i = 1, 5 do if not answered[i] then left = left + 1 end end
      if left > 0 then H.sh("sleep 0.1") end
    until left == 0 or os.time() > deadline
    for i = 1, 5 do
      assert.truthy(answered[i], "msg_stall_" .. i .. " never answered 200")
      -- delivered again: a duplicate now
      local code, resp = deliver("msg_stall_" .. i)
      assert.equal(200, code)
      assert.matches('"duplicate":true', resp, 1, true)
    end
    -- a handler that raises: 500 and the claim released, so the redelivery is handled
    assert.equal(500, (deliver("msg_fail_1", "fail")))
    assert.equal(200, (deliver("msg_fail_1", "fail")))
    local count = {}
    for id in H.read(nginxes[1].prefix .. "/claimed.log"):gmatch("(%S+)\n") do
      count[id] = (count[id] or 0) + 1
    end
    for i = 1, 5 do assert.equal(1, count["msg_stall_" .. i], "msg_stall_" .. i) end
    assert.equal(1, count["msg_fail_1"])
    assert.truthy(nginxes[1]:error_log():find("the handler failed once", 1, true))
  end)

  it("answers 503 (the API delivers again later) when Redis is down", function()
    local body = payload("down")
    local status, resp = H.raw(nginxes[1].port, "POST", "/down",
      { "Content-Type: application/json",
        "X-Chatmaid-Signature: " .. webhook.sign(body, SECRET) }, body)
    assert.equal(503, status)
    assert.matches('"error":"dedupe_unavailable"', resp, 1, true)
    assert.truthy(nginxes[1]:error_log():find("down: transport connect", 1, true),
                  nginxes[1]:error_log())
  end)
end)

-- A pooled connection is reused only by a client with the same credentials: two clients of
-- one Redis (same host, port, db, user) with different passwords must not share a cosocket
-- pool, or a wrong (stale, rotated) password is taken whenever a connection authenticated
-- with the right one is idle in the worker.
local PING = [[
  local conn = require("chatmaid.redis.conn").new{
    url = "redis://:" .. ngx.var.arg_pw .. "@127.0.0.1:${RPORT}/0", timeout = 1 }
  local r, err = conn:call{ "PING" }
  ngx.say(r or (err.kind .. " " .. tostring(err.reason) .. " " .. tostring(err)))
]]

describe("chatmaid.redis inside nginx: pools keyed by credentials #nginx #redis", function()
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
