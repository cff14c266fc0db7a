-- SPDX-License-Identifier: MIT
-- docs/reference/options.md against the code (issue 25): each table of options there names
-- exactly the options its function accepts, both ways, so the reference can neither promise
-- an option that raises "unknown option" nor miss one the code takes.
local B = require "spec.docs.blocks"
local base = require "chatmaid.base"
local client = require "chatmaid.client"

-- the option names of code tables (name -> type), as one set
local function names(...)
  local set = {}
  for i = 1, select("#", ...) do
    for k in pairs((select(i, ...))) do set[k] = true end
  end
  return set
end

describe("docs/reference/options.md #docs", function()
  for _, case in ipairs{
    { "`chatmaid.new(opts)`", names(base.OPTION_TYPES, client.NEW_OPTIONS) },
    { "`client:send(params)`", names(client.SEND_PARAMS) },
    { "`client:wait(id, opts)`", names(require("chatmaid.poll").OPTS) },
    { "`client:send_batch(items, opts)`", names(require("chatmaid.batch.plan").OPTS) },
    { "`chatmaid.sandbox.start(opts)`", names(require("chatmaid.sandbox").OPTS) },
  } do
    it("lists exactly the options of " .. case[1], function()
      local doc = B.table_names("docs/reference/options.md", case[1])
      assert.is_not_nil(next(doc), "no option table under " .. case[1])
      assert.same({}, B.missing(case[2], doc))
      assert.same({}, B.missing(doc, case[2]))
    end)
  end
end)
