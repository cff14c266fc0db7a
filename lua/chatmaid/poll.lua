-- SPDX-License-Identifier: MIT
-- client:wait(id, opts): poll GET /v1/messages/{id} until the message reaches a status,
-- with a growing interval, on the client's clock (self.now, self.sleep).
local base = require "chatmaid.base"
local errors = require "chatmaid.errors"
local validate = require "chatmaid.validate"
local url = require "chatmaid.url"
local sched = require "chatmaid.sched"
-- chatmaid.client is required where it is used: it installs these functions when it loads,
-- so requiring it at the top would be a cycle.

local _M = {}

_M.DEFAULT_TIMEOUT = 60
_M.DEFAULT_INTERVAL = 1
_M.MAX_INTERVAL = 10
_M.GROWTH = 1.5

local OPTS = { timeout = "number", interval = "number", max_interval = "number",
               ["until"] = "string|table", until_status = "string|table",
               request_timeout = "number" }

-- Turns `until` (a status or an array of statuses) into a set; raises on unknown statuses.
local function status_set(v)
  local list = type(v) == "string" and { v } or v
  local set, n = {}, 0
  for _, s in ipairs(list) do
    if not validate.statuses[s] then
      error("chatmaid: wait: " .. (validate.one_of(s, validate.statuses, "until") or ""), 4)
    end
    set[s], n = true, n + 1
  end
  if n == 0 then error("chatmaid: wait: until must name at least one status", 4) end
  return set
end

local function options(o)
  if o == nil then o = {} end
  base.check_table("wait", o, OPTS, nil, 4)
  for _, k in ipairs{ "timeout", "interval", "max_interval", "request_timeout" } do
    if o[k] ~= nil and (o[k] ~= o[k] or o[k] <= 0) then  -- NaN too
      error("chatmaid: wait: " .. k .. " must be a positive number", 3)
    end
  end
  if o["until"] ~= nil and o.until_status ~= nil then
    error("chatmaid: wait: pass either until or until_status, not both", 3)
  end
  local u = o["until"] or o.until_status
  return {
    timeout = o.timeout or _M.DEFAULT_TIMEOUT,
    interval = o.interval or _M.DEFAULT_INTERVAL,
    max_interval = o.max_interval or _M.MAX_INTERVAL,
    done = u and status_set(u) or nil,
    request_timeout = o.request_timeout,
  }
end

-- client:wait(id, { timeout = 60, interval = 1, ["until"] = { "sent", "failed" },
--                   until_status = ..., max_interval = 10, request_timeout = s })
--   -> message | nil, err
-- `until` is a Lua keyword: write opts["until"], or use the alias until_status. Without it,
-- any status other than "pending" ends the wait. The interval grows x1.5 up to max_interval.
-- A 429 waits err.retry_after; a retryable failure (5xx, timeout, transport) is tried again
-- at the next interval, at most client.max_retries times in a row; any other error is
-- returned at once. err.kind: validation, not_found, auth, permission, rate_limited, server,
-- transport, decode, and "timeout" when the deadline passes (err.last: the last message seen,
-- err.waited: seconds).
function _M.wait(self, id, o)
  require("chatmaid.client")._check_open(self, "wait")
  if type(id) ~= "string" then
    error("chatmaid: wait expects a message id as a string (got " .. type(id) .. ")", 2)
  end
  local w = options(o)
  local path = "/v1/messages/" .. url.segment(id)
  local problem = validate.id(id, "message id")
  if problem then
    return base.validation("GET", path, { { param = "id", message = problem } })
  end
  local call = { max_retries = 0, timeout = w.request_timeout }
  local start = self.now()
  local deadline = start + w.timeout
  local interval = w.interval
  local last, failures = nil, 0
  while true do
    local msg, err = self:message(id, call)
    local pause
    if msg then
      failures = 0
      last = msg
      local st = msg.status
      if (w.done and w.done[st]) or (not w.done and st ~= nil and st ~= "pending") then
        return msg
      end
      pause = interval
      interval = math.min(interval * _M.GROWTH, w.max_interval)
    elseif err.kind == "rate_limited" then
      pause = err.retry_after or interval
    elseif err.retryable and failures < self.max_retries then
      failures = failures + 1
      pause = interval
    else
      return nil, err
    end
    local now = self.now()
    if now >= deadline then break end
    -- never sleep past the deadline, but always check once more at the deadline
    if now + pause > deadline then pause = deadline - now end
    sched.sleep(self, pause)
  end
  local status = last and last.status
  return nil, errors.new("timeout", "message " .. id .. " did not reach the awaited status within "
                         .. w.timeout .. " s (last status: " .. tostring(status) .. ")",
                         { method = "GET", path = path, last = last,
                           waited = self.now() - start, retryable = false })
end

return _M
