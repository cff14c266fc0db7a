-- SPDX-License-Identifier: MIT
-- Starts a throwaway nginx (Debian `nginx` + libnginx-mod-http-lua) for the spec/nginx specs:
-- its own prefix in a temp dir, one worker, 127.0.0.1 on free ports, lua_package_path/cpath
-- on this repo's lua/ and build/luajit/ (the core built for LuaJIT, as nginx runs LuaJIT).
-- Where nginx or the lua module is missing the specs are skipped with a printed reason,
-- unless CI (or CHATMAID_NGINX=required) is set: then they fail.
local socket = require "socket"
local proc = require "spec.support.proc"

local _M = {}

local root = debug.getinfo(1, "S").source:match("^@(.*)spec/nginx/harness%.lua$") or "./"
if root == "" then root = "./" end
if root:sub(1, 1) ~= "/" then root = os.getenv("PWD") .. "/" .. root end
_M.root = root

local MODULE_DIRS = { "/usr/lib/nginx/modules", "/usr/share/nginx/modules",
                      "/usr/local/openresty/nginx/modules" }

local function exists(path)
  local f = io.open(path, "rb")
  if f then f:close() return true end
  return false
end

local function sh(cmd)
  local p = io.popen(cmd .. " 2>&1")
  local out = p:read("*a")
  local ok, _, code = p:close()
  if type(ok) == "number" then code = ok; ok = code == 0 end   -- 5.1: close() -> true only
  return out, ok, code
end

local function shq(s) return "'" .. tostring(s):gsub("'", "'\\''") .. "'" end

local cached
-- available() -> true | false, reason. Builds the LuaJIT core on first call.
function _M.available()
  if cached then return cached[1], cached[2] end
  local bin = os.getenv("CHATMAID_NGINX_BIN")
  if not bin or bin == "" then
    bin = (sh("command -v nginx || ls /usr/sbin/nginx"):match("([^\n]+)"))
  end
  local reason
  if not bin or not exists(bin) then
    reason = "no nginx binary (apt-get install nginx libnginx-mod-http-lua)"
  else
    for _, d in ipairs(MODULE_DIRS) do
      if exists(d .. "/ngx_http_lua_module.so") then _M.modules = d break end
    end
    if not _M.modules then
      reason = "nginx found, but not ngx_http_lua_module.so (apt-get install "
               .. "libnginx-mod-http-lua)"
    end
  end
  if not reason then
    local out, ok = sh("make -s -C " .. shq(root) .. " LUA=luajit all")
    if not ok or not exists(root .. "build/luajit/chatmaid/core.so") then
      reason = "could not build the core for LuaJIT (make LUA=luajit): " .. out
    end
  end
  _M.bin = bin
  cached = { reason == nil, reason }
  return cached[1], cached[2]
end

-- required() -> true when the nginx specs must run (CI), so a missing nginx is a failure.
function _M.required()
  local ci, want = os.getenv("CI"), os.getenv("CHATMAID_NGINX")
  return want == "required" or (ci ~= nil and ci ~= "" and ci ~= "false" and want ~= "skip")
end

-- guard(describe_name) -> true if the specs can run; else prints why and returns false
-- (the caller then registers a pending spec), or raises under CI.
function _M.guard(name)
  local ok, reason = _M.available()
  if ok then return true end
  if _M.required() then error(name .. ": nginx specs are required here (CI) but " .. reason) end
  io.stderr:write("\n*** SKIPPING ", name, ": ", reason, " ***\n")
  return false, reason
end

-- skip(name, extra) -> true when the spec file must stop here: nginx (or what extra() ->
-- false, reason says) is missing, so a pending describe(name) was registered. Under CI a
-- missing piece raises instead. At the top of a spec file:
--   if H.skip(NAME) then return end
function _M.skip(name, extra)
  local ok, why = _M.guard(name)
  if ok and extra then
    ok, why = extra()
    if not ok and _M.required() then error(name .. ": required here (CI) but " .. why) end
  end
  if ok then return false end
  local busted = require "busted"
  busted.describe(name, function() busted.pending("skipped: " .. why) end)
  return true
end

