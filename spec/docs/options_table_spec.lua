-- SPDX-License-Identifier: MIT
-- docs/reference/options.md against the code (issue 25): each table of options there names
-- exactly the options its function accepts, both ways, so the reference can neither promise
-- an option that raises "unknown option" nor miss one the code takes.
local base = require "chatmaid.base"
local client = require "chatmaid.client"
local plan = require "chatmaid.batch.plan"
local poll = require "chatmaid.poll"
local sandbox = require "chatmaid.sandbox"

-- The option names of one section: every `name` in the first cell of its table rows.
local function documented(text, heading)
  local start = text:find("\n## " .. heading .. "\n", 1, true)
  assert(start, "options.md has no section " .. heading)
  local stop = text:find("\n## ", start + 4, true) or #text
  local names = {}
  for row in text:sub(start, stop):gmatch("\n| ([^\n]-) |") do
    if row:find("^`") then
      for name in row:gmatch("`([%w_]+)`") do names[name] = true end
    end
  end
  return names
end

local function keys(...)
  local out = {}
  for i = 1, select("#", ...) do
    for k in pairs((select(i, ...))) do out[k] = true end
  end
  return out
end

local function sorted(set)
  local t = {}
  for k in pairs(set) do t[#t + 1] = k end
  table.sort(t)
  return t
end

describe("docs/reference/options.md #docs", function()
  local f = assert(io.open("docs/reference/options.md"))
  local text = f:read("*a")
  f:close()

  for _, case in ipairs{
    { "`chatmaid.new(opts)`", keys(base.OPTION_TYPES, client.NEW_OPTIONS) },
    { "`client:send(params)`", keys(client.SEND_PARAMS) },
    { "`client:wait(id, opts)`", keys(poll.OPTS) },
    { "`client:send_batch(items, opts)`", keys(plan.OPTS) },
    { "`chatmaid.sandbox.start(opts)`", keys(sandbox.OPTS) },
  } do
    it("lists exactly the options of " .. case[1], function()
      assert.same(sorted(case[2]), sorted(documented(text, case[1])))
    end)
  end
end)
