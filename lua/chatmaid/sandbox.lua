-- SPDX-License-Identifier: MIT

--- Run the local Chatmaid emulator and drive it (docs/testing-with-sandbox.md).
-- chatmaid.sandbox: start the local Chatmaid v1 emulator in a child process and drive it.
-- The child is needed because SDK clients block (inside libcurl) while they wait, so the
-- server cannot share their Lua state. Control helpers talk HTTP via LuaSocket.
-- @module chatmaid.sandbox
local socket = require("socket")
local shttp = require("socket.http")
local ltn12 = require("ltn12")
local json = require("chatmaid.sandbox.json")
local util = require("chatmaid.sandbox.util")

-- seconds start() waits for the child's banner (a loaded CI machine, a sanitizer build)
local START_TIMEOUT = 30

local _M = { _VERSION = "0.2.0" }   -- = VERSION (spec/unit/version_spec.lua)
local mt = { __index = _M }

local function quote(s)
  return "'" .. tostring(s):gsub("'", "'\\''") .. "'"
end

local function interpreter()
  local env = os.getenv("CHATMAID_LUA")
  if env and env ~= "" then return env end
  if type(arg) == "table" then
    local i = 0
    while arg[i - 1] ~= nil do i = i - 1 end
    if i < 0 and type(arg[i]) == "string" then return arg[i] end
  end
  -- no standalone interpreter in sight (an embedding host): the one of this runtime
  if rawget(_G, "jit") then return "luajit" end
  return "lua" .. _VERSION:match("%d+%.%d+")
end

