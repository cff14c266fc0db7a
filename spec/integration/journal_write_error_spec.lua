-- SPDX-License-Identifier: MIT
-- A journal that cannot be written mid-run (the disk is full, a file size limit): send_batch
-- stops and returns nil, err (reason "journal") whose message has the system's reason, and a
-- re-run with more room finishes the batch without sending anything twice. A real child
-- process under `ulimit -f` (SIGXFSZ ignored, so write(2) fails with EFBIG) and the sandbox.
local F = require "spec.support.fixtures"
local files = require "spec.support.files"

describe("a journal write failure #integration", function()
  local sb = F.block_sandbox{ rate_limit = false }
  local dir
  local get_dir = files.block_dir()
  before_each(function() dir = get_dir() end)

  it("stops the batch with the system's reason; the re-run sends nothing twice", function()
    local path = dir .. "/full.journal"
    local script = files.client_script(dir .. "/full.lua", sb.url, ([[
local items = {}
for i = 1, 30 do
  items[i] = { from = F.PHONE, to = "+1552100" .. (1000 + i), content = "full " .. i }
end
local r, err = c:send_batch(items, { batch_id = "full-1", journal = %q, concurrency = 2,
                                     rate_per_minute = false })
io.write(r and "completed" or (err.kind .. "|" .. tostring(err.reason) .. "|" .. tostring(err)
         .. "|" .. err.summary.sent), "\n")
]]):format(path))
    local lua = os.getenv("CHATMAID_LUA") or "lua5.4"
    local child = assert(io.popen("sh -c \"trap '' XFSZ; ulimit -f 2; exec " .. lua .. " "
                                  .. script .. "\" 2>&1"))
    local out = child:read("*a")
    child:close()
    local kind, reason, msg, sent = out:match("^(%w+)|(%w+)|(.-)|(%d+)\n$")
    assert.are.equal("interrupted", kind, out)
    assert.are.equal("journal", reason)
    assert.truthy(msg:find("cannot write " .. path .. ": File too large; ",
                           1, true), msg)
    local first = sb:stats().messagesCreated
    assert.is_true(first >= tonumber(sent) and first < 30, out)
    -- the same batch again, with room: the rest is sent, nothing twice
    local c = F.client(sb)
    local items = {}
    for i = 1, 30 do
      items[i] = { from = F.PHONE, to = "+1552100" .. (1000 + i), content = "full " .. i }
    end
    local r, s = c:send_batch(items, { batch_id = "full-1", journal = path,
                                       rate_per_minute = false })
    assert.is_table(r, tostring(s))
    assert.are.equal(30, s.sent + s.replayed + s.skipped)
    assert.are.equal(30, sb:stats().messagesCreated)
  end)
end)
