-- SPDX-License-Identifier: MIT
-- examples/openresty runs as shipped: its nginx.conf (no thread_pool line; the port and,
-- as root, the user changed) in a copy of the directory next to this repo's lua/ and
-- build/, the sandbox as the API. /notify sends through notify.lua's one client per worker.
local H = require "spec.nginx.harness"
local F = require "spec.support.fixtures"
local proc = require "spec.support.proc"

local NAME = "examples/openresty as shipped #nginx"
if H.skip(NAME) then return end

describe(NAME, function()
  local dir, port, sb, pid
  local shq = H.shq

  setup(function()
    sb = require("chatmaid.sandbox").start{ rate_limit = false }
    dir = H.sh("mktemp -d /tmp/chatmaid-example.XXXXXX"):match("([^\n]+)")
    local ex = dir .. "/examples/openresty"
    assert(os.execute("mkdir -p " .. shq(ex .. "/logs") .. " && cp " .. shq(H.root)
                      .. "examples/openresty/*.lua " .. shq(ex) .. " && ln -s "
                      .. shq(H.root .. "lua") .. " " .. shq(dir .. "/lua") .. " && ln -s "
                      .. shq(H.root .. "build") .. " " .. shq(dir .. "/build")))
    port = H.free_port()
    local conf = H.read(H.root .. "examples/openresty/nginx.conf")
    local n
    conf, n = conf:gsub("listen 127%.0%.0%.1:8080;", "listen 127.0.0.1:" .. port .. ";")
    assert.equal(1, n)
    conf = conf:gsub("/usr/lib/nginx/modules", H.modules)
    H.write(ex .. "/nginx.conf", conf)
    local user = H.sh("id -u"):match("^0") and " -g 'user root;'" or ""
    local out, ok = H.sh("CHATMAID_API_KEY=" .. F.TEST_KEY .. " CHATMAID_BASE_URL=" .. sb.url
                         .. " CHATMAID_WEBHOOK_SECRET=" .. F.WEBHOOK_SECRET .. " "
                         .. shq(H.bin) .. " -p " .. shq(ex) .. " -c nginx.conf" .. user)
    assert(ok, out)
    pid = tonumber(H.read(ex .. "/logs/nginx.pid"):match("%d+"))
  end)

  teardown(function()
    if pid then proc.stop(pid, "QUIT") end
    if sb then sb:stop() end
    if dir then os.execute("rm -rf " .. shq(dir)) end
  end)

  local function post(to)
    local out = H.curl("-X POST -w ' HTTP=%{http_code}' 'http://127.0.0.1:" .. port
                       .. "/notify?to=" .. to:gsub("%+", "%%2B") .. "'")
    return out
  end

  it("sends through /notify, again and again with the same client", function()
    for _ = 1, 3 do
      local out = post("+15557654321")
      assert.matches("^sent msg_%S+\n HTTP=200$", out,
                     nil, H.read(dir .. "/examples/openresty/logs/error.log"))
    end
  end)

  it("answers 400 with the error kind for a bad number", function()
    assert.matches("^validation\n HTTP=400$", (post("12345")))
  end)
end)
