-- SPDX-License-Identifier: MIT
-- Issue 13 item 11: the control endpoints need X-Chatmaid-Sandbox: 1 and a loopback Host and
-- Origin (a web page cannot drive them with cross-origin "simple" requests); connections are
-- capped (503 past the cap, never a crash at select()'s FD_SETSIZE); seed counts are bounded.
local sandbox = require("chatmaid.sandbox")
local H = require("spec.support.sandbox_helper")

local function control(sb, method, path, headers, body)
  return H.exchange(sb.port, H.build(method, path, headers, body))
end

describe("sandbox control endpoints are for local tools only", function()
  local sb
  setup(function() sb = sandbox.start{ port = 0 } end)
  teardown(function() if sb then sb:stop() end end)

  it("refuse a request without X-Chatmaid-Sandbox: 1 (a browser's simple POST)", function()
    local r = control(sb, "POST", "/__sandbox/shutdown", {
      ["X-Chatmaid-Sandbox"] = false, ["Content-Type"] = "text/plain",
      Origin = "http://127.0.0.1:" .. sb.port }, "{}")
    assert.equal(403, r.status)
    assert.same({ "control endpoints need the header X-Chatmaid-Sandbox: 1" },
                H.decode(r.body).message)
    r = control(sb, "POST", "/__sandbox/config", { ["X-Chatmaid-Sandbox"] = "0" },
                '{"webhook":{"url":"http://10.0.0.1/"}}')
    assert.equal(403, r.status)
    -- nothing changed, and the sandbox is still up
    assert.equal(200, (sb:request("GET", "/__sandbox/stats")))
    local cfg = assert(sb:config{})
    assert.are_not.equal("http://10.0.0.1/", cfg.webhook.url)
  end)

  for _, host in ipairs{ "evil.example", "evil.example:" .. 8787, "127.0.0.1.evil.example",
                         "192.168.1.10:8787", "localhost.evil", "[::2]:1" } do
    it("refuse Host: " .. host, function()
      local r = control(sb, "POST", "/__sandbox/reset", { Host = host })
      assert.equal(403, r.status)
      assert.truthy(H.decode(r.body).message[1]:find("loopback Host", 1, true))
    end)
  end

  for _, origin in ipairs{ "https://evil.example", "null", "http://127.0.0.1.evil.example",
                           "http://localhost:3000/x" } do
    it("refuse Origin: " .. origin, function()
      local r = control(sb, "POST", "/__sandbox/reset", { Origin = origin })
      assert.equal(403, r.status)
      assert.truthy(H.decode(r.body).message[1]:find("non-loopback Origin", 1, true))
    end)
  end

  for _, host in ipairs{ "127.0.0.1", "localhost:8787", "[::1]:8787", "LOCALHOST" } do
    it("accept Host: " .. host .. " with the header", function()
      local r = control(sb, "GET", "/__sandbox/stats",
                        { Host = host, Origin = "http://localhost:8787" })
      assert.equal(200, r.status)
    end)
  end

  it("the API endpoints do not need the header", function()
    local st = H.call(sb, "GET", "/v1/account")
    assert.equal(200, st)
  end)

  it("bound seed counts", function()
    for _, n in ipairs{ 10001, 1e12, 0, -1, 1.5, "many" } do
      local st, b = sb:request("POST", "/__sandbox/seed", { count = n })
      assert.equal(400, st)
      assert.same({ "count must be an integer from 1 to 10000" }, b.message)
      st = sb:request("POST", "/__sandbox/conversations/seed", { count = n })
      assert.equal(400, st)
    end
    local r = assert(sb:seed{ count = 10000 })
    assert.equal(10000, r.created)
  end)
end)

-- A child that opens n idle connections (raising its own descriptor limit when needed),
-- reports "opened failed refused503", then holds them until the release file exists.
local HOLDER = [=[
local socket = require "socket"
local port, n, release = tonumber(arg[1]), tonumber(arg[2]), arg[3]
local conns, failed = {}, 0
for _ = 1, n do
  local c = socket.tcp()
  c:settimeout(5)
  if c:connect("127.0.0.1", port) then conns[#conns + 1] = c else failed = failed + 1 c:close() end
end
-- The refused ones get their 503 and a close at once; the admitted ones stay silent. Poll
-- without blocking (0.05 s on each silent one cost 25 s) until every connection the sandbox
-- could not have admitted has its 503, or 20 s have passed.
local want = n - 512 - 8
local got, refused = {}, 0
local deadline = socket.gettime() + 20
repeat
  socket.sleep(0.1)
  for i, c in ipairs(conns) do
    if got[i] ~= true then
      c:settimeout(0)
      local data, _, partial = c:receive("*a")
      got[i] = (got[i] or "") .. (data or partial or "")
      if got[i]:find("^HTTP/1%.1 503") then got[i] = true; refused = refused + 1 end
    end
  end
until refused >= want or socket.gettime() > deadline
io.write(#conns, " ", failed, " ", refused, "\n")
io.stdout:flush()
local deadline = socket.gettime() + 120
while socket.gettime() < deadline and not io.open(release, "r") do socket.sleep(0.05) end
for _, c in ipairs(conns) do c:close() end
]=]

describe("sandbox connection cap", function()
  local sb
  setup(function() sb = sandbox.start{ port = 0 } end)
  teardown(function() if sb then sb:stop() end end)

  it("survives 1100 idle connections: 503 past 512, then serves again", function()
    local script = os.tmpname()
    local f = assert(io.open(script, "w"))
    f:write(HOLDER)
    f:close()
    local release = os.tmpname()
    os.remove(release)
    local lua = os.getenv("CHATMAID_LUA") or "lua5.4"
    local p = assert(io.popen("[ \"$(ulimit -n)\" -lt 4096 ] && ulimit -n 4096 2>/dev/null; "
                              .. "exec " .. lua .. " " .. script .. " " .. sb.port .. " 1100 "
                              .. release, "r"))
    local line = p:read("*l") or ""
    local opened, failed, refused = line:match("^(%d+) (%d+) (%d+)$")
    -- while they are held: the sandbox is alive and says it is busy
    -- (nothing sent: the answer comes on accept, and unread request bytes would turn the
    -- close into a reset)
    local s = H.connect(sb.port)
    local busy = H.read_response(s)
    s:close()
    assert(io.open(release, "w")):close()
    p:close()
    os.remove(script)
    os.remove(release)
    assert.equal(1100, tonumber(opened), line)
    assert.equal(0, tonumber(failed))
    assert.truthy(tonumber(refused) >= 1100 - 512 - 8, line)
    assert.equal(503, busy and busy.status)
    -- once they are gone it serves as before
    assert.truthy(H.wait_until(function()
      return H.call(sb, "GET", "/v1/account") == 200
    end, 10))
    local stats = assert(sb:stats())
    assert.truthy(stats.connectionsRefused >= 1100 - 512, tostring(stats.connectionsRefused))
    assert.truthy(stats.connectionsAccepted <= 512 + 8)
  end)
end)