-- redis_ready() -> true | false, reason: the extra check of H.skip for the specs that use
-- Redis inside nginx (a redis-server, and a cosocket Redis client for nginx's LuaJIT).
function _M.redis_ready()
  if not require("spec.support.redis_helper").binary() then return false, "no redis-server" end
  if not (_M.read("/usr/share/lua/5.1/nginx/redis.lua") ~= ""
          or _M.read("/usr/share/lua/5.1/resty/redis.lua") ~= "") then
    return false, "no cosocket Redis client (apt-get install lua-nginx-redis)"
  end
  return true
end

function _M.free_port()
  local s = assert(socket.bind("127.0.0.1", 0))
  local _, port = s:getsockname()
  s:close()
  return tonumber(port)
end

local function mkdtemp()
  local dir = sh("mktemp -d /tmp/chatmaid-nginx.XXXXXX"):match("([^\n]+)")
  assert(dir and dir ~= "", "mktemp failed")
  return dir
end

local function write(path, s)
  local f = assert(io.open(path, "wb"))
  f:write(s)
  f:close()
end

local function read(path)
  local f = io.open(path, "rb")
  if not f then return "" end
  local s = f:read("*a")
  f:close()
  return s
end

local Server = {}
Server.__index = Server

-- start{ workers = 1, main = "<main-context directives>", http = "<http-context directives>",
--        server = "<directives of the one server block>", vars = { NAME = value } }
-- -> server { port, prefix, url(path), stop(), error_log() }. ${PORT}, ${ROOT} and
-- ${NAME} (from vars) are substituted in the config.
local function launch(self, o)
  assert(_M.available())
  local prefix = mkdtemp()
  assert(os.execute("mkdir -p " .. shq(prefix .. "/conf") .. " " .. shq(prefix .. "/logs")))
  local port = _M.free_port()
  local vars = { PORT = tostring(port), ROOT = root, PREFIX = prefix }
  for k, v in pairs(o.vars or {}) do vars[k] = tostring(v) end
  local user = sh("id -u"):match("^0") and "user root;\n" or ""
  local conf = table.concat({
    "load_module " .. _M.modules .. "/ndk_http_module.so;",
    "load_module " .. _M.modules .. "/ngx_http_lua_module.so;",
    "worker_processes " .. (o.workers or 1) .. ";", "master_process on;", "daemon on;",
    "pid logs/nginx.pid;",
    "error_log logs/error.log warn;", user,
    o.main or "",
    "events { worker_connections 1024; }",
    "http {",
    "  access_log off;",
    "  client_body_temp_path " .. prefix .. "/client_body;",
    '  lua_package_path "${ROOT}lua/?.lua;${ROOT}lua/?/init.lua;;";',
    '  lua_package_cpath "${ROOT}build/luajit/?.so;;";',
    o.http or "",
    "  server {",
    "    listen 127.0.0.1:${PORT};",
    o.server or "",
    "  }",
    "}",
  }, "\n")
  conf = conf:gsub("%${([%w_]+)}", function(k) return vars[k] or ("${" .. k .. "}") end)
  write(prefix .. "/conf/nginx.conf", conf)
  local out, ok = sh(shq(_M.bin) .. " -p " .. shq(prefix) .. " -c conf/nginx.conf")
  self.port, self.prefix, self.conf = port, prefix, conf
  if not ok then
    error("nginx failed to start: " .. out .. "\n" .. self:error_log() .. "\n" .. conf)
  end
  self.pid = tonumber(read(prefix .. "/logs/nginx.pid"):match("%d+"))
  -- daemon on: the listening socket exists once the command returned; wait for a worker.
  local deadline = socket.gettime() + 5
  while socket.gettime() < deadline do
    local c = socket.connect("127.0.0.1", port)
    if c then c:close() break end
    socket.sleep(0.02)
  end
  return self
end

function _M.start(o) return launch(setmetatable({}, Server), o) end

-- serve(o) inside a describe block: the block's nginx, started in its setup and stopped in
-- its teardown. o: start's options, or a function returning them (called in setup, after
-- the setups registered before serve). With o.sandbox (a table of chatmaid.sandbox.start
-- options) a sandbox is started first: ${SANDBOX} is its url, server.sandbox the sandbox,
-- stopped after nginx. -> the server (its fields are there once the setup ran).
function _M.serve(o)
  local busted = require "busted"
  local self = setmetatable({}, Server)
  busted.setup(function()
    local opts = type(o) == "function" and o() or o
    if opts.sandbox then
      self.sandbox = require("chatmaid.sandbox").start(opts.sandbox)
      opts.vars = opts.vars or {}
      opts.vars.SANDBOX = self.sandbox.url
    end
    launch(self, opts)
  end)
  busted.teardown(function()
    if self.prefix then self:stop() end
    if self.sandbox then self.sandbox:stop() end
  end)
  return self
end

function Server:url(path) return "http://127.0.0.1:" .. self.port .. (path or "/") end

function Server:error_log() return read(self.prefix .. "/logs/error.log") end

-- stop(): QUIT the master by pid (graceful), wait for it, remove the prefix.
function Server:stop()
  if self.stopped then return end
  self.stopped = true
  -- the master daemonized: a zombie left for init to reap counts as gone (spec.support.proc)
  if self.pid then proc.stop(self.pid, "QUIT") end
  if not os.getenv("CHATMAID_NGINX_KEEP") then os.execute("rm -rf " .. shq(self.prefix)) end
end

-- curl(args) -> stdout, ok. A thin wrapper: the specs use curl for parallel requests.
function _M.curl(args)
  return sh("curl -sS --max-time 30 " .. args)   -- a stuck server fails the spec, not the run
end

-- raw(port, method, path, headers, body) -> status, body, seconds
-- headers: array of "Name: value" lines (repeats allowed); one request, Connection: close.
function _M.raw(port, method, path, headers, body)
  local lines = { method .. " " .. path .. " HTTP/1.1", "Host: 127.0.0.1",
                  "Connection: close" }
  for _, h in ipairs(headers or {}) do lines[#lines + 1] = h end
  if body then lines[#lines + 1] = "Content-Length: " .. #body end
  local t0 = socket.gettime()
  local c = assert(socket.connect("127.0.0.1", port))
  c:settimeout(10)
  assert(c:send(table.concat(lines, "\r\n") .. "\r\n\r\n" .. (body or "")))
  local status_line = assert(c:receive("*l"))
  local elapsed = socket.gettime() - t0
  local resp = c:receive("*a") or ""
  c:close()
  return tonumber(status_line:match("^HTTP/1%.%d (%d+)")), resp:match("\r\n\r\n(.*)$") or "",
         elapsed
end

_M.sh, _M.shq, _M.read, _M.write = sh, shq, read, write

return _M
