-- SPDX-License-Identifier: MIT
-- chatmaid.sandbox.start from wherever the modules are (issue 25): by module name, with the
-- caller's package.path and cpath (no bin/ file to find), or through CHATMAID_SANDBOX_BIN
-- (a Lua script, or any executable such as luarocks' shell wrapper); and a script that ends
-- without sb:stop() exits at once, its sandbox following it.
-- (scripts/check-rocks.sh does the same from real luarocks trees.)
local proc = require "spec.support.proc"
local H = require "spec.support.sandbox_helper"

local LUA = os.getenv("CHATMAID_LUA") or "lua5.4"
local root = os.getenv("PWD") .. "/"

local q = require("spec.cli.run").quote

local function sh(cmd)
  local p = io.popen("(" .. cmd .. ") 2>&1; echo \"=$?\"")
  local out = p:read("*a")
  p:close()
  local body, code = out:match("^(.*)=(%d+)%s*$")
  return body, tonumber(code)
end

-- a tree with the Lua modules alone (no bin/, no checkout around them)
local function tree()
  local dir = os.tmpname()
  os.remove(dir)
  assert(os.execute("mkdir -p " .. q(dir) .. " && cp -R " .. q(root .. "lua/chatmaid") .. " "
                    .. q(dir)))
  return dir
end

-- lua_from(dir, code, env): `code` run from /, its path the tree plus the system's, its cpath
-- the build's C modules plus the system's
local function lua_from(dir, code, env)
  local cpath = package.cpath:match("^([^;]-/%?%.so)") or "build/?.so"
  if cpath:sub(1, 1) ~= "/" then cpath = root .. cpath end
  local lpath = dir .. "/?.lua;" .. dir .. "/?/init.lua;"
  -- Under make asan the children get no LeakSanitizer: gcc 12's LSan crashes at exit in
  -- these processes ("Tracer caught signal 11" while it reads a dlopen'd module's dynamic TLS
  -- block, "DTLS 5 at 0xe7-..."), a libsanitizer/glibc mismatch, not a leak. ASan's memory
  -- checks still run there; the spec process itself keeps LSan.
  local asan = (os.getenv("LD_PRELOAD") or ""):find("asan", 1, true)
          and "ASAN_OPTIONS=" .. q((os.getenv("ASAN_OPTIONS") or "") .. ":detect_leaks=0") or ""
  return sh("cd / && " .. asan .. " " .. (env or "") .. " " .. q(LUA) .. " -e "
            .. q("package.path = " .. ("%q"):format(lpath) .. " .. package.path; "
                 .. "package.cpath = " .. ("%q"):format(cpath .. ";") .. " .. package.cpath; "
                 .. code))
end

-- start a sandbox, send one message to it with the library, stop it
local START_AND_SEND = [[
  local sb = require("chatmaid.sandbox").start{}
  local src = debug.getinfo(require("chatmaid.sandbox").start, "S").source
  local client = assert(require("chatmaid").new{ base_url = sb.url,
                                                 api_key = "sk_test_sandbox_0000000000000001" })
  local msg, err = client:send{ to = "+15557654321", content = "hi" }
  sb:stop()
  print("sent " .. tostring(msg and msg.id) .. " " .. tostring(err))
  print("from " .. src)
]]

describe("chatmaid.sandbox.start #sandbox", function()
  local dir
  setup(function() dir = tree() end)
  teardown(function() os.execute("rm -rf " .. q(dir)) end)

  it("raises on a misspelt option or a wrong type, before starting anything", function()
    local sandbox = require "chatmaid.sandbox"
    assert.has_error(function() sandbox.start{ rate_limt = 5 } end,
      "chatmaid.sandbox.start: unknown option 'rate_limt' (did you mean 'rate_limit'?)")
    assert.has_error(function() sandbox.start{ port = "8080" } end,
      "chatmaid.sandbox.start: option 'port' must be a number (got string)")
  end)

  it("starts the server by module name from a tree without bin/, from any directory",
     function()
    local out, code = lua_from(dir, START_AND_SEND)
    assert.equal(0, code, out)
    assert.truthy(out:find("sent msg_%w+ nil"), out)
    assert.truthy(out:find("from @" .. dir .. "/chatmaid/sandbox.lua", 1, true), out)
  end)

  it("runs CHATMAID_SANDBOX_BIN: a shell wrapper as it is, a Lua script with the interpreter",
     function()
    local wrapper = dir .. "/chatmaid-sandbox-wrapper"
    local f = assert(io.open(wrapper, "wb"))
    f:write("#!/bin/sh\nexec ", q(LUA), " ", q(root .. "bin/chatmaid-sandbox"), ' "$@"\n')
    f:close()
    assert(os.execute("chmod +x " .. q(wrapper)))
    local out, code = lua_from(dir, START_AND_SEND, "CHATMAID_SANDBOX_BIN=" .. q(wrapper))
    assert.equal(0, code, out)
    assert.truthy(out:find("sent msg_%w+ nil"), out)
    -- bin/chatmaid-sandbox itself: `#!/usr/bin/env lua5.4`, run with this interpreter
    out, code = lua_from(dir, START_AND_SEND,
                         "CHATMAID_SANDBOX_BIN=" .. q(root .. "bin/chatmaid-sandbox"))
    assert.equal(0, code, out)
    assert.truthy(out:find("sent msg_%w+ nil"), out)
    -- a command that does not start says what was run and what it printed
    out, code = lua_from(dir, "require('chatmaid.sandbox').start{}",
                         "CHATMAID_SANDBOX_BIN=/nonexistent/chatmaid-sandbox")
    assert.are_not.equal(0, code)
    assert.truthy(out:find("chatmaid.sandbox: failed to start (exec ", 1, true), out)
    assert.truthy(out:find("/nonexistent/chatmaid-sandbox", 1, true), out)
  end)

  it("lets a script that fails without sb:stop() exit, and its sandbox follows", function()
    local t0 = os.time()
    local out, code = lua_from(dir, [[
      local sb = require("chatmaid.sandbox").start{}
      print("pid " .. sb.pid)
      io.stdout:flush()
      error("the test script fails")]])
    assert.are_not.equal(0, code)
    assert.truthy(out:find("the test script fails", 1, true), out)
    assert.truthy(os.time() - t0 <= 5, "the script took " .. (os.time() - t0) .. " s to exit")
    local pid = tonumber(out:match("pid (%d+)"))
    assert.truthy(pid, out)
    -- the sandbox checks once a second that its starter is still there
    assert.is_true(H.wait_until(function() return not proc.alive(pid) end, 4),
                   "the sandbox outlived its script")
  end)
end)
