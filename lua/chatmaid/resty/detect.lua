-- SPDX-License-Identifier: MIT

--- Fills in a client made inside nginx with non-blocking parts.
-- Called by chatmaid.base when a client is made inside nginx (ngx.get_phase exists): fills
-- in the options the caller left unset with non-blocking ones. The phase is checked per
-- request, not here: a client made in init_by_lua is used later from content or timers.
-- @module chatmaid.resty.detect
local errors = require "chatmaid.errors"
local transport = require "chatmaid.resty.transport"

local ngx = ngx   -- luacheck: ignore (nginx global)

local _M = {}

-- The transport reports a phase without I/O as kind "validation" (nothing was sent); the
-- shared pipeline would file an unknown kind under "transport", so this turns it into the
-- validation error. A TLS failure names nginx's directive, not ca_file (which cosockets
-- cannot use). Everything else goes to the class's own interpret.
local function interpret(self, method, path, res, kind, msg, ...)
  if not res and kind == "validation" then
    return nil, errors.new("validation", msg, { method = method, path = path,
                                                messages = { msg }, fields = {} })
  end
  if not res and kind == "tls" then
    return nil, errors.new("transport", "TLS failed (certificate not trusted, or not "
                           .. "issued for the API host): " .. tostring(msg),
                           { method = method, path = path, reason = "tls",
                             retryable = false })
  end
  return getmetatable(self).__index._interpret(self, method, path, res, kind, msg, ...)
end

-- One scheduler per request or timer (chatmaid.sched): a client made once per worker is
-- used by many requests at once, and a task's coroutine and light threads belong to the
-- request that started them. Keyed by ngx.ctx (one table per request and per timer, gone
-- with it). Outside the phases with non-blocking I/O there is none (nothing can wait there).
local by_request = setmetatable({}, { __mode = "k" })   -- ngx.ctx -> { [client] = sched }
local IO_PHASES = transport.IO_PHASES

local function sched_slot(client, s)
  -- the common case, a plain send with no scheduler anywhere, never touches ngx.ctx (its
  -- first use in a request makes a table and a registry reference)
  if s == nil and next(by_request) == nil then return nil end
  if not IO_PHASES[ngx.get_phase()] then return nil end
  local ctx = ngx.ctx
  local t = by_request[ctx]
  if s == nil then return t and t[client] end
  if not t then
    t = setmetatable({}, { __mode = "k" })
    by_request[ctx] = t
  end
  t[client] = s
end

--- Give a client made inside nginx the cosocket transport, ngx.sleep and ngx.now.
-- apply(client, opts): client.transport/sleep/now unless opts names them. Other pool
-- settings: transport = require("chatmaid.resty").transport{ keepalive_pool = n, ... }.
-- @tparam table self the client being made
-- @tparam table opts the options of chatmaid.new (transport, sleep and now given there are kept)
function _M.apply(self, opts)
  self._interpret = interpret
  self._sched_slot = sched_slot
  if not opts.transport then
    self.transport = transport.new{
      timeout_ms = math.ceil(self.timeout * 1000),
      connect_timeout_ms = math.ceil((opts.connect_timeout or 10) * 1000),
      ca_file = opts.ca_file, proxy = opts.proxy, max_body = opts.max_body,
    }
  end
  if not opts.sleep then self.sleep = ngx.sleep end
  if not opts.now then self.now = ngx.now end
end

return _M
