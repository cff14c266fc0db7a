-- SPDX-License-Identifier: MIT
-- The `chatmaid` command line: a thin shell over the library (README: Command line).
-- main(argv) -> exit code: 0 ok, 1 API or network error, 2 usage or validation error
-- (nothing was sent), 3 webhook verification failed.
local argparse = require "argparse"
local output = require "chatmaid.cli.output"

local _M = {}

_M.EXIT = { ok = 0, api = 1, usage = 2, signature = 3 }

local GROUPS = { "send", "messages", "phones", "account", "webhook", "batch", "sandbox" }

-- Every number option has a range: past it is a usage error (exit 2), never a value the
-- library refuses later (an internal error, exit 1). Seconds: at most a day.
_M.MAX_SECONDS = 86400
_M.MAX_INTEGER = 2 ^ 31 - 1

local function positive(v)
  local n = tonumber(v)
  if not n or n <= 0 or n ~= n or n > _M.MAX_SECONDS then
    return nil, "expected a positive number of seconds up to " .. _M.MAX_SECONDS .. ", got '"
      .. output.one_line(v) .. "'"
  end
  return n
end
_M.positive = positive

-- Converter for argparse: a whole number >= min (and <= max, or 2^31 - 1).
function _M.integer(min, max)
  return function(v)
    local n = tonumber(v)
    if not n or n ~= math.floor(n) or n < min or n > (max or _M.MAX_INTEGER) then
      local range = max and ("from " .. min .. " to " .. max)
                    or (n and n > _M.MAX_INTEGER) and ("from " .. min .. " to "
                                                       .. string.format("%d", _M.MAX_INTEGER))
                    or (">= " .. min)
      return nil, "expected a whole number " .. range .. ", got '" .. output.one_line(v) .. "'"
    end
    return n
  end
end

local function build_parser()
  local p = argparse("chatmaid", "Command line for the Chatmaid WhatsApp API.")
    :epilog([[
The API key comes from CHATMAID_API_KEY; the base URL from CHATMAID_BASE_URL or --base-url.
Global options may also follow the command: chatmaid messages --json.

Exit codes: 0 ok, 1 API or network error, 2 usage or validation error (nothing was sent),
3 webhook verification failed.

Examples:
  export CHATMAID_API_KEY=sk_test_...
  chatmaid send --from ph_primary --to +15557654321 --content "Hello"
  chatmaid messages --status failed --json
  chatmaid batch campaign.csv --from +15551230001 --out results.jsonl
Run 'chatmaid <command> --help' for the options of a command.]])
  p:command_target("command")
  p:require_command(true)
  p:flag("--json", "Machine output: one JSON document, or JSON lines for lists.")
  p:option("--timeout", "Seconds allowed for each HTTP request (default 30).")
    :target("request_timeout"):convert(positive)
  p:option("--max-retries", "Retries for a failed request that may be retried (default 2).")
    :convert(_M.integer(0, 20))
  p:option("--base-url", "API base URL (default: CHATMAID_BASE_URL or the Chatmaid API).")
  p:option("--api-key", "API key; prefer CHATMAID_API_KEY: argv is visible to other users.")
  p:flag("--version", "Print the version and exit.")
    :action(function()
      io.stdout:write("chatmaid ", require("chatmaid.client").VERSION, "\n")
      os.exit(0)
    end)
  local run = {}
  for _, g in ipairs(GROUPS) do
    local mod = require("chatmaid.cli." .. g)
    mod.register(p)
    for name, fn in pairs(mod.commands) do run[name] = fn end
  end
  return p, run
end

-- The library's parameters as the command line spells them, for hints and error messages.
_M.FLAGS = {
  from = "--from", default_from = "--from", to = "--to", content = "--content",
  media_urls = "--media", idempotency_key = "--idempotency-key", api_key = "--api-key",
  base_url = "--base-url", limit = "--limit", status = "--status",
  phone_number_id = "--phone", environment = "--environment",
}

-- Hints that name library options, rewritten for the command line.
local PHRASES = {
  { "pass from = <phone id or E.164 number> or default_from",
    "pass --from <phone id or E.164 number>" },
  { "pass api_key to chatmaid.new or set CHATMAID_API_KEY",
    "set CHATMAID_API_KEY (or pass --api-key)" },
  { "pass from = one of the account's phone ids or numbers: list them with client:phone_numbers() "
    .. "(CLI: chatmaid phones)",
    "pass --from with one of the account's phone ids or numbers: list them with "
    .. "`chatmaid phones`" },
}

