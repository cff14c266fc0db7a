-- SPDX-License-Identifier: MIT
-- One logical Redis connection for chatmaid.redis: the redis:// URL, AUTH and SELECT, server
-- scripts (EVALSHA, EVAL when the server answers NOSCRIPT), and two backends: libhiredis
-- through chatmaid.core (blocking, bounded by timeouts; any Lua) and, inside nginx, the
-- cosocket client of lua-nginx-redis / lua-resty-redis with pooled keepalive connections.
-- Every failure is `nil, err` with err.kind "transport"; err.reason says which:
-- "connect", "timeout", "closed", "protocol", "redis" (the server answered an error),
-- "phase" (nginx phase without cosockets), "nomem". No error carries the password.
local errors = require "chatmaid.errors"

local _M = { DEFAULT_TIMEOUT = 1, DEFAULT_PORT = 6379 }
local mt = { __index = _M }

local function pct_decode(s)
  return (s:gsub("%%(%x%x)", function(h) return string.char(tonumber(h, 16)) end))
end

-- redact(url) -> the URL with any password replaced by "***" (for messages)
function _M.redact(url)
  return (tostring(url):gsub("^(%a[%w+.-]*://)([^@/]*)@", function(scheme, userinfo)
    local user = userinfo:match("^([^:]*):") or userinfo
    return scheme .. (user ~= "" and (user .. ":") or ":") .. "***@"
  end))
end

-- parse_url(url) -> { host, port, db, username, password } ; raises on a malformed URL.
-- redis://[[username]:password@]host[:port][/db]; host may be [ipv6]; redis+unix:///path
-- or unix:///path[?db=N] for a unix socket (outside nginx: unix:/path there too).
-- level: where to raise, counted from parse_url (default 2: its caller).
function _M.parse_url(url, where, level)
  where = where or "chatmaid.redis"
  level = level or 2
  if type(url) ~= "string" then
    error(where .. ": url must be a string like redis://127.0.0.1:6379/0 (got "
          .. type(url) .. ")", level)
  end
  local function bad(why)
    error(where .. ": bad url '" .. _M.redact(url) .. "': " .. why, level + 1)
  end
  local scheme, rest = url:match("^(%a[%w+.-]*)://(.*)$")
  if not scheme then bad("expected redis://host:port/db") end
  scheme = scheme:lower()
  local u = { db = 0 }
  if scheme == "unix" or scheme == "redis+unix" then
    local path, query = rest:match("^([^?]*)%??(.*)$")
    if path:sub(1, 1) ~= "/" then bad("a unix socket URL needs an absolute path") end
    u.host, u.port = path, 0
    if query ~= "" then
      local db = query:match("^db=(%d+)$")
      if not db then bad("the only query parameter is db=N") end
      u.db = tonumber(db)
    end
    return u
  end
  if scheme == "rediss" then bad("TLS (rediss://) is not supported; use a local TLS proxy") end
  if scheme ~= "redis" then bad("the scheme must be redis://") end
  local auth, hostport, path = rest:match("^([^@/]*)@([^/]*)(.*)$")
  if not auth then hostport, path = rest:match("^([^/]*)(.*)$") end
  if auth then
    local user, pass = auth:match("^([^:]*):(.*)$")
    if user then
      u.username = user ~= "" and pct_decode(user) or nil
      u.password = pct_decode(pass)
    else
      u.password = pct_decode(auth)   -- redis://password@host (old style)
    end
    if u.password == "" then u.password = nil end
  end
  local host, port = hostport:match("^%[([%x:.]+)%]:?(%d*)$")
  if not host then host, port = hostport:match("^([^:%[%]]*):?(%d*)$") end
  if not host or host == "" then bad("no host") end
  u.host = host
  u.port = port ~= "" and tonumber(port) or _M.DEFAULT_PORT
  if u.port < 1 or u.port > 65535 then bad("port out of range") end
  if path ~= "" and path ~= "/" then
    local db = path:match("^/(%d+)$")
    if not db then bad("the path must be the database number, e.g. /0") end
    u.db = tonumber(db)
  end
  return u
end

