-- SPDX-License-Identifier: MIT
-- The cosocket transport (chatmaid.resty.transport) inside a real nginx, against hostile
-- HTTP servers on 127.0.0.1 (spec.support.raw_script): the cases the libcurl path passes
-- (caps refused while streaming, trickles ending at the deadline, broken chunks, lying
-- Content-Length, redirects not followed, no secret in any error), keep-alive reuse, and
-- transfers side by side (send_batch in a timer, against a stub in the same nginx).
local H = require "spec.nginx.harness"
local raw_script = require "spec.support.raw_script"
local cjson = require "cjson"

local NAME = "chatmaid.resty cosocket transport #nginx"
if H.skip(NAME) then return end

local KEY = "sk_test_cosocket_secret_0000000042"

-- /call?base=URL&timeout=s&max_body=n[&n=calls]: c:account() n times (one client) ->
-- JSON { ok, elapsed, kind, reason, message, retryable, status, str } of the last call.
local CALL = [[
location = /call { content_by_lua_block {
  local a = ngx.req.get_uri_args()
  local c = require("chatmaid").new{ api_key = "${KEY}", base_url = a.base,
    max_retries = tonumber(a.retries or 0), timeout = tonumber(a.timeout or 5),
    max_body = tonumber(a.max_body) }
  local out
  for _ = 1, tonumber(a.n or 1) do
    ngx.update_time()
    local t0 = ngx.now()
    local v, err = c:account()
    ngx.update_time()
    out = { ok = v ~= nil, elapsed = ngx.now() - t0 }
    if err then
      out.kind, out.reason, out.message = err.kind, err.reason, err.message
      out.retryable, out.status, out.str = err.retryable, err.status, tostring(err)
      out.attempts, out.request_id, out.retry_after = err.attempts, err.request_id,
                                                      err.retry_after
    end
  end
  ngx.say(require("cjson").encode(out))
} }

# /fresh?base=URL: two requests with fresh_connect (a send that must never be replayed)
location = /fresh { content_by_lua_block {
  local tr = require("chatmaid.resty").transport{ timeout_ms = 3000 }
  local out, url = {}, ngx.unescape_uri(ngx.var.arg_base) .. "/v1/x"
  for i = 1, 2 do
    local res, kind, msg = tr:request{ method = "POST", url = url,
      headers = { "Content-Type: application/json" }, body = "{}", fresh_connect = true }
    out[i] = res and res.status or (kind .. ": " .. tostring(msg))
  end
  ngx.say(table.concat(out, " "))
} }

# The stub API for send_batch: answers a send in 100 ms without blocking the worker.
location = /v1/messages/send { content_by_lua_block {
  ngx.req.read_body()
  local b = require("cjson").decode(ngx.req.get_body_data())
  ngx.sleep(b.content == "slow" and 1.5 or 0.1)
  ngx.status = 201
  ngx.say(require("cjson").encode{ success = true, data = { id = "msg_" .. b.to,
    to = b.to, content = b.content, status = "queued",
    createdAt = os.date("!%Y-%m-%dT%H:%M:%S.000Z", os.time() + 60) } })
} }

# /batch?n=200&c=16: send_batch inside one ngx.timer.at; the result lands in a shared dict.
location = /batch { content_by_lua_block {
  local a = ngx.req.get_uri_args()
  local n, conc = tonumber(a.n), tonumber(a.c)
  ngx.shared.results:delete("batch")
  ngx.timer.at(0, function()
    local c = require("chatmaid").new{ api_key = "${KEY}",
      base_url = "http://127.0.0.1:${PORT}", max_retries = 0 }
    local items = {}
    for i = 1, n do
      items[i] = { from = "ph_primary", to = string.format("+1555%07d", i),
                   content = "hi " .. i }
    end
    ngx.update_time()
    local t0 = ngx.now()
    local results, summary = c:send_batch(items, { concurrency = conc,
                                                   rate_per_minute = false })
    ngx.update_time()
    local ok = 0
    for i = 1, n do
      if results[i].message and results[i].message.to == items[i].to then ok = ok + 1 end
    end
    ngx.shared.results:set("batch", require("cjson").encode{
      elapsed = ngx.now() - t0, ok = ok, sent = summary.sent, failed = summary.failed })
  end)
  ngx.say("started")
} }

# /shared: two timers and this request run send_batch at once on one client of the worker
# (made in init_by_lua): each has its own scheduler, none waits for the others.
location = /shared { content_by_lua_block {
  local function items(tag)
    local t = {}
    for i = 1, 32 do
      t[i] = { from = "ph_primary", to = string.format("+1555%s%06d", tag, i), content = "x" }
    end
    return t
  end
  local function run(tag)
    ngx.update_time()
    local t0 = ngx.now()
    local ok, results, summary = pcall(shared_client.send_batch, shared_client, items(tag),
                                       { concurrency = 16, rate_per_minute = false })
    ngx.update_time()
    ngx.shared.results:set("shared" .. tag, ok and (summary.sent .. " "
      .. string.format("%.2f", ngx.now() - t0)) or ("raised " .. tostring(results)))
  end
  for _, k in ipairs{ "shared1", "shared2", "shared3" } do ngx.shared.results:delete(k) end
  local function timer(_, tag) run(tag) end   -- a timer gets `premature` first
  ngx.timer.at(0, timer, "1")
  ngx.timer.at(0, timer, "2")
  run("3")
  ngx.say("done")
} }

# /cancel: a task's send in flight (3 s), cancelled after 0.2 s; then a send on the client.
location = /cancel { content_by_lua_block {
  local c = shared_client
  ngx.update_time()
  local t0 = ngx.now()
  local task = c:spawn(function()
    return c:send{ from = "ph_primary", to = "+15550000001", content = "slow" }
  end)
  c:step(0.2)
  local cancelled = task:cancel()
  local _, err = task:result()
  ngx.update_time()
  local m = c:send{ from = "ph_primary", to = "+15550000002", content = "after" }
  ngx.say(tostring(cancelled), " ", tostring(err and err.kind), " ",
          string.format("%.2f", ngx.now() - t0), " ", m and m.id or "no message")
} }

location = /result { content_by_lua_block {
  local v = ngx.shared.results:get(ngx.var.arg_k)
  if not v then return ngx.exit(404) end
  ngx.header.content_length = #v
  ngx.print(v)
} }
]]

