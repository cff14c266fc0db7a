-- SPDX-License-Identifier: MIT
-- Runs examples/frame_loop.lua and examples/luv_loop.lua against the sandbox, with every send
-- held 2 s by the server: the sends overlap and neither loop ever waits for them.
local F = require "spec.support.fixtures"
local run = require "spec.cli.run"

local function example(sb, name)
  local cmd = run.env_prefix{ CHATMAID_API_KEY = F.TEST_KEY, CHATMAID_BASE_URL = sb.url,
                              LUA_PATH = package.path, LUA_CPATH = package.cpath }
              .. " " .. run.LUA .. " " .. run.root .. "examples/" .. name .. " 3 2>&1; "
              .. "echo EXIT=$?"
  local p = assert(io.popen(cmd))
  local out = p:read("*a")
  p:close()
  return out, tonumber(out:match("EXIT=(%d+)"))
end

-- Whether the runtime the examples run under has lua-luv (Debian: lua-luv).
local function has_luv()
  local p = assert(io.popen(run.LUA .. " -e 'require \"luv\"' 2>/dev/null; echo EXIT=$?"))
  local out = p:read("*a")
  p:close()
  return out:match("EXIT=0") ~= nil
end

describe("the event loop examples #integration", function()
  local sb = F.block_sandbox{ rate_limit = false }

  before_each(function()
    assert(sb:fault{ path = "/v1/messages/send", method = "POST", count = 3, type = "delay",
                     seconds = 2 })
  end)

  it("frame_loop.lua: 3 sends of 2 s each, and no frame blocked", function()
    local out, code = example(sb, "frame_loop.lua")
    assert.equal(0, code, out)
    local sent, failed, frames, secs, worst = out:match(
      "sent (%d+), failed (%d+), (%d+) frames in ([%d.]+) s, worst frame work ([%d.]+) ms")
    assert.truthy(sent, out)
    assert.equal("3", sent)
    assert.equal("0", failed)
    secs, worst = tonumber(secs), tonumber(worst)
    assert.is_true(secs >= 1.9 and secs < 5.5, out)            -- overlapping, not 6 s
    assert.is_true(tonumber(frames) >= 60, out)                 -- the loop kept running
    assert.is_true(worst < 100, out)                            -- generous: a loaded machine
    assert.equal(3, sb:stats().byPath["POST /v1/messages/send"])
  end)

  if not has_luv() then
    pending("luv_loop.lua: lua-luv is not installed for " .. run.LUA
            .. " (Debian: apt-get install lua-luv)")
    return
  end

  it("luv_loop.lua: 3 sends of 2 s each, and the heartbeat kept its pace", function()
    local out, code = example(sb, "luv_loop.lua")
    assert.equal(0, code, out)
    assert.is_nil(out:find("EBADF", 1, true), out)
    local sent, failed, secs, late =
      out:match("sent (%d+), failed (%d+) in ([%d.]+) s; heartbeat at most ([%d.%-]+) ms late")
    assert.truthy(sent, out)
    assert.equal("3", sent)
    assert.equal("0", failed)
    assert.is_true(tonumber(secs) >= 1.9 and tonumber(secs) < 5.5, out)
    assert.is_true(tonumber(late) < 250, out)
    assert.equal(3, sb:stats().byPath["POST /v1/messages/send"])
  end)
end)
