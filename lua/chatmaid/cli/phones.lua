-- SPDX-License-Identifier: MIT
-- chatmaid phones | phone REF [--status]
local output = require "chatmaid.cli.output"

local _M = { commands = {} }

function _M.register(p)
  p:command("phones", "List the account's phone numbers.")
    :epilog("--json prints JSON lines: one phone object per line.\n\n"
            .. "Examples:\n  chatmaid phones\n  chatmaid phones --json | jq -r .id")
  local c = p:command("phone", "Show one phone number (by id or E.164 number).")
    :epilog("Examples:\n  chatmaid phone ph_primary\n  chatmaid phone +15551230001 --status"
            .. "\n  chatmaid phone ph_primary --status --json")
  c:argument("ref", "Phone id (ph_...) or E.164 number (+1555...).")
  c:flag("--status", "Only the connection status."):target("status_only")
end

local COLUMNS = {
  { "ID", function(ph) return ph.id end },
  { "NUMBER", function(ph) return ph.phoneNumber end },
  { "NAME", function(ph) return ph.displayName end },
  { "STATUS", function(ph) return ph.connectionStatus end },
  { "LAST CONNECTED", function(ph) return ph.lastConnectedAt end },
}

function _M.commands.phones(_, ctx)
  local c, code = ctx.client()
  if not c then return code end
  local list, err = c:phone_numbers()
  if not list then return ctx.fail(err) end
  if ctx.json then
    for _, ph in ipairs(list) do ctx.stdout:write(output.json(ph), "\n") end
  else
    ctx.stdout:write(output.table(COLUMNS, list, ctx.tty_out))
  end
  return 0
end

function _M.commands.phone(a, ctx)
  local c, code = ctx.client()
  if not c then return code end
  local v, err
  if a.status_only then v, err = c:phone_status(a.ref) else v, err = c:phone_number(a.ref) end
  if not v then return ctx.fail(err) end
  return ctx.print(v)
end

return _M
