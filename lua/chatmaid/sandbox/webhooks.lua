-- SPDX-License-Identifier: MIT
-- Webhook delivery: signed POSTs to the configured URL, retried on non-2xx or transport
-- failure on the retry schedule: 1, 5 and 15 minutes after the initial attempt, as the docs
-- say (scaled by time_factor). Only the documented headers are sent. Each delivery
-- is a scheduler task with non-blocking sockets, so it never holds up the API.
local socket = require("socket")
local json = require("chatmaid.sandbox.json")
local util = require("chatmaid.sandbox.util")
local conn_mod = require("chatmaid.sandbox.conn")
local scheduler = require("chatmaid.sandbox.scheduler")

local _M = {}
local mt = { __index = _M }

local signer, signer_err
do
  local ok, wh = pcall(require, "chatmaid.webhook")
  if ok and type(wh) == "table" and type(wh.sign) == "function" then
    signer = wh.sign
  else
    signer_err = "chatmaid.webhook is not available: " .. tostring(wh)
  end
end

-- sign_header(body, secret, t) -> "t=<t>,v1=<hex>" | nil, err. The only place that signs.
function _M.sign_header(body, secret, t)
  if not signer then return nil, signer_err end
  local ok, h = pcall(signer, body, secret, t)
  if not ok or type(h) ~= "string" then return nil, "signing failed: " .. tostring(h) end
  return h
end

function _M.new(app)
  return setmetatable({ app = app, log = {}, seq = 0 }, mt)
end

function _M:reset()
  self.log = {}
end

local function parse_url(url)
  local host, port, path = url:match("^http://([^/:]+):?(%d*)(.*)$")
  if not host then return nil end
  if path == "" then path = "/" end
  return host, tonumber(port) or 80, path
end

-- Deliveries in flight at once. With the server's connection cap (server.MAX_CONNECTIONS)
-- this keeps every descriptor select() watches below FD_SETSIZE (1024), however many
-- events a burst of sends emits: the rest wait their turn.
_M.MAX_IN_FLIGHT = 128
local in_flight = 0

-- One POST over a fresh non-blocking connection -> status | nil, err
local function post_once(url, headers, body, timeout)
  local host, port, path = parse_url(url)
  if not host then return nil, "unsupported webhook url (http:// only): " .. url end
  local deadline = socket.gettime() + timeout
  local sock = socket.tcp()
  sock:settimeout(0)
  local ok, err = sock:connect(host, port)
  if not ok and err == "timeout" then
    if not scheduler.wait_write(sock, deadline) then
      sock:close()
      return nil, "connect timeout"
    end
    ok, err = sock:connect(host, port)
    if not ok and err == "already connected" then ok = true end
  end
  if not ok then
    sock:close()
    return nil, "connect: " .. tostring(err)
  end
  local c = conn_mod.wrap(sock)
  local req = { "POST " .. path .. " HTTP/1.1", "Host: " .. host .. ":" .. port,
    "Content-Length: " .. #body, "Connection: close", "User-Agent: chatmaid-sandbox" }
  for _, kv in ipairs(headers) do req[#req + 1] = kv[1] .. ": " .. kv[2] end
  local sent, serr = c:send(table.concat(req, "\r\n") .. "\r\n\r\n" .. body)
  if not sent then
    c:close()
    return nil, "send: " .. tostring(serr)
  end
  -- read the status line with a deadline (the receiver may never answer)
  local acc = ""
  while true do
    local line, rerr, partial = sock:receive("*l", acc)
    if line then
      c:close()
      local status = tonumber(line:match("^HTTP/%d%.%d (%d%d%d)"))
      if not status then return nil, "bad status line" end
      return status
    end
    if rerr ~= "timeout" then
      c:close()
      return nil, "receive: " .. tostring(rerr)
    end
    acc = partial or acc
    if not scheduler.wait_read(sock, deadline) then
      c:close()
      return nil, "timeout"
    end
  end
end

local function post(url, headers, body, timeout)
  while in_flight >= _M.MAX_IN_FLIGHT do scheduler.sleep(0.01) end
  in_flight = in_flight + 1
  -- no pcall: it cannot span the yields inside on Lua 5.1; post_once returns its failures
  local status, err = post_once(url, headers, body, timeout)
  in_flight = in_flight - 1
  return status, err
end

-- emit(event, data): queue a delivery of event with data (an ordered JSON object).
function _M:emit(event, data)
  local cfg = self.app.config.webhook or {}
  if type(cfg.url) ~= "string" or cfg.url == "" then return end
  self.seq = self.seq + 1
  local id = "evt_" .. util.hex(24)
  local body = json.encode(json.obj("event", event, "timestamp", util.iso(util.now_ms()),
    "data", data))
  local app, log = self.app, self.log
  local gen = app.store.generation
  app:spawn(function()
    local schedule = cfg.retry_schedule or { 60, 300, 900 }
    local attempt, first = 0, nil
    while true do
      attempt = attempt + 1
      local secret = cfg.secret or ""
      first = first or util.now()
      local header, serr = _M.sign_header(body, secret, os.time())
      local status, err
      if header then
        status, err = post(cfg.url, {
          { "Content-Type", "application/json" },
          { "X-Chatmaid-Event", event },
          { "X-Chatmaid-Signature", header },
        }, body, tonumber(cfg.timeout) or 10)
      else
        err = serr
      end
      if app.store.generation ~= gen then return end
      local now = util.now_ms()
      app.store.stats.webhookDeliveries = app.store.stats.webhookDeliveries + 1
      log[#log + 1] = json.obj("id", id, "event", event, "attempt", attempt, "url", cfg.url,
        "status", status or json.null, "error", err or json.null,
        "at", util.iso(now), "atMs", now, "ok", status ~= nil and status >= 200 and status < 300)
      if (status and status >= 200 and status < 300) or not header then return end
      local offset = schedule[attempt]   -- seconds after the initial attempt
      if not offset then return end
      local at = first + offset * (tonumber(app.config.time_factor) or 1)
      scheduler.sleep(math.max(0, at - util.now()))
      if app.store.generation ~= gen then return end
    end
  end)
end

return _M
