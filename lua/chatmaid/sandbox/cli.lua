-- SPDX-License-Identifier: MIT
-- The sandbox's command-line options, defined once for both commands that start it:
-- chatmaid-sandbox (main) parses argv with parse() (no argparse needed), and `chatmaid sandbox`
-- registers the same options into its argparse command (register) and reads them back with
-- from_args(). Both then build the server options with settings() and serve with serve().
local util = require("chatmaid.sandbox.util")

local _M = {}

_M.DEFAULT_PORT = 8787

local function number(name, v, check)
  local n = tonumber(v)
  if not n or n ~= n or (check and not check(n)) then
    return nil, name .. " needs a number, got '" .. tostring(v) .. "'"
  end
  return n
end

-- { flag, argument name (nil for a switch), help, apply(settings, value) -> true | nil, msg }
_M.OPTIONS = {
  { "--port", "N", "port on 127.0.0.1 (0 = any free port; default 8787)", function(s, v)
      local n, why = number("--port", v, function(x)
        return x == math.floor(x) and x >= 0 and x <= 65535 end)
      s.port = n
      return n ~= nil or nil, why
    end },
  { "--config", "FILE", "Lua file returning a table, or a JSON file", function(s, v)
      s.config_file = v
      return true
    end },
  { "--control", nil, "enable the /__sandbox/ control endpoints (send X-Chatmaid-Sandbox: 1)",
    function(s)
      s.control = true
      return true
    end },
  { "--time-factor", "F", "scale live delays and webhook retries (e.g. 0.001)", function(s, v)
      local n, why = number("--time-factor", v, function(x) return x > 0 end)
      s.overrides.time_factor = n
      return n ~= nil or nil, why
    end },
  { "--live-delay", "S", "seconds before a live message leaves pending (default 2)",
    function(s, v)
      local n, why = number("--live-delay", v, function(x) return x >= 0 end)
      s.overrides.live_delay = n
      return n ~= nil or nil, why
    end },
  { "--rate-limit", "N|off", "requests per minute per key (default 100)", function(s, v)
      if v == "off" or v == "false" or v == "0" then
        s.overrides.rate_limit = false
        return true
      end
      local n, why = number("--rate-limit", v, function(x) return x > 0 end)
      if not n then return nil, why .. " or off" end
      s.overrides.rate_limit = n
      return true
    end },
  { "--webhook-url", "URL", "deliver webhooks to URL (http://)", function(s, v)
      s.overrides.webhook = s.overrides.webhook or {}
      s.overrides.webhook.url = v
      return true
    end },
  { "--webhook-secret", "S", "signing secret (also CHATMAID_SANDBOX_WEBHOOK_SECRET)",
    function(s, v)
      s.overrides.webhook = s.overrides.webhook or {}
      s.overrides.webhook.secret = v
      return true
    end },
  { "--exit-with-parent", nil, "stop when the parent process goes away", function(s)
      s.exit_with_parent = true
      return true
    end },
  { "--watch-pid", "PID", "stop when process PID goes away (chatmaid.sandbox.start's own)",
    function(s, v)
      local n, why = number("--watch-pid", v, function(x) return x == math.floor(x) and x > 0 end)
      s.watch_pid = n
      return n ~= nil or nil, why
    end },
  { "--verbose", nil, "log one line per request to stderr", function(s)
      s.verbose = true
      return true
    end, "-v" },
}

local by_flag = {}
for _, o in ipairs(_M.OPTIONS) do
  by_flag[o[1]] = o
  if o[5] then by_flag[o[5]] = o end
end

local function new_settings() return { overrides = {} } end

-- The argparse target of an option: "--time-factor" -> "sandbox_time_factor" (prefixed, so
-- no sandbox option can collide with a global option of `chatmaid`).
local function target(o) return "sandbox_" .. o[1]:sub(3):gsub("-", "_") end