local function fail(reason, message, fields)
  fields = fields or {}
  fields.reason = reason
  return nil, errors.new("transport", "redis: " .. message, fields)
end
_M.fail = fail

-- nginx: the phases where cosockets work
local COSOCKET = { rewrite = true, server_rewrite = true, access = true, content = true,
                   timer = true, ssl_cert = true, ssl_session_fetch = true,
                   ssl_client_hello = true, preread = true }

local ngx_redis   -- the cosocket client module, once found
local function nginx_client()
  if ngx_redis == nil then
    -- OpenResty ships resty.redis; Debian's lua-nginx-redis installs the same code as
    -- nginx.redis (/usr/share/lua/5.1/nginx/redis.lua).
    local ok, m = pcall(require, "resty.redis")
    if not ok then ok, m = pcall(require, "nginx.redis") end
    ngx_redis = ok and m or false
  end
  return ngx_redis
end

local function in_nginx()
  local ngx = rawget(_G, "ngx")
  return ngx and type(ngx.get_phase) == "function" and ngx or nil
end

-- new{ url, timeout = 1 (s, per command), connect_timeout = timeout, pool_size = 16,
--      where = "name for messages", level = 2 } -> conn (no I/O yet). Raises on a bad URL
-- or option, at `level` counted from new (the user's line through the public wrappers).
function _M.new(o)
  local where = o.where or "chatmaid.redis"
  local level = o.level or 2
  local u = _M.parse_url(o.url, where, level + 1)
  local timeout = o.timeout or _M.DEFAULT_TIMEOUT
  if type(timeout) ~= "number" or timeout ~= timeout or timeout <= 0 then
    error(where .. ": timeout must be a positive number of seconds", level)
  end
  local cto = o.connect_timeout or timeout
  if type(cto) ~= "number" or cto ~= cto or cto <= 0 then
    error(where .. ": connect_timeout must be a positive number of seconds", level)
  end
  return setmetatable({
    u = u, where = where, shown = _M.redact(o.url),
    timeout_ms = math.ceil(timeout * 1000), connect_timeout_ms = math.ceil(cto * 1000),
    pool_size = o.pool_size or 16,
    pool = "chatmaid:" .. u.host .. ":" .. u.port .. ":" .. u.db .. ":"
           .. (u.username or "") .. ":" .. (u.password and "auth" or ""),
  }, mt)
end

function _M:__tostring() return "chatmaid.redis connection " .. self.shown end
mt.__tostring = _M.__tostring

-- The AUTH and SELECT a fresh connection needs, as argument lists.
local function setup_cmds(u)
  local cmds = {}
  if u.password then
    cmds[#cmds + 1] = u.username and { "AUTH", u.username, u.password }
                      or { "AUTH", u.password }
  end
  if u.db ~= 0 then cmds[#cmds + 1] = { "SELECT", tostring(u.db) } end
  return cmds
end

local function c_fail(self, kind, msg, what)
  local text = (what or "command") .. ": " .. tostring(msg) .. " (" .. self.shown .. ")"
  if kind == "redis" then return fail("redis", text, { redis_error = msg }) end
  return fail(kind, text)
end

-- hiredis backend -----------------------------------------------------------------------

local function hiredis_connect(self)
  local core = require "chatmaid.redis.core"
  local c, kind, msg = core.redis_connect(self.u.host, self.u.port, self.connect_timeout_ms,
                                          self.timeout_ms)
  if not c then
    return c_fail(self, kind, msg, "connect")
  end
  for _, cmd in ipairs(setup_cmds(self.u)) do
    local r, k, m = c:command(cmd, self.timeout_ms)
    if r == nil then
      c:close()
      -- never echo the AUTH arguments; the server's own text names no password
      return c_fail(self, k, m, cmd[1])
    end
  end
  self.c = c
  return c
end

local function hiredis_call(self, args)
  local c = self.c
  if not c or not c:connected() then
    local err
    c, err = hiredis_connect(self)
    if not c then return nil, err end
  end
  local r, kind, msg = c:command(args, self.timeout_ms)
  if r == nil then
    if kind ~= "redis" then self.c = nil; c:close() end
    return c_fail(self, kind, msg, args[1])
  end
  return r
end

-- nginx backend -------------------------------------------------------------------------

local function denull(v, null)
  if v == null then return false end
  if type(v) == "table" then
    for i = 1, #v do v[i] = denull(v[i], null) end
  end
  return v
end

local unpack = table.unpack or unpack   -- luacheck: ignore

local function nginx_call(self, ngx, args)
  local phase = ngx.get_phase()
  if not COSOCKET[phase] then
    return fail("phase", "no cosockets in nginx's " .. phase .. " phase: call from "
                .. "rewrite/access/content/timer")
  end
  local R = nginx_client()
  if not R then
    return fail("connect", "no cosocket Redis client (install lua-nginx-redis or "
                .. "lua-resty-redis)")
  end
  -- rawget: the client makes a Redis command of any other name it is asked for
  local split = rawget(R, "set_timeouts") ~= nil
  local red = R:new()
  if split then
    red:set_timeouts(self.connect_timeout_ms, self.timeout_ms, self.timeout_ms)
  else
    red:set_timeout(self.connect_timeout_ms)
  end
  local ok, err
  if self.u.port == 0 then
    ok, err = red:connect("unix:" .. self.u.host, { pool = self.pool })
  else
    ok, err = red:connect(self.u.host, self.u.port, { pool = self.pool })
  end
  if not ok then
    return fail(err == "timeout" and "timeout" or "connect",
                "cannot connect: " .. tostring(err) .. " (" .. self.shown .. ")")
  end
  if not split then red:set_timeout(self.timeout_ms) end
  if (red:get_reused_times() or 0) == 0 then
    for _, cmd in ipairs(setup_cmds(self.u)) do
      local r, e = red[cmd[1]:lower()](red, unpack(cmd, 2))
      if not r then
        red:close()
        return fail(r == false and "redis" or (e == "timeout" and "timeout" or "closed"),
                    cmd[1] .. " failed: " .. tostring(e), { redis_error = r == false and e
                                                             or nil })
      end
    end
  end
  local cmd = args[1]:lower()
  local r, e = red[cmd](red, unpack(args, 2))
  if r == nil then
    red:close()
    return fail(e == "timeout" and "timeout" or "closed",
                args[1] .. ": " .. tostring(e) .. " (" .. self.shown .. ")")
  end
  red:set_keepalive(60000, self.pool_size)
  if r == false then return fail("redis", e, { redis_error = e }) end
  return denull(r, ngx.null)
end

-- conn:call{ "CMD", arg, ... } -> reply | nil, err
-- reply: string, integer, false (nil reply) or an array of those.
function _M:call(args)
  local ngx = in_nginx()
  if ngx then return nginx_call(self, ngx, args) end
  return hiredis_call(self, args)
end

-- Scripts: the SHA1 each script text has on the server, learned once per process with
-- SCRIPT LOAD (chatmaid.core has no SHA1, and a text's SHA1 never changes).
local shas = {}

-- conn:script(text, keys, args) -> reply | nil, err
-- EVALSHA; on NOSCRIPT (server restarted or SCRIPT FLUSH) EVAL, which caches it again.
function _M:script(text, keys, args)
  local sha = shas[text]
  if not sha then
    local r, err = self:call{ "SCRIPT", "LOAD", text }
    if not r then return nil, err end
    sha = r
    shas[text] = r
  end
  local argv = { "EVALSHA", sha, #keys }
  for i = 1, #keys do argv[#argv + 1] = keys[i] end
  for i = 1, #args do argv[#argv + 1] = args[i] end
  local r, err = self:call(argv)
  if r == nil and err.reason == "redis" and tostring(err.redis_error):find("^NOSCRIPT") then
    argv[1], argv[2] = "EVAL", text
    r, err = self:call(argv)
  end
  return r, err
end

-- conn:close(): drops the hiredis connection (nginx connections go back to the pool).
function _M:close()
  if self.c then self.c:close() end
  self.c = nil
  return true
end

_M.in_nginx = in_nginx

return _M
