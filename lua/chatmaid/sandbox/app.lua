-- SPDX-License-Identifier: MIT
-- The sandbox application: wires the store, faults, webhooks and scheduler together and
-- turns one parsed request into a response (and maybe a fault to play on the wire).
local defaults = require("chatmaid.sandbox.defaults")
local util = require("chatmaid.sandbox.util")
local R = require("chatmaid.sandbox.responses")
local store_mod = require("chatmaid.sandbox.store")
local faults_mod = require("chatmaid.sandbox.faults")
local webhooks_mod = require("chatmaid.sandbox.webhooks")
local scheduler = require("chatmaid.sandbox.scheduler")
local api = require("chatmaid.sandbox.api")
local conversations = require("chatmaid.sandbox.conversations")
local control = require("chatmaid.sandbox.control")

local _M = {}
local mt = { __index = _M }

-- new(opts) -> app. opts: config (table merged over the defaults), control (boolean),
-- log (function(line)).
function _M.new(opts)
  local config = util.merge(defaults.config(), opts.config or {})
  local self = setmetatable({
    config = config, control = opts.control and true or false,
    log = opts.log or function() end,
  }, mt)
  self.sched = scheduler.new(self.log)
  self.store = store_mod.new(config)
  self.faults = faults_mod.new()
  self.webhooks = webhooks_mod.new(self)
  return self
end

function _M:spawn(fn, ...) return self.sched:spawn(fn, ...) end
function _M.sleep(_, seconds) return scheduler.sleep(seconds) end
function _M:emit(event, data) return self.webhooks:emit(event, data) end

function _M:reset()
  self.store:reset()
  self.faults:clear()
  self.webhooks:reset()
end

local function is_control(path)
  return path == "/__sandbox" or path:sub(1, 11) == "/__sandbox/"
end

-- dispatch(req) -> response, fault_or_nil. Runs inside a connection task (may sleep).
-- A handler error becomes a 500 envelope; the server keeps going.
function _M:dispatch(req)
  if is_control(req.path) then
    local ok, resp = pcall(control.handle, self, req)
    if not ok then
      self.log("control error: " .. tostring(resp))
      return R.error(500, "Internal server error", req.path)
    end
    return resp
  end
  local stats = self.store.stats
  self.store:count_path(req.method, req.path)
  if req.method == "POST" and req.path == "/v1/messages/send" then
    stats.sendRequests = stats.sendRequests + 1
  end
  local fault = self.faults:take(req.method, req.path)
  if fault then stats.faultsApplied = stats.faultsApplied + 1 end
  if fault and not fault.process then
    if fault.type == "delay" then
      -- an unprocessed delay is a slow server: wait first, then do the work
      scheduler.sleep(fault.seconds)
      fault = nil
    elseif fault.type ~= "never_answer" and fault.type ~= "reset_before" then
      return faults_mod.canned(fault, req.path), fault
    else
      return R.new(500, ""), fault
    end
  end
  local handle = req.path:sub(1, 14) == "/api/whatsapp/" and conversations.handle or api.handle
  local ok, resp = pcall(handle, self, req)
  if not ok then
    self.log("handler error: " .. tostring(resp))
    resp = R.error(500, "Internal server error", req.path)
  end
  if fault and faults_mod.CANNED[fault.type] then
    return faults_mod.canned(fault, req.path), fault
  end
  return resp, fault
end

return _M
