-- SPDX-License-Identifier: MIT
-- chatmaid webhook verify | webhook sign. Secrets come only from environment variables named
-- on the command line (a secret in argv is visible to other users), and are never printed.
local output = require "chatmaid.cli.output"

local _M = { commands = {} }

function _M.register(p)
  local w = p:command("webhook", "Verify or sign a webhook delivery (body on stdin).")
    :epilog([[
Examples:
  export CHATMAID_WEBHOOK_SECRET=whsec_...
  chatmaid webhook verify --secret-env CHATMAID_WEBHOOK_SECRET --header "$SIG" < body.json
  chatmaid webhook sign --secret-env CHATMAID_WEBHOOK_SECRET < body.json]])
  w:command_target("webhook_command")
  local v = w:command("verify", "Check the X-Chatmaid-Signature of a raw body on stdin.")
    :epilog([[
Reads the exact request body from stdin (binary-safe: do not reformat it). On success prints
the verified body (the event JSON) and exits 0; otherwise prints the reason on stderr and
exits 3. Repeat --secret-env during a secret rotation: any matching secret is accepted.

Examples:
  chatmaid webhook verify --secret-env CHATMAID_WEBHOOK_SECRET \
      --header 't=1767258000,v1=5f0c...' < body.json
  chatmaid webhook verify --secret-env OLD_SECRET --secret-env NEW_SECRET \
      --tolerance 600 --header "$SIG" < body.json | jq .event]])
  v:option("--secret-env", "Name of the environment variable holding the secret.")
    :count("+"):target("secret_env")
  v:option("--header", "The X-Chatmaid-Signature header value (t=...,v1=...)."):count(1)
  v:option("--tolerance", "Seconds of clock skew accepted, both ways (default 300).")
    :convert(function(x) return require("chatmaid.cli").positive(x) end)
  local s = w:command("sign", "Print an X-Chatmaid-Signature header for a body on stdin.")
    :epilog([[
For tests: signs stdin with the secret and the current time (or --timestamp).

Examples:
  chatmaid webhook sign --secret-env CHATMAID_WEBHOOK_SECRET < body.json
  curl -H "X-Chatmaid-Signature: $(chatmaid webhook sign --secret-env S < body.json)" \
       --data-binary @body.json http://localhost:8080/webhooks]])
  s:option("--secret-env", "Name of the environment variable holding the secret.")
    :count("+"):target("secret_env")
  s:option("--timestamp", "Unix time to sign with (default: now)."):convert(function(x)
    return require("chatmaid.cli").integer(0)(x)
  end)
end

-- secrets(names) -> array | nil, message (names the variable, never shows a value)
local function secrets(names)
  local list = {}
  for i, name in ipairs(names) do
    local v = os.getenv(name)
    if v == nil or v == "" then
      return nil, "environment variable " .. name .. " (--secret-env) is not set or empty"
    end
    list[i] = v
  end
  return list
end

local function read_stdin()
  local body = io.stdin:read("*a")
  return body or ""
end

function _M.commands.webhook(a, ctx)
  local list, why = secrets(a.secret_env)
  if not list then return ctx.usage(why) end
  local webhook = require "chatmaid.webhook"
  local body = read_stdin()
  if a.webhook_command == "sign" then
    local header = webhook.sign(body, #list == 1 and list[1] or list, a.timestamp)
    if ctx.json then
      ctx.stdout:write(output.json{ header = header,
                                    timestamp = tonumber(header:match("^t=(%d+)")) }, "\n")
    else
      ctx.stdout:write(header, "\n")
    end
    return 0
  end
  local event, err = webhook.construct_event(body, a.header, #list == 1 and list[1] or list,
    { tolerance = a.tolerance, secret_name = "$" .. table.concat(a.secret_env, ", $")
                                             .. ", from --secret-env" })
  if not event then
    ctx.stderr:write(output.one_line(tostring(err)), " [reason: ", tostring(err.reason), "]\n")
    -- A body saved by an editor, `echo` or a heredoc ends with a newline the sender never
    -- signed: say so when the signature matches without it (verification still fails).
    local trimmed = err.reason == "mismatch" and body:match("^(.-)\r?\n$")
    if trimmed and webhook.construct_event(trimmed, a.header, #list == 1 and list[1] or list,
                                           { tolerance = a.tolerance }) then
      ctx.stderr:write("chatmaid: hint: the body ends with a newline the sender did not sign: "
                       .. "the signature matches without it. Pass the exact bytes received "
                       .. "(printf '%s', curl --data-binary @file, no editor)\n")
    end
    return require("chatmaid.cli").EXIT.signature
  end
  ctx.stdout:write(body)
  if body:sub(-1) ~= "\n" then ctx.stdout:write("\n") end
  return 0
end

return _M
