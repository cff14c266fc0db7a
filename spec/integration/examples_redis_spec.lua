-- SPDX-License-Identifier: MIT
-- The README's "Running on many machines" as runnable examples: examples/many_machines.lua
-- (two workers on one campaign) and examples/webhook_receiver.lua --redis (two receivers).
local F = require "spec.support.fixtures"
local rh = require "spec.support.redis_helper"
local run = require "spec.cli.run"
local webhook = require "chatmaid.webhook"
local socket = require "socket"

-- start(...) -> pipe, pid: the example runs in the background of a shell that waits for it
local function start(name, args, env)
  local cmd = "exec " .. run.env_prefix(env) .. " " .. run.LUA .. " " .. run.root
              .. "examples/" .. name .. " " .. args
  -- the inner shell prints its own pid (the example's, after exec) before anything else
  local p = assert(io.popen("sh -c " .. run.quote("echo $$; " .. cmd .. " 2>&1") .. " & wait"))
  return p, tonumber(p:read("*l"))
end

describe("the many-machines examples #integration #redis", function()
  local sb = F.block_sandbox({ rate_limit = false }, { reset = false })
  local srv = rh.serve()
  local dir
  setup(function()
    dir = os.tmpname()
    os.remove(dir)
    assert(os.execute("mkdir -p " .. run.quote(dir)))
  end)
  teardown(function()
    os.execute("rm -rf " .. run.quote(dir))
  end)

  it("many_machines.lua: two workers send a 20-line campaign once", function()
    local lines = {}
    for i = 1, 20 do lines[i] = string.format("+1555800%04d hello number %d", i, i) end
    local file = run.write(dir .. "/r.txt", table.concat(lines, "\n") .. "\n")
    local env = { CHATMAID_API_KEY = F.TEST_KEY, CHATMAID_BASE_URL = sb.url,
                  LUA_PATH = package.path, LUA_CPATH = package.cpath }
    local a = start("many_machines.lua", srv.url .. " ex-1 " .. file .. " 1200", env)
    local b = start("many_machines.lua", srv.url .. " ex-1 " .. file .. " 1200", env)
    local outa, outb = a:read("*a"), b:read("*a")
    a:close()
    b:close()
    for _, out in ipairs{ outa, outb } do
      assert.truthy(out:find("campaign ex-1: 20/20 done, 20 sent, 0 failed", 1, true), out)
    end
    local sa = tonumber(outa:match("sent (%d+)"))
    local sbn = tonumber(outb:match("sent (%d+)"))
    assert.equal(20, sa + sbn)
    assert.equal(20, sb:stats().messagesCreated)
  end)

  it("webhook_receiver.lua --redis: two receivers handle a delivery once", function()
    local env = { CHATMAID_WEBHOOK_SECRET = F.WEBHOOK_SECRET, LUA_PATH = package.path,
                  LUA_CPATH = package.cpath }
    local ports, procs, pids = {}, {}, {}
    for r = 1, 2 do
      ports[r] = rh.free_port()
      procs[r], pids[r] = start("webhook_receiver.lua", "--port " .. ports[r] .. " --redis "
                                .. srv.url, env)
      assert.truthy(procs[r]:read("*l"):find("listening", 1, true))
    end
    local body = '{"event":"message.sent","timestamp":"2026-01-01T00:00:00Z",'
                 .. '"data":{"messageId":"msg_example_1","status":"sent"}}'
    local answers = {}
    for r = 1, 2 do
      local c = assert(socket.connect("127.0.0.1", ports[r]))
      c:settimeout(5)
      c:send("POST /webhooks/chatmaid HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
             .. "X-Chatmaid-Signature: " .. webhook.sign(body, F.WEBHOOK_SECRET)
             .. "\r\nContent-Length: " .. #body .. "\r\n\r\n" .. body)
      answers[r] = c:receive("*a")
      c:close()
    end
    assert.truthy(answers[1]:find("\r\n\r\nok\n", 1, true), answers[1])
    assert.truthy(answers[2]:find("\r\n\r\nduplicate\n", 1, true), answers[2])
    for r = 1, 2 do
      os.execute("kill " .. pids[r] .. " 2>/dev/null")
      procs[r]:close()
    end
  end)
end)
