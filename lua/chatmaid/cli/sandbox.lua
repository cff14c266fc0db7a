-- SPDX-License-Identifier: MIT
-- chatmaid sandbox: run the local Chatmaid v1 emulator in the foreground
-- (README: Test your own code against the sandbox).
local _M = { commands = {} }

function _M.register(p)
  local s = p:command("sandbox", "Run the local Chatmaid API emulator in the foreground.")
    :epilog([[
Prints the URL and the demo API keys, then serves until Ctrl-C. For more switches (faults,
webhooks, time factor) run chatmaid-sandbox --help.

Examples:
  chatmaid sandbox
  chatmaid sandbox --port 0 --config sandbox.json
  export CHATMAID_BASE_URL=http://127.0.0.1:8787
  export CHATMAID_API_KEY=sk_test_sandbox_0000000000000001]])
  s:option("--port", "Port on 127.0.0.1 (0 = any free port; default 8787)."):convert(function(v)
    return require("chatmaid.cli").integer(0, 65535)(v)
  end)
  s:option("--config", "Lua file returning a table, or a JSON file.")
  s:flag("--control", "Enable the /__sandbox/ control endpoints.")
  s:flag("--verbose", "Log one line per request to stderr.")
end

function _M.commands.sandbox(a, ctx)
  local cfg = {}
  if a.config then
    local why
    cfg, why = require("chatmaid.sandbox.util").load_config(a.config)
    if not cfg then return ctx.usage(why) end
  end
  local util = require "chatmaid.sandbox.util"
  local srv, err = require("chatmaid.sandbox.server").new{
    port = a.port or 8787, config = cfg, control = a.control, verbose = a.verbose,
  }
  if not srv then
    ctx.stderr:write("chatmaid sandbox: ", tostring(err), "\n")
    return 1
  end
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
  srv:run()
  return 0
end

return _M
