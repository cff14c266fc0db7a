-- The session's request header lists: built once per distinct list and kept (a client sends
-- the same few lists on every request), yet every request carries exactly the headers it was
-- given, in order, whatever was sent before; compression is offered as gzip; multi_poll makes
-- the lazy response itself when given its metatable.
local core = require "chatmaid.core"
local raw_script = require "spec.support.raw_script"

-- Logs each request's custom headers (x-h1, x-h2, x-h3), Expect, Accept-Encoding and method,
-- and answers on the same kept-alive connection (closed after an answer to X-H3: close).
local SERVER = [[
while true do
  local line, h, body = read()
  if not line then return end
  log(line:match("^(%u+)") .. " h=" .. tostring(h["x-h1"]) .. "," .. tostring(h["x-h2"]) .. ","
      .. tostring(h["x-h3"]) .. " expect=" .. tostring(h["expect"]) .. " ae="
      .. tostring(h["accept-encoding"]) .. " len=" .. #body)
  local resp = '{"success":true,"data":{}}'
  local close = h["x-h3"] == "close"   -- one connection at a time: let the next one in
  c:send("HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nX-Answer: yes\r\n"
         .. (close and "Connection: close\r\n" or "")
         .. "Content-Length: " .. #resp .. "\r\n\r\n" .. resp)
  if close then return end
end
]]

describe("session header lists #integration", function()
  local srv
  before_each(function() srv = raw_script.start(SERVER) end)
  after_each(function() srv:stop() end)

  local function wait_log(n)
    for _ = 1, 200 do
      local l = srv:log()
      if #l >= n then return l end
      os.execute("sleep 0.02")
    end
    return srv:log()
  end

  it("sends each request's own headers when lists alternate, change and outnumber the cache",
     function()
    local s = core.session{ timeout_ms = 5000 }
    local a = { "X-H1: a", "X-H2: a2" }
    local b = { "X-H1: b" }
    local lists = { a, b, a, { "X-H1: a", "X-H2: a2", "X-H3: a3" }, { "X-H1: a" }, b }
    for i = 1, 6 do lists[#lists + 1] = { "X-H1: n" .. i, "X-H2: m" .. i } end   -- > cache
    lists[#lists + 1] = a
    local same = { "X-H1: p" }
    lists[#lists + 1] = same
    lists[#lists + 1] = same
    local want = {}
    for i, l in ipairs(lists) do
      if l == same and i == #lists then same[1] = "X-H1: q" end   -- the same table, edited
      local h = {}
      for j, v in ipairs(l) do h[j] = v:match(": (.*)$") end
      want[i] = "GET h=" .. tostring(h[1]) .. "," .. tostring(h[2]) .. "," .. tostring(h[3])
                .. " expect=nil ae=gzip len=0"
      assert.equal(200, (s:request("GET", srv.url .. "/x", l)))
    end
    assert.same(want, wait_log(#want))
    s:close()
  end)

  it("refuses a header with a NUL inside (libcurl would cut it there)", function()
    local s = core.session{ timeout_ms = 5000 }
    assert.equal(200, (s:request("GET", srv.url .. "/x", { "X-H1: a" })))
    assert.has_error(function() s:request("GET", srv.url .. "/x", { "X-H1: a\0b" }) end,
                     "bad argument #3 to 'request' (a header must not contain a NUL byte)")
    assert.has_error(function() s:multi_add(1, "GET", srv.url .. "/x", { "X-H1: a\0" }) end,
                     "bad argument #4 to 'multi_add' (a header must not contain a NUL byte)")
    assert.equal(200, (s:request("GET", srv.url .. "/x", { "X-H1: a", "X-H2: z" })))
    assert.same({ "GET h=a,nil,nil expect=nil ae=gzip len=0",
                  "GET h=a,z,nil expect=nil ae=gzip len=0" }, wait_log(2))
    s:close()
  end)

  it("keeps the Expect: line of large bodies apart from the same list without it", function()
    local s = core.session{ timeout_ms = 10000 }
    local h = { "X-H1: big", "Content-Type: application/json" }
    local big = string.rep("x", 1024 * 1024)
    assert.equal(200, (s:request("POST", srv.url .. "/x", h, "small")))
    assert.equal(200, (s:request("POST", srv.url .. "/x", h, big)))
    assert.equal(200, (s:request("POST", srv.url .. "/x", h, "small")))
    assert.same({
      "POST h=big,nil,nil expect=nil ae=gzip len=5",
      "POST h=big,nil,nil expect=nil ae=gzip len=" .. #big,
      "POST h=big,nil,nil expect=nil ae=gzip len=5",
    }, wait_log(3))
    s:close()
  end)

  it("gives multi transfers their own lists, and multi_poll the response metatable", function()
    local s = core.session{ timeout_ms = 5000, raw_headers = true }
    local mt = { __index = function(r, k) if k == "lazy" then return #r.raw_headers end end }
    for i = 1, 6 do
      assert.is_true(s:multi_add(i, "GET", srv.url .. "/x",
                                 { "X-H1: t" .. (i % 3), "X-H2: " .. i, "X-H3: close" }))
    end
    local got, tries = {}, 0
    while s:multi_pending() > 0 and tries < 500 do
      tries = tries + 1
      for _, r in ipairs(s:multi_poll(50, mt)) do got[r.token] = r end
    end
    local want = {}
    for i = 1, 6 do
      local r = got[i]
      assert.equal(200, r.status)
      assert.equal(mt, getmetatable(r))
      assert.is_nil(rawget(r, "headers"))
      assert.truthy(r.raw_headers:find("X-Answer: yes", 1, true))
      assert.equal(#r.raw_headers, r.lazy)
      want[#want + 1] = "GET h=t" .. (i % 3) .. "," .. i .. ",close expect=nil ae=gzip len=0"
    end
    local log = wait_log(6)
    table.sort(log)
    table.sort(want)
    assert.same(want, log)
    assert.has_error(function() s:multi_poll(0, "nope") end)
    s:close()
  end)
end)
