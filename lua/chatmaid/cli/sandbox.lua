-- SPDX-License-Identifier: MIT
-- chatmaid sandbox: run the local Chatmaid v1 emulator in the foreground
-- (README: Test your own code against the sandbox).
local _M = { commands = {} }

function _M.register(p)
  local s = p:command("sandbox", "Run the local Chatmaid API emulator in the foreground.")
    :epilog([[
Prints the URL and the demo API keys, then serves until Ctrl-C. Takes every option of
chatmaid-sandbox (faults through --control, webhooks, time factor, rate limit).

Examples:
  chatmaid sandbox
  chatmaid sandbox --port 0 --config sandbox.json
  chatmaid sandbox --control --rate-limit off --webhook-url http://127.0.0.1:9000/hook
  export CHATMAID_BASE_URL=http://127.0.0.1:8787
  export CHATMAID_API_KEY=sk_test_sandbox_0000000000000001]])
  -- every option of chatmaid-sandbox, from the one definition
  require("chatmaid.sandbox.cli").register(s)
end

function _M.commands.sandbox(a, ctx)
  local sbcli = require "chatmaid.sandbox.cli"
  local util = require "chatmaid.sandbox.util"
  local settings, why = sbcli.from_args(a)
  if not settings then return ctx.usage(why) end
  local opts, err = sbcli.server_options(settings)
  if not opts then return ctx.usage(err) end
  local ok, serr = sbcli.serve(opts, function(srv)
    local url = "http://127.0.0.1:" .. srv.port
    local o = ctx.stdout
    o:write("chatmaid sandbox listening on ", url, " pid=", tostring(util.pid()), "\n")
    o:write("  export CHATMAID_BASE_URL=", url, "\n")
    for _, acc in ipairs(srv.app.config.accounts or {}) do
      for _, k in ipairs(acc.keys or {}) do
        -- demo keys of a local emulator, printed on purpose (never a real key)
        local scopes = k.scopes and #k.scopes > 0 and table.concat(k.scopes, ",") or "no scopes"
        o:write("  key ", tostring(k.key), "  (", tostring(acc.id), "; ", scopes, ")\n")
      end
    end
    o:write("Ctrl-C to stop.\n")
    o:flush()
  end)
  if not ok then
    ctx.stderr:write("chatmaid sandbox: ", tostring(serr), "\n")
    return 1
  end
  return 0
end

return _M