local function urlencode(s)
  return (s:gsub("[^%w%-_%.]", function(ch) return ("%%%02X"):format(ch:byte()) end))
end

describe(NAME, function()
  local srv = H.serve{ http = [[
lua_shared_dict results 1m;
init_by_lua_block {
  shared_client = require("chatmaid").new{ api_key = "${KEY}", max_retries = 0,
                                           base_url = "http://127.0.0.1:${PORT}" }
}]], server = CALL,
                       vars = { KEY = KEY } }
  local servers = {}

  after_each(function()
    for _, s in ipairs(servers) do s:stop() end
    servers = {}
  end)

  -- A hostile server running `script` for each connection.
  local function hostile(script)
    local s = raw_script.start(script)
    servers[#servers + 1] = s
    return s
  end

  -- call(server, { timeout, max_body, n, retries }) -> the decoded /call result
  local function call(s, o)
    o = o or {}
    local q = { "base=" .. urlencode(s.url) }
    for _, k in ipairs{ "timeout", "max_body", "n", "retries" } do
      if o[k] then q[#q + 1] = k .. "=" .. o[k] end
    end
    local out = H.curl("'" .. srv:url("/call?" .. table.concat(q, "&")) .. "'")
    local ok, r = pcall(cjson.decode, out)
    assert(ok and type(r) == "table", "bad /call output: " .. out .. "\n" .. srv:error_log())
    -- no secret in any error, whatever happened
    for _, k in ipairs{ "message", "str" } do
      if r[k] then
        assert.falsy(r[k]:find(KEY, 1, true), "the key leaked: " .. r[k])
        assert.falsy(r[k]:find("Bearer", 1, true), "the auth header leaked: " .. r[k])
      end
    end
    return r
  end

  local ENVELOPE = '{"success":true,"data":{"id":"acc_1","name":"Spec"}}'
  local GOOD = ("c:send('HTTP/1.1 200 OK\\r\\nContent-Type: application/json\\r\\n"
               .. "Content-Length: %d\\r\\n\\r\\n%s')"):format(#ENVELOPE, ENVELOPE)

  describe("keep-alive", function()
    it("reuses one connection for sequential requests of a client", function()
      local s = hostile("log('conn ' .. n) while read() do " .. GOOD .. " end")
      local r = call(s, { n = 3 })
      assert.is_true(r.ok, r.str)
      assert.same({ "conn 1" }, s:log())
    end)

    it("a chunked answer is read and the connection reused", function()
      local s = hostile([[log('conn ' .. n) while read() do
        c:send('HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n'
               .. '5\r\n{"suc\r\n'
               .. ('%x'):format(#']] .. ENVELOPE:sub(6) .. [[') .. '\r\n]]
               .. ENVELOPE:sub(6) .. [[\r\n0\r\n\r\n') end]])
      local r = call(s, { n = 2 })
      assert.is_true(r.ok, r.str)
      assert.same({ "conn 1" }, s:log())
    end)

    it("fresh_connect: a connection of its own each time, never a pooled one", function()
      local s = hostile("log('conn ' .. n) while read() do " .. GOOD .. " end")
      local out = H.curl("'" .. srv:url("/fresh?base=" .. urlencode(s.url)) .. "'")
      assert.equal("200 200\n", out)
      assert.same({ "conn 1", "conn 2" }, s:log())
    end)

    it("Connection: close is honoured: the next request opens a new connection", function()
      local s = hostile("log('conn ' .. n) if read() then c:send('HTTP/1.1 200 OK\\r\\n"
        .. "Connection: close\\r\\nContent-Length: " .. #ENVELOPE .. "\\r\\n\\r\\n"
        .. ENVELOPE .. "') end")
      local r = call(s, { n = 2 })
      assert.is_true(r.ok, r.str)
      assert.same({ "conn 1", "conn 2" }, s:log())
    end)
  end)

  describe("caps, refused while streaming", function()
    it("a Content-Length over max_body: too_large before the body is read", function()
      -- announces 64 MiB, sends 1 KiB, then waits: only a check before reading returns fast
      local s = hostile([[if read() then
        c:send('HTTP/1.1 200 OK\r\nContent-Length: 67108864\r\n\r\n' .. ('x'):rep(1024))
        socket.sleep(4) end]])
      local r = call(s, { max_body = 1048576, timeout = 3 })
      assert.equal("transport", r.kind)
      assert.equal("too_large", r.reason)
      assert.is_false(r.retryable)
      assert.truthy(r.message:find("1048576 byte limit", 1, true), r.message)
      assert.is_true(r.elapsed < 1, "elapsed " .. r.elapsed)
    end)

    it("a chunked body growing past max_body: too_large while it streams", function()
      -- 64 KiB chunks forever: refused once the sizes pass 1 MiB, not at a timeout
      local s = hostile([[if read() then
        c:send('HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n')
        local chunk = '10000\r\n' .. ('x'):rep(65536) .. '\r\n'
        for _ = 1, 200 do if not c:send(chunk) then break end end
        socket.sleep(4) end]])
      local r = call(s, { max_body = 1048576, timeout = 3 })
      assert.equal("too_large", r.reason, r.str)
      assert.is_false(r.retryable)
      assert.is_true(r.elapsed < 1, "elapsed " .. r.elapsed)
    end)

    it("a body without length or chunks, past max_body: too_large while it streams", function()
      local s = hostile([[if read() then
        c:send('HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n')
        for _ = 1, 64 do if not c:send(('x'):rep(65536)) then break end end
        socket.sleep(4) end]])
      local r = call(s, { max_body = 1048576, timeout = 3 })
      assert.equal("too_large", r.reason, r.str)
      assert.is_true(r.elapsed < 1, "elapsed " .. r.elapsed)
    end)

    it("a flood of header lines: too_large, naming the limit", function()
      local s = hostile([[if read() then
        c:send('HTTP/1.1 200 OK\r\n')
        for i = 1, 10000 do if not c:send('X-Flood-' .. i .. ': ' .. ('y'):rep(64) .. '\r\n')
          then break end end
        socket.sleep(4) end]])
      local r = call(s, { timeout = 3 })
      assert.equal("too_large", r.reason, r.str)
      assert.truthy(r.message:find("response headers are larger than the 262144 byte limit",
                                   1, true), r.message)
      assert.is_true(r.elapsed < 1, "elapsed " .. r.elapsed)
    end)

    it("an endless header line: too_large, not a hang", function()
      local s = hostile([[if read() then
        c:send('HTTP/1.1 200 OK\r\nX-Long: ')
        for _ = 1, 64 do if not c:send(('z'):rep(16384)) then break end end
        socket.sleep(4) end]])
      local r = call(s, { timeout = 3 })
      assert.equal("too_large", r.reason, r.str)
      assert.is_true(r.elapsed < 1, "elapsed " .. r.elapsed)
    end)
  end)

  describe("deadline", function()
    it("bytes trickled one every 0.2 s: timeout at the deadline, not per read", function()
      local s = hostile([[if read() then
        local resp = 'HTTP/1.1 200 OK\r\nContent-Length: 500\r\n\r\n' .. ('x'):rep(500)
        for i = 1, #resp do
          if not c:send(resp:sub(i, i)) then break end
          socket.sleep(0.2)
        end end]])
      local r = call(s, { timeout = 1.5 })
      assert.equal("timeout", r.kind, r.str)
      assert.is_true(r.retryable)
      assert.is_true(r.elapsed >= 1.4 and r.elapsed < 2.1, "elapsed " .. r.elapsed)
    end)

    it("a server that never answers: timeout at the deadline", function()
      local s = hostile("if read() then socket.sleep(4) end")
      local r = call(s, { timeout = 1 })
      assert.equal("timeout", r.kind, r.str)
      assert.is_true(r.elapsed >= 0.9 and r.elapsed < 1.6, "elapsed " .. r.elapsed)
    end)
  end)

  describe("broken framing", function()
    local cases = {
      { "a chunk size that is not hex",
        "Transfer-Encoding: chunked\\r\\n\\r\\nzz\\r\\nab\\r\\n0\\r\\n\\r\\n",
        "invalid chunk size" },
      { "a chunk longer than its size",
        "Transfer-Encoding: chunked\\r\\n\\r\\n2\\r\\nabcdef\\r\\n0\\r\\n\\r\\n",
        "longer than its chunk size" },
      { "a huge chunk size", "Transfer-Encoding: chunked\\r\\n\\r\\nffffffffffffffff\\r\\n",
        "invalid chunk size" },
      { "a negative Content-Length", "Content-Length: -5\\r\\n\\r\\nabc",
        "invalid or repeated Content-Length" },
      { "two different Content-Lengths", "Content-Length: 2\\r\\nContent-Length: 3\\r\\n\\r\\nabc",
        "invalid or repeated Content-Length" },
      { "an unknown transfer coding", "Transfer-Encoding: gzip\\r\\n\\r\\nabc",
        "transfer coding other than chunked" },
    }
    for _, case in ipairs(cases) do
      it(case[1] .. ": transport error, said plainly", function()
        local s = hostile("if read() then c:send('HTTP/1.1 200 OK\\r\\n" .. case[2]
                          .. "') socket.sleep(2) end")
        local r = call(s, { timeout = 3 })
        assert.equal("transport", r.kind, r.str)
        assert.equal("transport", r.reason)
        assert.truthy(r.message:find(case[3], 1, true), r.message)
        assert.is_true(r.elapsed < 1, "elapsed " .. r.elapsed)
      end)
    end

    it("not HTTP at all: transport error", function()
      local s = hostile("if read() then c:send('SSH-2.0-OpenSSH\\r\\n\\r\\n') end")
      local r = call(s)
      assert.equal("transport", r.kind)
      assert.truthy(r.message:find("HTTP/1.x status line", 1, true), r.message)
    end)
  end)

  describe("lying Content-Length", function()
    it("longer than the body, then closed: transport, not a success", function()
      local s = hostile("if read() then c:send('HTTP/1.1 200 OK\\r\\nContent-Length: 500"
                        .. "\\r\\n\\r\\n" .. ENVELOPE .. "') end")
      local r = call(s)
      assert.equal("transport", r.kind, r.str)
      assert.truthy(r.message:find("closed the connection before the response body ended",
                                   1, true), r.message)
    end)

    it("shorter than the body: the connection is not reused for the next request", function()
      -- the first answer's extra bytes would be read as the second answer on a reused one
      local s = hostile([[log('conn ' .. n) while read() do
        if n == 1 then
          c:send('HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}HTTP/1.1 200 OK\r\n'
                 .. 'Content-Length: 2\r\n\r\n{}')
        else ]] .. GOOD .. [[ end end]])
      local r = call(s, { n = 2 })
      assert.is_true(r.ok, r.str)
      assert.same({ "conn 1", "conn 2" }, s:log())
    end)
  end)

  describe("headers the client reads", function()
    it("Retry-After and X-Request-Id of a 429 (any case, last line wins)", function()
      local s = hostile([[if read() then
        c:send('HTTP/1.1 429 Too Many Requests\r\nretry-after: 99\r\nRETRY-AFTER: 7\r\n'
               .. 'X-Request-Id: req_abc\r\nContent-Length: 0\r\n\r\n') end]])
      local r = call(s)
      assert.equal("rate_limited", r.kind, r.str)
      assert.equal(429, r.status)
      assert.equal(7, r.retry_after)
      assert.equal("req_abc", r.request_id)
    end)
  end)

  describe("redirects", function()
    it("are not followed: one request, the target named", function()
      local s = hostile([[while true do local line = read() if not line then break end
        log(line)
        c:send('HTTP/1.1 302 Found\r\nLocation: http://127.0.0.1:1/elsewhere\r\n'
               .. 'Content-Length: 0\r\n\r\n') end]])
      local r = call(s, { retries = 2 })
      assert.is_false(r.ok)
      assert.equal(302, r.status)
      assert.truthy(r.message:find("redirects are not followed", 1, true), r.message)
      assert.truthy(r.message:find("http://127.0.0.1:1/elsewhere", 1, true), r.message)
      assert.equal(1, #s:log())
    end)
  end)

  describe("connection failures", function()
    it("connection refused: transport/connect, retryable", function()
      local r = call({ url = "http://127.0.0.1:" .. H.free_port() })
      assert.equal("transport", r.kind)
      assert.equal("connect", r.reason)
      assert.is_true(r.retryable)
    end)

    it("a host name without a resolver line: transport/resolve, saying what to add", function()
      local r = call({ url = "https://chatmaid.invalid" })
      assert.equal("resolve", r.reason, r.str)
      assert.truthy(r.message:find("resolver", 1, true), r.message)
    end)

    it("the server resets a kept-alive connection: the send is not sent again", function()
      -- answers once, then closes the idle connection right after the next request arrives
      local s = hostile([[log('conn ' .. n) if read() then ]] .. GOOD .. [[ end
        if read() then log('second request on conn ' .. n) end]])
      local r = call(s, { n = 2 })
      assert.is_false(r.ok)
      assert.equal("transport", r.reason, r.str)
      assert.truthy(r.message:find("not sent again", 1, true), r.message)
      assert.same({ "conn 1", "second request on conn 1" }, s:log())
    end)
  end)

  describe("transfers side by side", function()
    it("send_batch of 200 in one timer, concurrency 16, 100 ms stub: at most 2 s", function()
      local out = H.curl("'" .. srv:url("/batch?n=200&c=16") .. "'")
      assert.matches("started", out)
      local socket = require "socket"
      local deadline, res = socket.gettime() + 20, nil
      while socket.gettime() < deadline do
        local status, body = H.raw(srv.port, "GET", "/result?k=batch")
        if status == 200 then res = cjson.decode(body) break end
        socket.sleep(0.1)
      end
      assert(res, "the batch did not finish: " .. srv:error_log())
      io.stderr:write(("\n[cosocket batch] 200 sends, concurrency 16, 100 ms each: %.2f s\n")
                      :format(res.elapsed))
      assert.equal(200, res.ok)
      assert.equal(200, res.sent)
      assert.equal(0, res.failed)
      -- 200 / 16 = 13 rounds of 100 ms: 1.3 s when they truly overlap, 20 s one at a time
      assert.is_true(res.elapsed <= 2, "took " .. res.elapsed .. " s")
      assert.is_true(res.elapsed >= 1.2, "faster than the stub allows: " .. res.elapsed)
    end)

    it("a task's send in flight is cancelled at once, and the client goes on", function()
      local out = H.curl("'" .. srv:url("/cancel") .. "'")
      local cancelled, kind, elapsed, id = out:match("^(%S+) (%S+) ([%d%.]+) (%S+)")
      assert(cancelled, out .. "\n" .. srv:error_log())
      assert.equal("true", cancelled)
      assert.equal("cancelled", kind)
      assert.is_true(tonumber(elapsed) < 0.8, "took " .. elapsed .. " s")
      assert.equal("msg_+15550000002", id)
    end)

    it("one client of the worker, three send_batch at once (two timers, a request)", function()
      assert.matches("done", (H.curl("'" .. srv:url("/shared") .. "'")))
      local socket = require "socket"
      for _, k in ipairs{ "1", "2", "3" } do
        local deadline, v = socket.gettime() + 10, nil
        while socket.gettime() < deadline do
          local status, body = H.raw(srv.port, "GET", "/result?k=shared" .. k)
          if status == 200 then v = body break end
          socket.sleep(0.05)
        end
        assert(v, "batch " .. k .. " did not finish: " .. srv:error_log())
        local sent, elapsed = v:match("^(%d+) ([%d%.]+)$")
        assert(sent, "batch " .. k .. ": " .. v)
        assert.equal("32", sent)
        -- 32 at 16 in flight: two rounds of 100 ms, whatever the other batches do
        assert.is_true(tonumber(elapsed) < 0.6, "batch " .. k .. " took " .. elapsed .. " s")
      end
    end)
  end)
end)
