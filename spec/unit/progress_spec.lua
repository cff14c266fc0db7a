-- SPDX-License-Identifier: MIT
-- The CLI batch's ETA under a rate limit (issue 25): the limiter's schedule for the rows
-- left, never less than the pace so far. A fake clock; the CLI run against the sandbox is in
-- spec/integration/papercuts_spec.lua.
local progress = require "chatmaid.cli.progress"

describe("cli progress ETA", function()
  local t
  local function bar(total, rate)
    t = 0
    return progress.new{ total = total, tty = false, now = function() return t end,
                         stream = { write = function() end, flush = function() end },
                         rate_per_minute = rate }
  end
  local function eta(p) return select(2, p:stats()) end

  it("after a burst of 20 at 20/min, 30 rows left take two more windows", function()
    local p = bar(50, 20)
    for i = 1, 20 do t = i * 0.05; p:update(i, {}) end
    -- 20 more at ~61 s, the last 10 at ~122 s
    assert.near(0.05 * 10 + 61 + 61 - 1, eta(p), 0.01)
  end)

  it("at a steady 20/min, 30 rows left are about 90 s", function()
    local p = bar(90, 20)
    for i = 1, 60 do t = i * 3; p:update(i, {}) end
    assert.near(92, eta(p), 1)
    assert.equal("60/90 (66%) 0.3/s ETA 1m32s", (p:line()))
  end)

  it("counts neither skipped rows nor rows refused before sending", function()
    local p = bar(30, 20)
    t = 0.1
    for i = 1, 10 do p:update(i, { skipped = true }) end
    p:update(11, { err = { kind = "validation" } })
    -- nothing spent: the 19 rows left fit in the window (the pace so far decides)
    assert.truthy(eta(p) < 1, tostring(eta(p)))
  end)

  it("without a limit, is the pace so far", function()
    local p = bar(50, nil)
    for i = 1, 20 do t = i * 0.05; p:update(i, {}) end
    assert.near(1.5, eta(p), 1e-9)
  end)
end)
