-- SPDX-License-Identifier: MIT
-- Redis for chatmaid.redis: the redis:// URL, AUTH and SELECT, server scripts (EVALSHA, EVAL
-- when the server answers NOSCRIPT), and two backends: libhiredis through chatmaid.redis.core
-- (any Lua outside nginx) and, inside nginx, the cosocket client of lua-nginx-redis /
-- lua-resty-redis with pooled keepalive connections.
--
-- Outside nginx a conn (what new() returns) is a handle, not a socket: every handle of one
-- address and credentials shares the process's connections to it (a pool of at most POOL,
-- one while calls come one at a time), so 1,000 limiters cost one connection. A command owns
-- its connection from send to reply (never interleaved). Inside a task of a chatmaid client
-- (client:spawn) the wait for the reply yields to the client's scheduler (chatmaid.sched),
-- which polls the Redis socket with libcurl's; elsewhere it blocks. Either way `timeout` is a
-- deadline for the whole command, however the reply trickles in.
--
-- Every failure is `nil, err` with err.kind "transport"; err.reason says which:
-- "connect", "timeout", "closed", "protocol" (a reply that is malformed, too large or not
-- the expected type), "redis" (the server answered an error), "readonly" (the server is a
-- replica, still after a reconnect), "cluster" (a redirect loop or a cluster refusing our
-- commands), "phase" (nginx phase without cosockets), "nomem". No error carries the password.
local errors = require "chatmaid.errors"
local sched = require "chatmaid.sched"

local _M = { DEFAULT_TIMEOUT = 1, DEFAULT_PORT = 6379,
             POOL = 4,            -- connections per address at most, while tasks overlap
             MAX_REDIRECTS = 5 }  -- MOVED/ASK hops of one command (Redis Cluster)
local mt = { __index = _M }

local function pct_decode(s)
  return (s:gsub("%%(%x%x)", function(h) return string.char(tonumber(h, 16)) end))
end

local SECRET_KEYS = { password = true, pass = true, pwd = true, auth = true, secret = true,
                      token = true, requirepass = true, key = true }

-- After the userinfo, only what has the shape of host[:port][/db][?query] is shown: when the
-- URL lacks its host, what follows the last "@" may be the end of the password.
local function safe_hostpath(s)
  local hostport, path, query = s:match("^([^/?]*)([^?]*)(.*)$")
  if not (hostport:match("^[%w.-]*:?%d*$") or hostport:match("^%[[%x:.]*%]:?%d*$")) then
    return "***"
  end
  if not path:match("^/?%d*$") then path = "/***" end
  return hostport .. path .. query
end

-- redact(url) -> the URL with any password replaced by "***" (for messages). Safe for any
-- string: the userinfo is everything before the LAST "@" (a password may hold "@", "/",
-- ":"), a "host:port" whose port is not a number is hidden (a forgotten "@"), and so are
-- query values named like a secret.
function _M.redact(url)
  local s = tostring(url)
  local scheme, rest = s:match("^(%a[%w+.-]*://)(.*)$")
  if not scheme then scheme, rest = "", s end
  local at = rest:match("^.*()@")
  if at then
    local userinfo = rest:sub(1, at - 1)
    local user = userinfo:match("^([^:/@?]*):")
    rest = (user or "") .. ":***@" .. safe_hostpath(rest:sub(at + 1))
  else
    local authority = rest:match("^[^/?]*")
    local port = authority:match("^%[.*%]:(.*)$") or authority:match("^[^:]*:(.*)$")
    if port and port ~= "" and not port:match("^%d+$") then return scheme .. "***" end
  end
  rest = rest:gsub("([?&])([^=&]*)=([^&]*)", function(sep, k, v)
    if SECRET_KEYS[k:lower()] then v = "***" end
    return sep .. k .. "=" .. v
  end)
  return scheme .. rest
end

local TLS_HINT = "TLS (rediss://) is not supported; use a local TLS proxy (stunnel, "
  .. "spiped or a sidecar such as redis behind haproxy) and give its plain "
  .. "redis://127.0.0.1:port address"
