-- SPDX-License-Identifier: MIT
-- chatmaid messages [--status S] [--phone ID] [--environment test|live] [--limit N] [--all]
local output = require "chatmaid.cli.output"

local _M = { commands = {} }

function _M.register(p)
  local c = p:command("messages", "List messages, newest first.")
    :epilog([[
Without --all, shows the newest --limit messages (default 20). With --all, walks every page
(lazily; with --json each message is printed as soon as its page arrives). --json prints
JSON lines: one message object per line.

Examples:
  chatmaid messages
  chatmaid messages --status failed --phone ph_primary --limit 100
  chatmaid messages --environment test   # a live key's test messages
  chatmaid messages --all --json | jq -r .to]])
  c:option("--status", "Only this status."):choices{ "pending", "sent", "delivered", "read",
                                                      "failed" }
  c:option("--phone", "Only messages sent from this phone id."):target("phone_number_id")
  c:option("--environment", "Only test or live messages (default: the key's environment).")
    :choices{ "test", "live" }
  c:mutex(
    c:option("--limit", "At most N messages (default 20)."):convert(function(v)
      return require("chatmaid.cli").integer(1)(v)
    end),
    c:flag("--all", "Every message."))
end

local COLUMNS = {
  { "ID", function(m) return m.id end },
  { "STATUS", function(m) return m.status end },
  { "TO", function(m) return m.to end },
  { "FROM", function(m) return m.from end },   -- the sender number (messages carry no id)
  { "CREATED", function(m) return m.createdAt end },
  { "CONTENT", function(m)
      local s = m.content or ""
      if m.mediaUrls and #m.mediaUrls > 0 then
        s = (s ~= "" and (s .. " ") or "") .. "[" .. #m.mediaUrls .. " media]"
      end
      return output.truncate(s, 40)
    end },
}
_M.COLUMNS = COLUMNS

function _M.commands.messages(a, ctx)
  local c, code = ctx.client()
  if not c then return code end
  local limit = a.limit or 20
  local rows = {}
  local function emit(m)
    if ctx.json then ctx.stdout:write(output.json(m), "\n")
    else rows[#rows + 1] = m end
  end
  local filter = { status = a.status, phone_number_id = a.phone_number_id,
                   environment = a.environment }
  if not a.all and limit <= 100 then
    filter.limit = limit
    local page, err = c:list_messages(filter)
    if not page then return ctx.fail(err) end
    for _, m in ipairs(page.data or {}) do emit(m) end
  else
    if type(c.messages) ~= "function" then
      return ctx.fail("chatmaid: this version of the library has no client:messages")
    end
    filter.page_size = 100
    if not a.all then filter.max_items = limit end
    for m, err in c:messages(filter) do
      if not m then
        ctx.stdout:write(output.table(COLUMNS, rows, ctx.tty_out))
        return ctx.fail(err)
      end
      emit(m)
    end
  end
  if not ctx.json then ctx.stdout:write(output.table(COLUMNS, rows, ctx.tty_out)) end
  return 0
end

return _M