function _M.usage()
  local lines = { "usage: chatmaid-sandbox [options]" }
  for _, o in ipairs(_M.OPTIONS) do
    local left = o[1] .. (o[2] and (" " .. o[2]) or "")
    lines[#lines + 1] = "  " .. left .. string.rep(" ", math.max(1, 21 - #left)) .. o[3]
  end
  return table.concat(lines, "\n") .. "\n"
end

-- parse(argv) -> settings | nil, message | "help". Accepts "--flag value" and "--flag=value".
function _M.parse(argv)
  local s = new_settings()
  local i = 1
  while argv[i] do
    local a, inline = argv[i], nil
    local k, v = a:match("^(%-%-[%w-]+)=(.*)$")
    if k then a, inline = k, v end
    if a == "--help" or a == "-h" then return "help" end
    local o = by_flag[a]
    if not o then return nil, "unknown option " .. a end
    local value
    if o[2] then
      value = inline
      if value == nil then
        i = i + 1
        value = argv[i]
      end
      if value == nil then return nil, a .. " needs a value" end
    elseif inline ~= nil then
      return nil, a .. " takes no value"
    end
    local ok, why = o[4](s, value)
    if not ok then return nil, why end
    i = i + 1
  end
  return s
end

-- register(cmd): the same options on an argparse command (`chatmaid sandbox`).
function _M.register(cmd)
  for _, o in ipairs(_M.OPTIONS) do
    local names = o[5] and (o[5] .. " " .. o[1]) or o[1]
    local help = o[3]:sub(1, 1):upper() .. o[3]:sub(2) .. "."
    if o[2] then
      cmd:option(names, help):argname("<" .. o[2] .. ">"):target(target(o))
    else
      cmd:flag(names, help):target(target(o))
    end
  end
end

-- from_args(args) -> settings | nil, message: what register() parsed, checked as parse() does.
function _M.from_args(args)
  local s = new_settings()
  for _, o in ipairs(_M.OPTIONS) do
    local v = args[target(o)]
    if v ~= nil and v ~= false then
      local ok, why = o[4](s, o[2] and v or nil)
      if not ok then return nil, why end
    end
  end
  return s
end

-- server_options(settings) -> options for chatmaid.sandbox.server.new | nil, message.
-- The config file first, then the flags over it, then CHATMAID_SANDBOX_WEBHOOK_SECRET when
-- no --webhook-secret was given.
function _M.server_options(s)
  local config = {}
  if s.config_file then
    local cfg, err = util.load_config(s.config_file)
    if not cfg then return nil, err end
    config = cfg
  end
  local overrides = s.overrides
  local env_secret = os.getenv("CHATMAID_SANDBOX_WEBHOOK_SECRET")
  if env_secret and env_secret ~= "" and not (overrides.webhook and overrides.webhook.secret)
  then
    overrides.webhook = overrides.webhook or {}
    overrides.webhook.secret = env_secret
  end
  util.merge(config, overrides)
  return { port = s.port or _M.DEFAULT_PORT, config = config, control = s.control,
           verbose = s.verbose, exit_with_parent = s.exit_with_parent, watch_pid = s.watch_pid }
end

-- serve(opts, banner) -> true | nil, err: binds, calls banner(server), serves until
-- POST /__sandbox/shutdown or, with exit_with_parent, the parent process going away, or, with
-- watch_pid, that process going away (checked once a second).
function _M.serve(opts, banner)
  local srv, err = require("chatmaid.sandbox.server").new(opts)
  if not srv then return nil, err end
  banner(srv)
  local on_tick
  if opts.exit_with_parent or opts.watch_pid then
    local parent = opts.exit_with_parent and util.ppid()
    local last = 0
    on_tick = function()
      local now = util.now()
      if now - last < 1 then return true end
      last = now
      if parent and util.ppid() ~= parent then return false end
      return not opts.watch_pid or util.alive(opts.watch_pid)
    end
  end
  srv:run(on_tick)
  return true
end

-- main(argv) -> exit status: the chatmaid-sandbox command (bin/chatmaid-sandbox, and
-- chatmaid.sandbox.start, which runs it by module name so that it works from any installed
-- tree). Prints "chatmaid-sandbox listening on http://127.0.0.1:PORT pid=PID" once bound.
function _M.main(argv)
  local function die(msg)
    io.stderr:write("chatmaid-sandbox: ", msg, "\n")
    return 2
  end
  local settings, why = _M.parse(argv or {})
  if settings == "help" then
    io.stdout:write(_M.usage())
    return 0
  end
  if not settings then return die(why .. "\n" .. _M.usage()) end
  local opts, err = _M.server_options(settings)
  if not opts then return die(err) end
  local ok, serr = _M.serve(opts, function(srv)
    io.stdout:write(string.format("chatmaid-sandbox listening on http://127.0.0.1:%d pid=%d\n",
      srv.port, util.pid()))
    io.stdout:flush()
  end)
  if not ok then return die(serr) end
  return 0
end

return _M
