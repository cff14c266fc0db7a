-- SPDX-License-Identifier: MIT
-- The special blocks of the docs run as pasted (issues 14 and 25). They are found by the HTML
-- comment before their fence (`<!-- doc-test: NAME ... -->`, spec/docs/blocks.lua):
--   install      (README.md) the library rock's luarocks line (into a temporary tree) and the
--                last line, the require check
--   install-more (README.md) the other rocks' luarocks lines, into the same tree; then a
--                seen set, a sandbox and the `chatmaid` command from that tree
--   quickstart   (README.md) run against a sandbox with the environment its `quickstart-env`
--                block sets
--   nginx        (docs/openresty.md) `nginx -t -p <tmp>`, then started with notify.lua /
--                webhook.lua (the blocks of those names) and one request through /notify
-- Every other block: spec/docs/guides_spec.lua.
local F = require "spec.support.fixtures"
local B = require "spec.docs.blocks"

local root = B.root
local read, write, q, sh = B.read, B.write, B.q, B.sh

-- the one block marked `doc-test: name` in the published docs (spec/docs/blocks.lua)
local function block(name) return B.special(name) end

local function lines(text)
  local t = {}
  for l in text:gmatch("([^\n]*)\n") do t[#t + 1] = l end
  return t
end

local function tmpdir()
  local d = sh("mktemp -d /tmp/chatmaid-readme.XXXXXX"):match("([^\n]+)")
  assert(d and d ~= "")
  return d
end

local LUA = os.getenv("CHATMAID_LUA") or "lua5.4"

describe("README.md and docs/openresty.md special blocks #docs", function()
  -- the packages of a block's `apt-get install -y` line (and its continuation lines)
  local function apt_packages(l)
    assert.truthy(l[1]:match("^apt%-get install %-y "), l[1])
    local pkgs = {}
    for i = 1, #l do
      if l[i]:match("^luarocks") then break end
      for p in l[i]:gsub("^apt%-get install %-y", ""):gmatch("[%w%.%-]+") do
        pkgs[#pkgs + 1] = p
      end
    end
    return pkgs
  end

  -- every package is one Debian 12 has (installed here by scripts/deps.sh or CI)
  local function assert_installed(pkgs)
    local out, code = sh("dpkg-query -W -f='${Status}\\n' " .. table.concat(pkgs, " ")
                         .. " | grep -vc 'ok installed'")
    assert.equal("0", out:match("%d+"), "not installed: " .. table.concat(pkgs, " "))
    assert.equal(1, code)   -- grep -c found no line that is not installed
  end

  local function has(list, x)
    for _, v in ipairs(list) do if v == x then return true end end
    return false
  end

  it("Install: the library rock alone, then the other three into the same temporary tree; "
     .. "each is used from that tree", function()
    local l = lines(block("install").text)
    local more = lines(block("install-more").text)
    -- the library's packages, and none that only the other rocks need
    local pkgs = apt_packages(l)
    assert.is_true(#pkgs >= 8, table.concat(pkgs, " "))
    assert_installed(pkgs)
    local others = apt_packages(more)
    assert_installed(others)
    for _, p in ipairs{ "libhiredis-dev", "lua-socket", "lua-argparse" } do
      assert.is_false(has(pkgs, p), p .. " is on the library rock's line")
      assert.is_true(has(others, p), p .. " is missing from the other rocks' line")
    end
    -- the luarocks lines, as written: the library's, then one per other rock
    local LINE = "^luarocks %-%-lua%-version=5%.4 make %-%-deps%-mode none "
                 .. "(rockspec/([%w%-]+)%-scm%-1%.rockspec)$"
    local rocks = { l[#l - 1] }
    assert.equal("luarocks --lua-version=5.4 make --deps-mode none "
                 .. "rockspec/chatmaid-scm-1.rockspec", rocks[1])
    local names = {}
    for _, line in ipairs(more) do
      if line:match("^luarocks") then
        local _, name = line:match(LINE)
        assert.truthy(name, line)
        rocks[#rocks + 1], names[#names + 1] = line, name
      end
    end
    assert.same({ "chatmaid-redis", "chatmaid-sandbox", "chatmaid-cli" }, names)
    -- a copy of what the rockspecs build from: the directories their paths name, and csrc/
    -- (rockspec/build.mk compiles it)
    local dirs = { csrc = true }
    for _, line in ipairs(rocks) do
      for d in read(root .. line:match(LINE)):gmatch('"([%w_%-]+)/[^"]*"') do
        if d ~= "build" then dirs[d] = true end
      end
    end
    local list = {}
    for d in pairs(dirs) do list[#list + 1] = d end
    table.sort(list)
    local dir = tmpdir()
    finally(function() os.execute("rm -rf " .. q(dir)) end)
    local _, cp = sh("cd " .. q(root) .. " && cp -r " .. table.concat(list, " ") .. " " .. q(dir))
    assert.equal(0, cp)
    local tree = dir .. "/tree"
    local function install(line)
      local log, rc = sh("cd " .. q(dir) .. " && " .. line .. " --tree " .. q(tree))
      assert.equal(0, rc, line .. "\n" .. log)
    end
    install(rocks[1])
    -- the last line, with the tree on the paths (what a system-wide install gives)
    local check = l[#l]
    assert.equal([[cd / && lua5.4 -e 'print(require("chatmaid").VERSION)']], check)
    local env = "LUA_PATH=" .. q(tree .. "/share/lua/5.4/?.lua;" .. tree
                .. "/share/lua/5.4/?/init.lua;;")
                .. " LUA_CPATH=" .. q(tree .. "/lib/lua/5.4/?.so;;")
    local v, vrc = sh(env .. " sh -c " .. q(check))
    assert.equal(0, vrc, v)
    assert.equal(require("chatmaid").VERSION .. "\n", v)
    assert.falsy(io.open(tree .. "/lib/lua/5.4/chatmaid/redis/core.so"), "the library rock "
                 .. "installed chatmaid.redis.core")
    -- the other rocks, into the same tree
    for i = 2, #rocks do install(rocks[i]) end
    -- from that tree: a seen set on a real redis-server, and a sandbox started by
    -- chatmaid.sandbox.start{} that the library sends a message to
    local redis = require("spec.support.redis_helper").start()
    finally(function() redis:stop() end)
    local script = [=[
      local TREE, URL = ...
      local function from_tree(what, file)
        assert(file and file:find(TREE, 1, true), what .. " is not the installed one: "
               .. tostring(file))
      end
      from_tree("chatmaid.redis.core", package.searchpath("chatmaid.redis.core", package.cpath))
      local set = require("chatmaid.redis").seen_set{ url = URL }
      assert(set:seen("evt_readme") == false and set:seen("evt_readme") == true)
      local sandbox = require "chatmaid.sandbox"
      from_tree("chatmaid.sandbox", debug.getinfo(sandbox.start, "S").source)
      local sb = sandbox.start{}
      local client = assert(require("chatmaid").new{
        api_key = "sk_test_sandbox_0000000000000001", base_url = sb.url })
      local msg, err = client:send{ to = "+15557654321", content = "from the installed tree" }
      sb:stop()
      assert(msg, tostring(err))
      print(msg.status)
    ]=]
    write(dir .. "/installed.lua", script)
    -- (not this spec's CHATMAID_LUA, the Lua under test: the tree is for lua5.4)
    local out, rc = sh("cd / && env -u CHATMAID_LUA -u CHATMAID_SANDBOX_BIN " .. env
                       .. " lua5.4 " .. q(dir .. "/installed.lua") .. " "
                       .. q(tree) .. " " .. q(redis.url))
    assert.equal(0, rc, out)
    assert.equal("sent\n", out)
    -- the installed command (luarocks' wrapper), with the tree on the paths
    out, rc = sh("cd / && " .. env .. " " .. q(tree .. "/bin/chatmaid") .. " --version")
    assert.equal(0, rc, out)
    assert.equal("chatmaid " .. require("chatmaid").VERSION .. "\n", out)
  end)

  it("Quickstart: runs against the sandbox with the environment the README sets", function()
    local sb = F.sandbox{ rate_limit = false }
    local dir = tmpdir()
    finally(function()
      sb:stop()
      os.execute("rm -rf " .. q(dir))
    end)
    write(dir .. "/quickstart.lua", block("quickstart").text)
    local env, cmd = {}, nil
    for _, l in ipairs(lines(block("quickstart-env").text)) do
      if l:match("^export ") then
        for k, v in l:gmatch("([%u_]+)=(%S+)") do env[k] = v end
      elseif l ~= "" then
        cmd = l
      end
    end
    assert.equal("http://127.0.0.1:8787", env.CHATMAID_BASE_URL)   -- --port 8787 in the text
    assert.equal(F.TEST_KEY, env.CHATMAID_API_KEY)
    assert.equal(F.PHONE, env.CHATMAID_FROM)
    assert.equal("lua5.4 quickstart.lua", cmd)
    env.CHATMAID_BASE_URL = sb.url                                  -- this spec's sandbox
    -- the installed module: here the checkout's lua/ and the core built for this Lua
    local cpath = package.cpath:gsub("([^;]+)", function(e)
      if e:sub(1, 1) ~= "/" then return root .. e:gsub("^%./", "") end
    end)
    local prefix = "LUA_PATH=" .. q(root .. "lua/?.lua;" .. root .. "lua/?/init.lua;;")
                   .. " LUA_CPATH=" .. q(cpath)
    local function run(e)
      local parts = { prefix }
      for k, v in pairs(e) do parts[#parts + 1] = k .. "=" .. q(v) end
      return sh("cd " .. q(dir) .. " && env " .. table.concat(parts, " ") .. " "
                .. cmd:gsub("^lua5%.4", LUA))
    end
    local out, code = run(env)
    assert.equal(0, code, out)
    assert.truthy(out:match("^msg_%x+\tsent\n$"), out)
    -- without CHATMAID_FROM: the one connected phone of the account
    env.CHATMAID_FROM = nil
    out, code = run(env)
    assert.equal(0, code, out)
    assert.truthy(out:match("^msg_%x+\tsent\n$"), out)
    assert.equal(2, sb:stats().messagesCreated)
  end)

  describe("nginx.conf to copy #nginx", function()
    local H = require "spec.nginx.harness"
    local ok, why = H.guard("README nginx.conf")
    if not ok then
      pending("skipped: " .. why)
      return
    end

    it("passes nginx -t as a -p instance, sends through notify.lua, receives with webhook.lua",
       function()
      local sb = F.sandbox{ rate_limit = false }
      local dir = tmpdir()
      local started = false
      local port = H.free_port()
      local function nginx(args)
        return sh("env CHATMAID_API_KEY=" .. F.TEST_KEY .. " CHATMAID_BASE_URL=" .. sb.url
                  .. " CHATMAID_WEBHOOK_SECRET=" .. F.WEBHOOK_SECRET
                  .. " " .. q(H.bin) .. " -p " .. q(dir) .. " -e logs/error.log -c nginx.conf "
                  .. args)
      end
      finally(function()
        if started then nginx("-s quit") end
        sb:stop()
        -- wait for the master to go before removing its prefix
        for _ = 1, 50 do
          if not io.open(dir .. "/logs/nginx.pid") then break end
          os.execute("sleep 0.1")
        end
        os.execute("rm -rf " .. q(dir))
      end)
      local conf = block("nginx").text
      assert.truthy(conf:find("/path/to/lua-chatmaid/", 1, true))
      assert.truthy(conf:find("listen 127.0.0.1:8080;", 1, true))
      -- the two edits the README asks for: this checkout, and a free port for the spec
      conf = conf:gsub("/path/to/lua%-chatmaid/", (root:gsub("%%", "%%%%")))
                 :gsub("listen 127%.0%.0%.1:8080;", "listen 127.0.0.1:" .. port .. ";")
      write(dir .. "/nginx.conf", conf)
      write(dir .. "/notify.lua", block("notify.lua").text)
      write(dir .. "/webhook.lua", block("webhook.lua").text)
      -- `mkdir -p logs`, as the README says; the workers (nobody, under root) read the prefix
      os.execute("mkdir -p " .. q(dir .. "/logs") .. " && chmod 755 " .. q(dir))

      local out, code = nginx("-t")
      assert.equal(0, code, out)
      assert.truthy(out:find("test is successful", 1, true), out)
      assert.falsy(out:find("already loaded", 1, true), out)

      out, code = nginx("")
      assert.equal(0, code, out)
      started = true
      assert.truthy(io.open(dir .. "/logs/nginx.pid"), "pid file under the prefix")
      local body, rc = H.curl("-X POST " .. q("http://127.0.0.1:" .. port
                                             .. "/notify"))
      assert.truthy(rc, body)
      assert.truthy(body:match("^msg_%x+ sent\n$"),
                    body .. "\n" .. (read(dir .. "/logs/error.log") or ""))
      assert.equal(1, sb:stats().messagesCreated)
      -- webhook.lua: a signed delivery is answered 200, the same again as a duplicate, and
      -- a wrong signature 401
      local wh = require "chatmaid.webhook"
      local payload = '{"event":"message.sent","timestamp":"2026-01-01T10:00:00.000Z",'
                      .. '"data":{"messageId":"msg_1","status":"sent"}}'
      write(dir .. "/body.json", payload)
      local function deliver(sig)
        return H.curl("-X POST --data-binary @" .. q(dir .. "/body.json")
                      .. " -H 'Content-Type: application/json' -H "
                      .. q("X-Chatmaid-Signature: " .. sig) .. " -w ' %{http_code}' "
                      .. q("http://127.0.0.1:" .. port .. "/webhooks/chatmaid"))
      end
      local sig = wh.sign(payload, F.WEBHOOK_SECRET, os.time())
      assert.equal('{"received":true}\n 200', deliver(sig))
      assert.equal('{"received":true,"duplicate":true}\n 200', deliver(sig))
      local bad = deliver(wh.sign(payload, "whsec_wrong", os.time()))
      assert.truthy(bad:match(" 401$"), bad)
    end)
  end)
end)