local SENTINEL_HINT = "Redis Sentinel URLs are not supported: give a redis:// address that "
  .. "always reaches the primary (a virtual IP or DNS name your failover moves, or a proxy "
  .. "such as HAProxy checking role:master); after a failover chatmaid reconnects when the "
  .. "old primary answers READONLY"

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
  local function db_of(digits, what)
    local db = digits and #digits <= 9 and tonumber(digits)
    if not db then bad(what) end
    return db
  end
  if scheme == "unix" or scheme == "redis+unix" then
    local path, query = rest:match("^([^?]*)%??(.*)$")
    if path:sub(1, 1) ~= "/" then bad("a unix socket URL needs an absolute path") end
    u.host, u.port = path, 0
    if query ~= "" then
      u.db = db_of(query:match("^db=(%d+)$"), "the only query parameter is db=N")
    end
    return u
  end
  if scheme == "rediss" then bad(TLS_HINT) end
  if scheme:find("sentinel", 1, true) then bad(SENTINEL_HINT) end
  if scheme ~= "redis" then
    bad("the scheme must be redis:// (or unix:// for a socket); "
        .. TLS_HINT:gsub("^TLS %(rediss://%)", "TLS"))
  end
  -- the userinfo ends at the last "@": a password may hold "@", "/" and ":" unescaped
  local auth, hostpath = rest:match("^(.*)@(.-)$")
  if not auth then hostpath = rest end
  local hostport, path, query = hostpath:match("^([^/?]*)([^?]*)%??(.*)$")
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
  if not host then bad("expected host:port with a numeric port") end
  if host == "" then bad("no host") end
  u.host = host
  u.port = port ~= "" and #port <= 5 and tonumber(port) or (port == "" and _M.DEFAULT_PORT)
  if not u.port or u.port < 1 or u.port > 65535 then bad("port out of range") end
  if path ~= "" and path ~= "/" then
    u.db = db_of(path:match("^/(%d+)$"), "the path must be the database number, e.g. /0")
  end
  if query ~= "" then
    for k, v in query:gmatch("([^&=]*)=?([^&]*)") do
      local lk = k:lower()
      if lk == "ssl" or lk == "tls" or lk == "ssl_cert_reqs" then bad(TLS_HINT) end
      if lk == "db" then
        u.db = db_of(v:match("^%d+$") and v, "db=N needs a number")
      elseif k ~= "" then
        bad("unknown query parameter (supported: db=N); put the password before the @")
      end
    end
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

-- A cosocket pool is reused without AUTH, so its name must tell passwords apart (or a wrong,
-- stale password would be taken while a connection made with the right one is idle). Pools
-- are per worker: a number this process gave the password names it, never the password.
local credential_ids, credentials = {}, 0
local function credential_id(password)
  if not password then return "" end
  local id = credential_ids[password]
  if not id then
    credentials = credentials + 1
    id = credentials
    credential_ids[password] = id
  end
  return "auth" .. id
end

