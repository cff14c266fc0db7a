-- fork() (issue 13 item 3): a process that used a client forks, and parent and child use
-- that client at the same time. Each must get its own answers: the child starts fresh
-- handles (abandoning the parent's, untouched), and the parent keeps its connection.
local F = require "spec.support.fixtures"
local host = require "spec.support.host"
local tls_front = require "spec.support.tls_front"

-- Under make asan, LeakSanitizer's exit-time scan in the forked host's parent sometimes
-- crashes on its own ("Tracer caught signal 11" walking a bogus dynamic-TLS entry: GCC 12's
-- libasan with glibc 2.36; about 1 run in 10 of the batch case). Leak checking is left to
-- the other specs; ASan's memory checks still run here.
local ENV = {}
if os.getenv("ASAN_OPTIONS") then
  ENV.ASAN_OPTIONS = os.getenv("ASAN_OPTIONS") .. ":detect_leaks=0"
end

local function run(args) return host.run("spec/host/fork.lua", args, nil, ENV) end

describe("a client used across fork() #integration", function()
  local sb = F.block_sandbox({ rate_limit = false }, { reset = false })

  it("gives parent and child their own answers; the parent keeps its connection", function()
    local out, code = run{ sb.url, 30 }
    assert.equal(0, code, out)
    assert.truthy(out:find("child ok", 1, true), out)
    assert.truthy(out:find("parent ok", 1, true), out)
  end)

  it("batches (curl multi) on both sides get their own answers", function()
    local out, code = run{ sb.url, 12, "batch" }
    assert.equal(0, code, out)
    assert.truthy(out:find("child ok", 1, true), out)
    assert.truthy(out:find("parent ok", 1, true), out)
  end)

  describe("over TLS (nginx in front of the sandbox)", function()
    local front, why
    setup(function()
      front, why = tls_front.start(sb.port)
      assert(front or why == "no nginx" or why == "nginx did not start", why)
    end)
    teardown(function() if front then front.stop() end end)

    it("parent and child get their own answers", function()
      if not front then return pending("skipped: " .. why) end
      local out, code = run{ front.url, 20, "share", front.cert }
      assert.equal(0, code, out)
      assert.truthy(out:find("parent ok", 1, true), out)
    end)

    it("a child that closes the client leaves the parent's TLS connection alone", function()
      if not front then return pending("skipped: " .. why) end
      local out, code = run{ front.url, 10, "close", front.cert }
      assert.equal(0, code, out)
      assert.truthy(out:find("child ok", 1, true), out)
      assert.truthy(out:find("parent ok", 1, true), out)
    end)
  end)
end)