-- cli_words(err) -> the error's one line in command-line words: `--from` rather than
-- `from = ...`, each validation problem led by its flag (err.fields say which).
function _M.cli_words(err)
  if type(err) ~= "table" then return tostring(err) end
  local e = err
  if err.kind == "validation" and type(err.fields) == "table" and #err.fields > 0 then
    local parts = {}
    for i, f in ipairs(err.fields) do
      local m = tostring(f.message)
      local flag = f.param and _M.FLAGS[f.param]
      if flag and m:sub(1, #f.param) == f.param and m:sub(#f.param + 1):find("^[%s%[]") then
        m = flag .. m:sub(#f.param + 1)
      end
      parts[i] = m
    end
    e = setmetatable({}, { __index = err, __tostring = getmetatable(err).__tostring })
    e.message = table.concat(parts, "; ")
  end
  local text = tostring(e)
  for _, r in ipairs(PHRASES) do
    local i, j = text:find(r[1], 1, true)
    if i then text = text:sub(1, i - 1) .. r[2] .. text:sub(j + 1) end
  end
  return text
end

-- The context handed to each command: parsed args, output helpers, exit helpers, client().
local function context(args)
  local ctx = { args = args, json = args.json and true or false,
                stdout = io.stdout, stderr = io.stderr }
  ctx.tty_out = output.is_tty(1)
  ctx.tty_err = output.is_tty(2)

  function ctx.usage(msg)
    ctx.stderr:write("chatmaid usage: ", output.one_line(msg), " (see 'chatmaid ",
                     args.command or "", args.webhook_command and (" " .. args.webhook_command)
                     or "", " --help')\n")
    return _M.EXIT.usage
  end

  -- An error object from the library -> stderr line and exit code. Validation errors mean
  -- nothing was sent and the input must change, so they share code 2 with usage errors.
  function ctx.fail(err)
    ctx.stderr:write(output.one_line(_M.cli_words(err)), "\n")
    if type(err) == "table" and err.kind == "validation" then return _M.EXIT.usage end
    if type(err) == "table" and err.kind == "signature" then return _M.EXIT.signature end
    return _M.EXIT.api
  end

  -- print(value): one JSON document with --json, else "key  value" lines.
  function ctx.print(v)
    if ctx.json then ctx.stdout:write(output.json(v), "\n")
    else ctx.stdout:write(output.object(v)) end
    return _M.EXIT.ok
  end

  -- client() -> client | nil, exit code (the error already reported)
  function ctx.client()
    if ctx._client then return ctx._client end
    local chatmaid = require "chatmaid"
    local c, err = chatmaid.new{
      api_key = args.api_key, base_url = args.base_url,
      timeout = args.request_timeout, max_retries = args.max_retries,
    }
    if not c then return nil, ctx.fail(err) end
    ctx._client = c
    return c
  end
  return ctx
end

local function run(argv)
  local parser, commands = build_parser()
  -- argparse reports through the root parser's `error` method, passing the command parser
  -- that failed: raise a marked table so the usage shown is that command's, and exit 2.
  local mark = {}
  parser.error = function(active, msg)
    error({ [mark] = true, usage = active:get_usage(), msg = msg }, 0)
  end
  local ok, args = pcall(parser.parse, parser, argv)
  if not ok then
    if type(args) ~= "table" or not args[mark] then error(args, 0) end
    io.stderr:write(args.usage, "\n", "chatmaid usage: ", output.one_line(args.msg), "\n")
    return _M.EXIT.usage
  end
  if args.api_key then
    -- never echo the key itself
    io.stderr:write("chatmaid: warning: --api-key is visible to other users of this machine"
                    .. " (ps, /proc); prefer the CHATMAID_API_KEY environment variable\n")
  end
  local ctx = context(args)
  local code = commands[args.command](args, ctx)
  ctx.stdout:flush()
  return code
end

-- main(argv) -> exit code. A raised error (a bug, or a library misuse) is one line on stderr
-- and code 1; CHATMAID_DEBUG=1 adds the traceback.
function _M.main(argv)
  local argv_copy = {}
  for i = 1, #(argv or {}) do argv_copy[i] = argv[i] end
  local ok, code = xpcall(function() return run(argv_copy) end, function(e)
    if os.getenv("CHATMAID_DEBUG") then return debug.traceback(tostring(e), 2) end
    return tostring(e)
  end)
  if not ok then
    io.stderr:write("chatmaid: internal error: ", output.one_line(code), "\n")
    return _M.EXIT.api
  end
  return code
end

return _M