-- command(lua, args) -> the argv that starts the server with these options. By default the
-- interpreter runs chatmaid.sandbox.cli.main by module name with this process's package.path
-- and package.cpath, so the child loads the same modules from wherever this one found them
-- (a checkout, a luarocks tree, the system's directories): no file to locate. The options
-- are in the chunk itself (`lua -e` runs no script, so it has no `arg`).
-- CHATMAID_SANDBOX_BIN names a command to run instead: a Lua script (run with the
-- interpreter, like bin/chatmaid-sandbox of a checkout) or any other executable, such as
-- the shell wrapper luarocks installs as bin/chatmaid-sandbox (run as is).
local function command(lua, args)
  local bin = os.getenv("CHATMAID_SANDBOX_BIN")
  local argv
  if bin and bin ~= "" then
    local f = io.open(bin, "rb")
    local first = f and f:read("*l") or ""
    if f then f:close() end
    if first:match("^#!") and not first:find("lua", 1, true) then argv = { bin }
    else argv = { lua, bin } end
    for _, a in ipairs(args) do argv[#argv + 1] = a end
    return argv
  end
  local words = {}
  for i, a in ipairs(args) do words[i] = ("%q"):format(a) end
  return { lua, "-e", ("package.path = %q; package.cpath = %q; "
    .. "os.exit(require('chatmaid.sandbox.cli').main({ %s }))")
    :format(package.path, package.cpath, table.concat(words, ", ")) }
end

local function read_file(path)
  local f = io.open(path, "rb")
  if not f then return "" end
  local s = f:read("*a") or ""
  f:close()
  return s
end

-- The options of start(); a misspelt one raises (docs/reference/options.md lists these).
local OPTS = { port = "number", config = "table|string", control = "boolean",
               time_factor = "number", live_delay = "number", rate_limit = "number|boolean",
               webhook = "table", lua = "string", verbose = "boolean" }
_M.OPTS = OPTS

--- Start a sandbox in a child process.
-- start(opts) -> sb. Raises when the child cannot start (message includes its stderr).
-- opts: port (0), config (table or file path), control (true), time_factor, live_delay,
-- rate_limit (number or false), webhook = { url, secret }, lua (interpreter), verbose.
-- @tparam[opt] table opts port (0), config, control (true), time_factor, live_delay, rate_limit,
--   webhook, lua, verbose
-- @treturn table sb (sb.url, sb.port, sb.pid and the methods below)
-- @raise when the child cannot start (with its stderr), or on a bad option
function _M.start(opts)
  opts = opts or {}
  if type(opts) ~= "table" then error("sandbox.start: opts must be a table", 2) end
  require("chatmaid.options").check("chatmaid.sandbox.start", opts, OPTS, 3)
  local self = setmetatable({ temp = {} }, mt)
  local args = { "--port", tostring(opts.port or 0), "--exit-with-parent" }
  if opts.control ~= false then args[#args + 1] = "--control" end
  if type(opts.config) == "table" then
    local path = os.tmpname()
    local f = assert(io.open(path, "wb"))
    f:write(json.encode(opts.config))
    f:close()
    self.temp[#self.temp + 1] = path
    args[#args + 1] = "--config"; args[#args + 1] = path
  elseif type(opts.config) == "string" then
    args[#args + 1] = "--config"; args[#args + 1] = opts.config
  elseif opts.config ~= nil then
    error("sandbox.start: config must be a table or a file path", 2)
  end
  if opts.time_factor then
    args[#args + 1] = "--time-factor"; args[#args + 1] = tostring(opts.time_factor)
  end
  if opts.live_delay then
    args[#args + 1] = "--live-delay"; args[#args + 1] = tostring(opts.live_delay)
  end
  if opts.rate_limit ~= nil then
    args[#args + 1] = "--rate-limit"
    args[#args + 1] = opts.rate_limit == false and "off" or tostring(opts.rate_limit)
  end
  if opts.webhook then
    if opts.webhook.url then
      args[#args + 1] = "--webhook-url"; args[#args + 1] = opts.webhook.url
    end
    if opts.webhook.secret then
      args[#args + 1] = "--webhook-secret"; args[#args + 1] = opts.webhook.secret
    end
  end
  if opts.verbose then args[#args + 1] = "--verbose" end
  -- The child runs in the background with its output in files, and watches this process
  -- (--watch-pid) rather than its parent: no pipe stays open between the two, so a script
  -- that ends (or fails) without sb:stop() exits at once (a popen handle's close at exit
  -- would wait for a child that waits for its parent) and the child follows within a second.
  args[#args + 1] = "--watch-pid"; args[#args + 1] = tostring(util.pid())
  local parts = { "exec" }
  for _, a in ipairs(command(opts.lua or interpreter(), args)) do
    parts[#parts + 1] = quote(a)
  end
  local outfile = os.tmpname()
  self.temp[#self.temp + 1] = outfile
  parts[#parts + 1] = ">" .. quote(outfile)
  local errfile
  if not opts.verbose then
    errfile = os.tmpname()
    self.temp[#self.temp + 1] = errfile
    parts[#parts + 1] = "2>" .. quote(errfile)
  end
  local cmd = table.concat(parts, " ")
  local function failed(why)
    local stderr = errfile and read_file(errfile) or ""
    for _, p in ipairs(self.temp) do os.remove(p) end
    error("chatmaid.sandbox: failed to start (" .. cmd .. "): " .. why .. "\n" .. stderr, 3)
  end
  local h = io.popen(cmd .. " & echo $!", "r")
  if not h then error("chatmaid.sandbox: cannot run " .. cmd, 2) end
  local child = tonumber(h:read("*l") or "")
  h:close()
  if not child then failed("no process") end
  -- the banner: "chatmaid-sandbox listening on http://127.0.0.1:PORT pid=PID"
  local deadline = socket.gettime() + START_TIMEOUT
  local port, pid
  repeat
    local out = read_file(outfile)
    port, pid = out:match("listening on http://127%.0%.0%.1:(%d+) pid=(%d+)")
    if port then break end
    if not util.alive(child) then
      failed(out:match("^[^\n]*") or "")
    end
    if socket.gettime() > deadline then
      os.execute("kill " .. child .. " 2>/dev/null")
      failed("no banner within " .. START_TIMEOUT .. " s")
    end
    socket.sleep(0.01)
  until false
  self.port, self.pid = tonumber(port), tonumber(pid)
  self.url = "http://127.0.0.1:" .. port
  self.errfile = errfile
  return self
end

--- One HTTP request to the sandbox (LuaSocket, not the SDK).
-- request(method, path, body, headers) -> status, decoded body (or raw text), headers
--   | nil, err. body: table (sent as JSON) or string. Uses LuaSocket, not the SDK.
-- Requests to /__sandbox/ carry X-Chatmaid-Sandbox: 1 unless headers sets it (false: omit).
-- @tparam string method
-- @tparam string path
-- @tparam[opt] table|string body a table is sent as JSON
-- @tparam[opt] table headers
-- @treturn ?number the status, or nil
-- @treturn table|string|nil the decoded body (or raw text), or the error
-- @treturn ?table the headers
function _M:request(method, path, body, headers)
  local h = {}
  for k, v in pairs(headers or {}) do h[k:lower()] = v end
  -- control endpoints need the sandbox header (a browser cannot send it cross-origin)
  if path:sub(1, 11) == "/__sandbox/" and h["x-chatmaid-sandbox"] == nil then
    h["x-chatmaid-sandbox"] = "1"
  end
  if h["x-chatmaid-sandbox"] == false then h["x-chatmaid-sandbox"] = nil end
  local src
  if body ~= nil then
    if type(body) ~= "string" then body = json.encode(body) end
    h["content-type"] = h["content-type"] or "application/json"
    h["content-length"] = tostring(#body)
    src = ltn12.source.string(body)
  end
  local out = {}
  local ok, status, rh = shttp.request{
    url = self.url .. path, method = method, headers = h, source = src,
    sink = ltn12.sink.table(out),
    create = function()
      local s = socket.tcp()
      s:settimeout(15)
      return s
    end,
  }
  if not ok then return nil, status end
  local text = table.concat(out)
  local decoded = json.decode(text)
  if decoded == nil then decoded = text end
  return status, decoded, rh
end

local function control(self, method, path, body)
  local status, b = self:request(method, "/__sandbox" .. path, body)
  if not status then return nil, b end
  if type(b) ~= "table" or status >= 300 then
    local msg = type(b) == "table" and b.message and table.concat(b.message, "; ")
      or tostring(b)
    return nil, "sandbox " .. method .. " " .. path .. ": HTTP " .. status .. ": " .. msg
  end
  return b.data
end

--- Counters (control endpoint).
-- Control helpers: each returns the response's data, or nil, err.
-- @treturn ?table the data, or nil
-- @treturn ?string err
function _M:stats() return control(self, "GET", "/stats") end
--- Add a fault (control endpoint).
-- @tparam table spec type, path, method, count, ...
-- @treturn ?table the data, or nil
-- @treturn ?string err
function _M:fault(spec) return control(self, "POST", "/faults", spec) end
--- Clear messages, counters, faults (control endpoint).
-- @treturn ?table the data, or nil
-- @treturn ?string err
function _M:reset() return control(self, "POST", "/reset") end
--- Create messages directly (control endpoint).
-- @tparam[opt] table spec count, status, ...
-- @treturn ?table the data, or nil
-- @treturn ?string err
function _M:seed(spec) return control(self, "POST", "/seed", spec or {}) end
--- The webhook delivery log (control endpoint).
-- @treturn ?table the data, or nil
-- @treturn ?string err
function _M:webhooks() return control(self, "GET", "/webhooks") end
--- Change settings at runtime (control endpoint).
-- @tparam[opt] table tbl rate_limit, live_delay, webhook, ...
-- @treturn ?table the data, or nil
-- @treturn ?string err
function _M:config(tbl) return control(self, "POST", "/config", tbl or {}) end
--- Change a phone's connection status (fires its webhook).
-- @tparam string id the phone id
-- @tparam string state "connected", "disconnected", ...
-- @treturn ?table the data, or nil
-- @treturn ?string err
function _M:set_phone_state(id, state)
  local ref = tostring(id):gsub("[^%w_%-%.]", function(c)
    return string.format("%%%02X", c:byte())
  end)
  return control(self, "POST", "/phones/" .. ref .. "/state", { connectionStatus = state })
end

--- Stop the child: shut it down (HTTP, then kill as a fallback) and wait for it. Idempotent.
-- @treturn boolean true
function _M:stop()
  if self.stopped then return true end
  self.stopped = true
  local ok, res = pcall(control, self, "POST", "/shutdown")
  if not (ok and res) then os.execute("kill " .. self.pid .. " 2>/dev/null") end
  local deadline = socket.gettime() + 3
  while util.alive(self.pid) and socket.gettime() < deadline do socket.sleep(0.02) end
  if util.alive(self.pid) then os.execute("kill -9 " .. self.pid .. " 2>/dev/null") end
  for _, p in ipairs(self.temp) do os.remove(p) end
  return true
end

--- What the child wrote to stderr so far.
-- stderr() -> what the child wrote to stderr so far ("" when verbose).
-- @treturn string
function _M:stderr()
  return self.errfile and read_file(self.errfile) or ""
end

return _M
