-- SPDX-License-Identifier: MIT
-- chatmaid account | usage [day|week|month]
local _M = { commands = {} }

function _M.register(p)
  p:command("account", "Show the account behind the API key.")
    :epilog("Examples:\n  chatmaid account\n  chatmaid account --json | jq .stats")
  local u = p:command("usage", "Show message and request counts for a period.")
    :epilog("Examples:\n  chatmaid usage\n  chatmaid usage day --json")
  u:argument("period", "day, week or month (default month)."):args("?")
    :choices{ "day", "week", "month" }
end

function _M.commands.account(_, ctx)
  local c, code = ctx.client()
  if not c then return code end
  local v, err = c:account()
  if not v then return ctx.fail(err) end
  return ctx.print(v)
end

function _M.commands.usage(a, ctx)
  local c, code = ctx.client()
  if not c then return code end
  local v, err = c:usage(a.period or "month")
  if not v then return ctx.fail(err) end
  return ctx.print(v)
end

return _M