-- new{ url, timeout = 1 (s, deadline of each command), connect_timeout = timeout,
--      pool_size = 16 (nginx), where = "name for messages", level = 2 } -> conn (no I/O
-- yet). Raises on a bad URL or option, at `level` counted from new (the user's line
-- through the public wrappers).
function _M.new(o)
  local where = o.where or "chatmaid.redis"
  local level = o.level or 2
  local u = _M.parse_url(o.url, where, level + 1)
  local timeout = o.timeout or _M.DEFAULT_TIMEOUT
  if type(timeout) ~= "number" or timeout ~= timeout or timeout <= 0 or timeout > 86400 then
    error(where .. ": timeout must be a positive number of seconds", level)
  end
  local cto = o.connect_timeout or timeout
  if type(cto) ~= "number" or cto ~= cto or cto <= 0 or cto > 86400 then
    error(where .. ": connect_timeout must be a positive number of seconds", level)
  end
  -- the password as given and as decoded: scrubbed from any text a server sends back
  local raw = o.url:match("^%a[%w+.-]*://[^:@]*:(.*)@") or o.url:match("^%a[%w+.-]*://(.*)@")
  local secrets = {}
  for _, pw in ipairs({ u.password or "", raw or "" }) do
    if #pw >= 3 then secrets[#secrets + 1] = pw end
  end
  return setmetatable({
    u = u, where = where, shown = _M.redact(o.url), secrets = secrets,
    timeout = timeout, connect_timeout = cto,
    timeout_ms = math.ceil(timeout * 1000), connect_timeout_ms = math.ceil(cto * 1000),
    pool_size = o.pool_size or 16,
    pool = "chatmaid:" .. u.host .. ":" .. u.port .. ":" .. u.db .. ":"
           .. (u.username or "") .. ":" .. credential_id(u.password),
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

-- Server text in a message: short, printable, and never the password (a hostile or
-- confused server may echo what it was sent).
local function scrub(self, text)
  text = tostring(text)
  for _, pw in ipairs(self.secrets) do
    local i = text:find(pw, 1, true)
    while i do
      text = text:sub(1, i - 1) .. "***" .. text:sub(i + #pw)
      i = text:find(pw, i + 3, true)
    end
  end
  if #text > 200 then text = text:sub(1, 200) .. "..." end
  return (text:gsub("[%z\1-\31\127]", "?"))
end

local function c_fail(self, kind, msg, what, node)
  local text = (what or "command") .. ": " .. scrub(self, msg) .. " ("
               .. (node and node.shown or self.shown) .. ")"
  if kind == "redis" then return fail("redis", text, { redis_error = scrub(self, msg) }) end
  return fail(kind, text)
end

-- A reply's shape in words, for "protocol" messages (never its full text).
local function shape(r)
  local t = type(r)
  if t == "table" then return "an array of " .. #r end
  if r == false then return "a nil reply" end
  if t == "string" then return "a string of " .. #r .. " bytes" end
  return "a " .. t
end
_M.shape = shape

-- expect(reply, what, name) -> value | nil, err (reason "protocol"). The check a feature
-- makes of a reply before using it: what = "string", "integer" (a whole number, from an
-- integer reply or its decimal text), "number" (a finite number, from either), "array",
-- "ok" (+OK). name: the command or script, for the message.
function _M.expect(r, what, name)
  local v
  if what == "number" or what == "integer" then
    v = tonumber(r)
    if type(r) ~= "number" and (type(r) ~= "string" or #r > 40) then v = nil end
    if v and (v ~= v or v == math.huge or v == -math.huge) then v = nil end
    if v and what == "integer" and v ~= math.floor(v) then v = nil end
  elseif what == "string" then
    v = type(r) == "string" and r or nil
  elseif what == "array" then
    v = type(r) == "table" and r or nil
  elseif what == "ok" then
    v = r == "OK" and r or nil
  else
    error("chatmaid.redis.conn.expect: unknown shape " .. tostring(what), 2)
  end
  if v == nil then
    return fail("protocol", tostring(name) .. " answered " .. shape(r) .. " where "
                .. (what == "ok" and "OK" or ((what:find("^[aeiou]") and "an " or "a ")
                .. what)) .. " was expected (is this a Redis server?)")
  end
  return v
end

-- hiredis backend -----------------------------------------------------------------------

local rcore, monotime
local function load_core()
  rcore = require "chatmaid.redis.core"
  monotime = require("chatmaid.core").monotime
end

-- Physical connections: one node per address, db and credentials, process-wide.
-- node = { key, host, port, shown, idle = { c... }, open = n, waiters = { ev... },
--          shas = { [script text] = sha1 the server gave } }
local nodes = {}

local function node_of(self, host, port)
  local u = self.u
  local key = host .. "\0" .. port .. "\0" .. u.db .. "\0" .. (u.username or "") .. "\0"
              .. (u.password or "")
  local n = nodes[key]
  if not n then
    local shown
    if port == 0 then
      shown = "unix://" .. host
    else
      shown = "redis://" .. (u.username and (u.username .. ":***@") or u.password and ":***@"
                             or "")
              .. (host:find(":", 1, true) and ("[" .. host .. "]") or host) .. ":" .. port
              .. (u.db ~= 0 and ("/" .. u.db) or "")
    end
    n = { key = key, host = host, port = port, idle = {}, open = 0, waiters = {}, shas = {},
          shown = shown }
    nodes[key] = n
  end
  return n
end

-- The client whose task the running code is (of any client), for waits that yield; or nil
-- (block) where the code cannot yield: PUC Lua 5.1 has no coroutine.isyieldable and cannot
-- yield across a pcall (send_batch's protected hooks), nor can any Lua inside a metamethod.
local isyieldable = coroutine.isyieldable
local function task_ctx()
  if not isyieldable or not isyieldable() then return nil end
  return (sched.running())
end

-- Waits for c's socket, or until `deadline`: yields inside a task, else polls in C.
-- -> reply | nil, kind, message (kind "timeout" once the deadline passed)
local function pump(c, deadline, ctx)
  while true do
    local left = deadline - monotime()
    local ms = 0
    if not ctx and left > 0 then ms = math.ceil(left * 1000) end
    local r, kind, msg = c:pump(ms)
    if r ~= nil or kind ~= "again" then return r, kind, msg end
    left = deadline - monotime()
    if left <= 0 then return nil, "timeout", "no complete answer within the deadline" end
    if ctx then sched.wait_fd(c:fd(), msg, left, rcore.poll) end
  end
end

-- One command on an owned connection. -> reply | nil, kind, message
local function exchange(c, args, deadline, ctx)
  local ok, kind, msg = c:send(args)
  if not ok then return nil, kind, msg end
  return pump(c, deadline, ctx)
end

local function drop(node, c)
  c:close()
  node.open = node.open - 1
end

-- Wakes the first waiter still waiting (a cancelled or timed-out one is skipped).
local function wake(node)
  while node.waiters[1] do
    local w = table.remove(node.waiters, 1)
    local t = w.ev.task
    if t and t.wait == w.ev then
      sched.notify(w.client, w.ev)
      return
    end
  end
end

local function release(node, c)
  if c:connected() and not c:busy() and #node.idle < _M.POOL then
    node.idle[#node.idle + 1] = c
  else
    drop(node, c)
  end
  wake(node)
end

-- A fresh connection to node: connect, AUTH, SELECT. -> c | nil, err
-- opening.c: the connection while it is being set up (for the caller's cancel hook).
local function open(self, node, ctx, opening)
  local deadline = monotime() + self.connect_timeout
  local c, kind, msg = rcore.open(node.host, node.port)
  if c then
    opening.c = c
    local r
    r, kind, msg = pump(c, deadline, ctx)   -- the connect itself
    if r == nil then
      c:close()
      c = nil
      if kind == "timeout" then
        msg = "no connection within " .. self.connect_timeout_ms .. " ms"
      end
    end
  end
  if not c then
    return c_fail(self, kind == "closed" and "connect" or kind, msg, "connect", node)
  end
  deadline = monotime() + self.timeout
  for _, cmd in ipairs(setup_cmds(self.u)) do
    local r, k, m = exchange(c, cmd, deadline, ctx)
    if r ~= "OK" then
      c:close()
      -- never echo the AUTH arguments; the server's text is scrubbed of the password
      if r ~= nil then k, m = "protocol", "answered " .. shape(r) .. " where OK was expected" end
      if k == "redis" and cmd[1] == "SELECT" and m:find("cluster", 1, true) then
        return fail("cluster", "Redis Cluster has only database 0: use redis://host:port/0 ("
                    .. node.shown .. ")")
      end
      return c_fail(self, k, m, cmd[1], node)
    end
  end
  return c
end

-- acquire(node, deadline, ctx) -> c | nil, err: an idle connection of node, a new one while
-- it has fewer than POOL, else (in a task) wait for one to come back. A blocking caller
-- never waits for a task (that task moves only when its scheduler steps): it opens one more.
local function acquire(self, node, deadline, ctx)
  while true do
    local idle = node.idle
    while idle[1] do
      local c = table.remove(idle)
      if c:connected() then return c end   -- false in a forked child, or after a failure
      drop(node, c)
    end
    if node.open < _M.POOL or not ctx then
      node.open = node.open + 1
      local opening = {}
      local forget = ctx and sched.on_cancel(ctx, function()   -- cancelled while connecting
        -- its socket is closed now, not by the GC some time later (a server counting its
        -- clients, or an fd limit, sees it go at once)
        if opening.c then opening.c:close() end
        node.open = node.open - 1
        wake(node)
      end)
      local c, err = open(self, node, ctx, opening)
      if forget then forget() end
      if not c then
        node.open = node.open - 1
        wake(node)
        return nil, err
      end
      return c
    end
    local left = deadline - monotime()
    if left <= 0 then
      return c_fail(self, "timeout", "every pooled connection stayed busy", "connect", node)
    end
    local w = { client = ctx, ev = sched.event() }
    node.waiters[#node.waiters + 1] = w
    sched.wait_event(ctx, w.ev, left)
    for i, x in ipairs(node.waiters) do
      if x == w then table.remove(node.waiters, i) break end
    end
  end
end

-- The node a handle sends to: its URL's, or the one a MOVED pointed at.
local function current_node(self)
  local n = self.moved
  if n then return n end
  n = self.home
  if not n then
    n = node_of(self, self.u.host, self.u.port)
    self.home = n
  end
  return n
end

local function redirect(self, msg)
  local kind, host, port = msg:match("^(%u+) %d+ (.+):(%d+)$")
  if not kind then return nil end
  if host:sub(1, 1) == "[" then host = host:sub(2, -2) end
  if host == "" then host = self.u.host end   -- "MOVED 1 :6380": the same host
  return kind, node_of(self, host, tonumber(port))
end

-- run(self, what, op) -> reply | nil, err. op(c, node, deadline, ctx, asking) does the
-- exchanges of one command on an owned connection. Policy around it: READONLY drops the
-- connection and tries once more on a fresh one (a failover moved the primary behind the
-- same address); MOVED/ASK follow Redis Cluster to the node that owns the key's slot.
local function run(self, what, op)
  if not rcore then load_core() end
  local ctx = task_ctx()
  local deadline = monotime() + self.timeout
  local node, asking, readonly_retry = current_node(self), false, false
  for _ = 0, _M.MAX_REDIRECTS do
    local c, err = acquire(self, node, deadline, ctx)
    if not c then
      self.moved = nil
      return nil, err
    end
    -- a task cancelled mid-command (task:cancel, client:close) gives its connection back
    -- dropped (a reply is due on it); a blocking call cannot be cancelled
    local forget = ctx and sched.on_cancel(ctx, function() drop(node, c) wake(node) end)
    local r, kind, msg = op(c, node, deadline, ctx, asking)
    if forget then forget() end
    if r == nil and kind ~= "redis" then
      drop(node, c)        -- a half-read reply would desynchronise the next command
      wake(node)
      self.moved = nil     -- a node a MOVED named may be gone: ask the URL's next time
      if kind == "timeout" then
        msg = "no answer within " .. self.timeout_ms .. " ms"
      end
      return c_fail(self, kind, msg, what, node)
    end
    asking = false
    if r ~= nil then
      release(node, c)
      return r
    end
    if msg:find("^READONLY") or msg:find("READONLY You can't write", 1, true) then
      drop(node, c)
      wake(node)
      -- idle connections to it are as stale as this one
      for i = #node.idle, 1, -1 do drop(node, node.idle[i]); node.idle[i] = nil end
      if readonly_retry then
        return fail("readonly", what .. ": the server is a read-only replica (" .. node.shown
                    .. "): point the URL at the primary, or at an address that follows it "
                    .. "after a failover", { redis_error = scrub(self, msg) })
      end
      readonly_retry = true
      self.moved = nil
      node = current_node(self)
    else
      release(node, c)
      local rk, target = redirect(self, msg)
      if not rk then return c_fail(self, "redis", msg, what, node) end
      if rk == "MOVED" then self.moved = target else asking = true end
      node = target
    end
  end
  return fail("cluster", what .. ": more than " .. _M.MAX_REDIRECTS .. " MOVED/ASK redirects "
              .. "(a cluster resharding, or keys of different slots) (" .. self.shown .. ")")
end

local function asking_first(c, deadline, ctx)
  local r, kind, msg = exchange(c, { "ASKING" }, deadline, ctx)
  if r == nil then return nil, kind, msg end
  if r ~= "OK" then return nil, "protocol", "ASKING answered " .. shape(r) end
  return true
end

local function hiredis_call(self, args)
  return run(self, tostring(args[1]), function(c, _, deadline, ctx, asking)
    if asking then
      local ok, kind, msg = asking_first(c, deadline, ctx)
      if not ok then return nil, kind, msg end
    end
    return exchange(c, args, deadline, ctx)
  end)
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

local function nginx_call_once(self, ngx, args)
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
                "cannot connect: " .. scrub(self, err) .. " (" .. self.shown .. ")")
  end
  if not split then red:set_timeout(self.timeout_ms) end
  local reused = (red:get_reused_times() or 0) > 0
  if not reused then
    for _, cmd in ipairs(setup_cmds(self.u)) do
      local r, e = red[cmd[1]:lower()](red, unpack(cmd, 2))
      if not r then
        red:close()
        return fail(r == false and "redis" or (e == "timeout" and "timeout" or "closed"),
                    cmd[1] .. " failed: " .. scrub(self, e), { redis_error = r == false
                                                              and scrub(self, e) or nil })
      end
    end
  end
  local cmd = args[1]:lower()
  local r, e = red[cmd](red, unpack(args, 2))
  if r == nil then
    red:close()
    return fail(e == "timeout" and "timeout" or "closed",
                args[1] .. ": " .. scrub(self, e) .. " (" .. self.shown .. ")")
  end
  if r == false and tostring(e):find("READONLY", 1, true) then
    red:close()   -- not back to the pool
    local _, ro = fail("readonly", args[1] .. ": the server is a read-only replica ("
                       .. self.shown .. "): point the URL at the primary, or at an address "
                       .. "that follows it after a failover", { redis_error = scrub(self, e) })
    return nil, ro, reused
  end
  red:set_keepalive(60000, self.pool_size)
  if r == false then
    if tostring(e):find("^MOVED") or tostring(e):find("^ASK ") then
      return fail("cluster", args[1] .. ": Redis Cluster is not supported inside nginx "
                  .. "(the server answered a redirect): use a standalone primary ("
                  .. self.shown .. ")", { redis_error = scrub(self, e) })
    end
    return fail("redis", scrub(self, e), { redis_error = scrub(self, e) })
  end
  return denull(r, ngx.null)
end

-- A pooled connection answering READONLY predates a failover behind the address: it is
-- closed and the command tried again, on the next pooled one or a new one (a pool holds at
-- most pool_size); READONLY from a new connection is the answer.
local function nginx_call(self, ngx, args)
  for _ = 1, self.pool_size do
    local r, err, stale = nginx_call_once(self, ngx, args)
    if r ~= nil or not stale then return r, err end
  end
  return nginx_call_once(self, ngx, args)
end

-- conn:call{ "CMD", arg, ... } -> reply | nil, err
-- reply: string, integer, false (nil reply) or an array of those.
function _M:call(args)
  local ngx = in_nginx()
  if ngx then return nginx_call(self, ngx, args) end
  return hiredis_call(self, args)
end

local function is_sha(r)
  return type(r) == "string" and #r == 40 and r:match("^%x+$") ~= nil
end

local function evalsha_args(cmd, head, keys, args)
  local argv = { cmd, head, #keys }
  for i = 1, #keys do argv[#argv + 1] = keys[i] end
  for i = 1, #args do argv[#argv + 1] = args[i] end
  return argv
end

-- Scripts inside nginx: the SHA1 each text has, learned with SCRIPT LOAD (checked: a
-- 40-digit hex string, or it is not cached).
local nginx_shas = {}

-- conn:script(text, keys, args) -> reply | nil, err
-- EVALSHA; on NOSCRIPT (server restarted or SCRIPT FLUSH) EVAL, which caches it again.
-- The SHA1 is learned once per server with SCRIPT LOAD and kept only when it is one.
function _M:script(text, keys, args)
  local ngx = in_nginx()
  if ngx then
    local sha = nginx_shas[text]
    if not sha then
      local r, err = nginx_call(self, ngx, { "SCRIPT", "LOAD", text })
      if r == nil then return nil, err end
      if not is_sha(r) then
        return fail("protocol", "SCRIPT LOAD answered " .. shape(r) .. " where a SHA1 was "
                    .. "expected (" .. self.shown .. ")")
      end
      sha = r:lower()
      nginx_shas[text] = sha
    end
    local r, err = nginx_call(self, ngx, evalsha_args("EVALSHA", sha, keys, args))
    if r == nil and err.reason == "redis" and tostring(err.redis_error):find("^NOSCRIPT") then
      r, err = nginx_call(self, ngx, evalsha_args("EVAL", text, keys, args))
    end
    return r, err
  end
  return run(self, "EVALSHA", function(c, node, deadline, ctx, asking)
    local sha = node.shas[text]
    if not sha then
      local r, kind, msg = exchange(c, { "SCRIPT", "LOAD", text }, deadline, ctx)
      if r == nil then return nil, kind, msg end
      if not is_sha(r) then
        return nil, "protocol", "SCRIPT LOAD answered " .. shape(r)
               .. " where a SHA1 was expected"
      end
      sha = r:lower()
      node.shas[text] = sha
    end
    if asking then
      local ok, kind, msg = asking_first(c, deadline, ctx)
      if not ok then return nil, kind, msg end
    end
    local r, kind, msg = exchange(c, evalsha_args("EVALSHA", sha, keys, args), deadline, ctx)
    if r == nil and kind == "redis" and msg:find("^NOSCRIPT") then
      node.shas[text] = nil
      if asking then
        local ok, k2, m2 = asking_first(c, deadline, ctx)
        if not ok then return nil, k2, m2 end
      end
      r, kind, msg = exchange(c, evalsha_args("EVAL", text, keys, args), deadline, ctx)
    end
    return r, kind, msg
  end)
end

-- conn:close() -> true. Outside nginx a handle holds no socket between commands (they are
-- the process's, shared); inside nginx connections go back to the cosocket pool.
function _M:close()
  self.moved = nil
  return true
end

-- conn.stats() -> { [shown address] = { open = n, idle = n } }: the process's connections.
function _M.stats()
  local out = {}
  for _, n in pairs(nodes) do
    local s = out[n.shown] or { open = 0, idle = 0 }
    s.open, s.idle = s.open + n.open, s.idle + #n.idle
    out[n.shown] = s
  end
  return out
end

-- conn.close_all(): closes every idle connection of the process (tests; a clean exit).
function _M.close_all()
  for _, n in pairs(nodes) do
    for i = #n.idle, 1, -1 do drop(n, n.idle[i]); n.idle[i] = nil end
  end
end

-- conn.sleep(d): the default wait of the limiter's retries and the campaign's polls. Inside a
-- task of a chatmaid client it goes through that client's scheduler, so a frame loop that
-- drives step() keeps running (issue 23); inside nginx ngx.sleep (it yields); elsewhere it
-- blocks.
function _M.sleep(d)
  local ngx_ = in_nginx()
  if ngx_ then return ngx_.sleep(d) end
  local client = sched.running()
  if client then return sched.sleep(client, d) end
  return require("chatmaid.core").sleep(d)
end

_M.in_nginx = in_nginx

return _M
