-- SPDX-License-Identifier: MIT
-- core.signal_watch / signal_pending / signal_restore: a signal becomes a flag, and a sleep
-- in core.sleep ends early when one arrives.
local core = require "chatmaid.core"

local own_pid = require("spec.support.proc").pid

describe("chatmaid.core signals", function()
  after_each(function() core.signal_restore() end)

  it("turns SIGINT and SIGTERM into a flag instead of ending the process", function()
    assert.is_true(core.signal_watch{ "INT", "TERM" })
    assert.is_nil(core.signal_pending())
    os.execute("kill -TERM " .. own_pid())
    assert.are.equal("TERM", core.signal_pending())
    -- (system(3) ignores SIGINT while its child runs: send that one from the background)
    os.execute("(sleep 0.1; kill -INT " .. own_pid() .. ") >/dev/null 2>&1 &")
    core.sleep(5)
    assert.are.equal("INT", core.signal_pending())
    -- watching again clears the flag
    core.signal_watch{ "INT" }
    assert.is_nil(core.signal_pending())
    assert.is_true(core.signal_restore())
    assert.is_nil(core.signal_pending())
    assert.is_true(core.signal_restore())    -- idempotent
  end)

  it("ends core.sleep early when a watched signal arrives", function()
    core.signal_watch{ "INT" }
    os.execute("(sleep 0.3; kill -INT " .. own_pid() .. ") >/dev/null 2>&1 &")
    local t0 = core.monotime()
    core.sleep(10)
    local took = core.monotime() - t0
    assert.is_true(took < 3, "slept " .. took)
    assert.are.equal("INT", core.signal_pending())
  end)

  it("raises on a signal it does not handle", function()
    assert.has_error(function() core.signal_watch{ "HUP" } end,
                     "chatmaid.core: signal_watch: unknown signal 'HUP' (INT, TERM)")
  end)
end)
