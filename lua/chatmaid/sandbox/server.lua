-- SPDX-License-Identifier: MIT
-- The sandbox's network side: a 127.0.0.1 listener and one coroutine per connection
-- (HTTP/1.1 keep-alive), all driven by the scheduler's select loop.
local socket = require("socket")
local http = require("chatmaid.sandbox.http")
local conn_mod = require("chatmaid.sandbox.conn")
local faults = require("chatmaid.sandbox.faults")
local R = require("chatmaid.sandbox.responses")
local app_mod = require("chatmaid.sandbox.app")
local util = require("chatmaid.sandbox.util")

local _M = {}
local mt = { __index = _M }

-- At most this many client connections at once (config max_connections). Past it a new
-- connection is answered 503 and closed at once, so the descriptors select() watches stay
-- far below FD_SETSIZE (1024): idle connections cannot take the sandbox down.
_M.MAX_CONNECTIONS = 512

-- new(opts) -> server (bound, not yet serving) | nil, err.
-- opts: port (0 = any free port), config, control, verbose, log (function(line)).
function _M.new(opts)
  opts = opts or {}
  local log = opts.log or function(line) io.stderr:write(line, "\n") end
  local app = app_mod.new{ config = opts.config, control = opts.control, log = log }
  local sock, err = socket.bind("127.0.0.1", tonumber(opts.port) or 0, 128)
  if not sock then return nil, "bind 127.0.0.1:" .. tostring(opts.port) .. ": " .. err end
  sock:settimeout(0)
  local _, port = sock:getsockname()
  return setmetatable({
    app = app, sock = sock, port = tonumber(port), conns = {}, nconns = 0,
    max_conns = tonumber(app.config.max_connections) or _M.MAX_CONNECTIONS,
    verbose = opts.verbose, log = log,
  }, mt)
end

local function serve_conn(self, c)
  local app = self.app
  local max_body = tonumber(app.config.max_body) or 1048576
  while not c.closed do
    local req, why, bad = http.read_request(c, max_body)
    if not req then
      if why == "bad" and bad then c:send(http.serialize(bad, false)) end
      break
    end
    local t0 = util.now()
    local resp, fault = app:dispatch(req)
    local keep = req.keep_alive and not app.stopping
    if c.closed then break end
    if fault then
      keep = faults.write(c, fault, resp, keep)
    else
      keep = c:send(http.serialize(resp, keep, req.method == "HEAD")) and keep
    end
    if self.verbose then
      self.log(string.format("%s %s -> %d%s %.1fms", req.method, req.target, resp.status,
        fault and (" [fault " .. fault.type .. "]") or "", (util.now() - t0) * 1000))
    end
    if not keep then break end
  end
  c:close()
  self:_forget(c)
end

function _M:_forget(c)
  if self.conns[c] then
    self.conns[c] = nil
    self.nconns = self.nconns - 1
  end
end

local function refuse(self, s)
  -- best effort, never blocks: the answer fits in the socket buffer of a new connection
  s:settimeout(0)
  pcall(s.send, s, http.serialize(R.error(503, "The sandbox has too many open connections;"
    .. " close idle ones and retry", "/"), false))
  s:close()
  local stats = self.app.store.stats
  stats.connectionsRefused = stats.connectionsRefused + 1
end

local function admit(self, s)
  s:setoption("tcp-nodelay", true)
  local c = conn_mod.wrap(s, self.app.sched)
  self.conns[c] = true
  self.nconns = self.nconns + 1
  self.app.store.stats.connectionsAccepted = self.app.store.stats.connectionsAccepted + 1
  self.app.sched:spawn_guarded(function()
    -- best effort: the task is dead, so answer without yielding, then close
    if not c.closed then
      pcall(c.sock.send, c.sock, http.serialize(R.error(500, "Internal server error", "/"),
        false))
    end
    c:close()
    self:_forget(c)
  end, serve_conn, self, c)
end

local function accept(self)
  for _ = 1, 64 do
    local s = self.sock:accept()
    if not s then return end
    if self.nconns >= self.max_conns then refuse(self, s) else admit(self, s) end
  end
end

-- run(on_tick): serve until POST /__sandbox/shutdown (or on_tick() returns false).
function _M:run(on_tick)
  local sched = self.app.sched
  sched:listen(self.sock, function() accept(self) end)
  local stop_at
  while true do
    -- idle rounds wake every 0.25 s; once stopping, no later than the stop time
    sched:step(stop_at and math.max(0, math.min(0.25, stop_at - util.now())) or 0.25)
    if on_tick and on_tick() == false then break end
    if self.app.stopping then
      -- let the shutdown response (and anything in flight) go out first
      stop_at = stop_at or (util.now() + 0.1)
      if util.now() >= stop_at then break end
    end
  end
  self:close()
end

function _M:close()
  for c in pairs(self.conns) do c:close() end
  self.conns, self.nconns = {}, 0
  if self.sock then self.sock:close(); self.sock = nil end
end

return _M
