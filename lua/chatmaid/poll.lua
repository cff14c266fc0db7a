-- SPDX-License-Identifier: MIT

--- Waiting for a message status, installed as client:wait.
-- client:wait(id, opts): poll GET /v1/messages/{id} until the message reaches a status,
-- with a growing interval, on the client's clock (self.now, self.sleep).
-- @module chatmaid.poll
local base = require "chatmaid.base"
local errors = require "chatmaid.errors"
local validate = require "chatmaid.validate"
local url = require "chatmaid.url"
local sched = require "chatmaid.sched"
local retry = require "chatmaid.retry"
-- chatmaid.client is required where it is used: it installs these functions when it loads,
-- so requiring it at the top would be a cycle.

local _M = {}

_M.DEFAULT_TIMEOUT = 60
_M.DEFAULT_INTERVAL = 1
_M.MAX_INTERVAL = 10
_M.GROWTH = 1.5

local OPTS = { timeout = "number", interval = "number", max_interval = "number",
               ["until"] = "string|table", until_status = "string|table",
               request_timeout = "number", max_requests = "number" }
_M.OPTS = OPTS   -- docs/reference/options.md lists exactly these (spec/docs/options_table_spec)

-- Turns `until` (a status or an array of statuses) into a set; raises on unknown statuses.
local function status_set(v)
  local list = type(v) == "string" and { v } or v
  local _, why = validate.sequence(list, "until")
  if why then error("chatmaid: wait: " .. why, 4) end
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
  if o.max_requests ~= nil and (o.max_requests < 1 or o.max_requests ~= math.floor(o.max_requests)
                                or o.max_requests == math.huge) then
    error("chatmaid: wait: max_requests must be a positive integer", 3)
  end
  if o["until"] ~= nil and o.until_status ~= nil then
    error("chatmaid: wait: pass either until or until_status, not both", 3)
  end
  local u = o["until"] or o.until_status
  local timeout = o.timeout or _M.DEFAULT_TIMEOUT
  local interval = o.interval or _M.DEFAULT_INTERVAL
  return {
    timeout = timeout,
    interval = interval,
    max_requests = o.max_requests or _M.request_budget(timeout, interval),
    max_interval = o.max_interval or _M.MAX_INTERVAL,
    done = u and status_set(u) or nil,
    request_timeout = o.request_timeout,
  }
end

--- The default request budget of a wait.
-- The default request budget of a wait: one request per interval until the deadline, the
-- one at the deadline, and one spare. Polls are never closer than the interval, so a wait
-- that runs out of budget has a clock or a sleep that does not work (sleep = function() end,
-- a clock that stands still): it ends instead of hammering the server.
-- @tparam number timeout seconds
-- @tparam number interval seconds
-- @treturn number requests
function _M.request_budget(timeout, interval)
  return math.ceil(timeout / interval) + 2
end

--- The pause before the next poll.
-- The pause before the next poll: never shorter than the current interval; on a 429 the
-- server's delay (clamped by retry.server_delay) when it is longer. Pure, for the specs and
-- for any scheduler that drives waits.
-- @tparam number interval seconds
-- @tparam ?table err the last failure
-- @treturn number seconds
function _M.pause(interval, err)
  local ra = err and err.kind == "rate_limited" and retry.server_delay(err.retry_after)
  if ra and ra > interval then return ra end
  return interval
end

--- What a wait last saw, for its error message.
-- What a wait last saw, for its final error: "last status: pending", or with a failure
-- "last status: nil; last response: rate limited, retry_after 2 s, HTTP 429".
-- @tparam ?table last the last message
-- @tparam ?table last_err the last failure
-- @treturn string
function _M.last_seen(last, last_err)
  local s = "last status: " .. tostring(last and last.status)
  if last_err then
    local parts = { last_err.kind == "rate_limited" and "rate limited" or last_err.kind }
    if last_err.retry_after then
      parts[#parts + 1] = "retry_after " .. last_err.retry_after .. " s"
    end
    if last_err.status then parts[#parts + 1] = "HTTP " .. last_err.status end
    s = s .. "; last response: " .. table.concat(parts, ", ")
  end
  return s
end

--- Poll a message until it reaches a status (client:wait).
-- client:wait(id, { timeout = 60, interval = 1, ["until"] = { "sent", "failed" },
--                   until_status = ..., max_interval = 10, request_timeout = s,
--                   max_requests = n })
--   -> message | nil, err
-- `until` is a Lua keyword: write opts["until"], or use the alias until_status. Without it,
-- any status other than "pending" ends the wait. The interval grows x1.5 up to max_interval.
-- Requests are never closer than `interval`. A 429 waits err.retry_after (at least the
-- interval, at least 1 s); a retryable failure (5xx, timeout, transport) is tried again
-- at the next interval, at most client.max_retries times in a row; any other error is
-- returned at once. err.kind: validation, not_found, auth, permission, rate_limited, server,
-- transport, decode, and "timeout" when the deadline passes (err.last: the last message seen,
-- err.waited: seconds, err.requests, err.last_error: the last failure when the last
-- request failed, err.retry_after: its delay when it was rate limited). At most
-- max_requests requests are made (default: request_budget(timeout, interval)).
-- @tparam table self the client
-- @tparam string id the message id
-- @tparam[opt] table o timeout (60), interval (1), max_interval (10), until / until_status,
--   request_timeout, max_requests
-- @treturn ?table the message, or nil
-- @treturn ?table err (docs/reference/errors.md) when the first value is nil (kind "timeout"
--   without a reason when the deadline passed)
-- @raise on an unknown option or status, and as every method
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
  local last, last_err
  local failures, requests = 0, 0
  local why = " did not reach the awaited status within " .. w.timeout .. " s"
  while true do
    requests = requests + 1
    local msg, err = self:message(id, call)
    last_err = err
    local pause
    if msg then
      failures = 0
      last = msg
      local st = msg.status
      if (w.done and w.done[st]) or (not w.done and st ~= nil and st ~= "pending") then
        return msg
      end
      pause = _M.pause(interval)
      interval = math.min(interval * _M.GROWTH, w.max_interval)
    elseif err.kind == "rate_limited" then
      pause = _M.pause(interval, err)
    elseif err.retryable and failures < self.max_retries then
      failures = failures + 1
      pause = _M.pause(interval)
    else
      return nil, err
    end
    local now = self.now()
    if now >= deadline then break end
    if requests >= w.max_requests then
      why = " did not reach the awaited status after " .. requests .. " requests (max_requests)"
      break
    end
    -- never sleep past the deadline; check once more at the deadline, unless that would be
    -- sooner than the interval (after a 429: its delay) since this request
    if now + pause > deadline then
      local gap = last_err and last_err.kind == "rate_limited" and pause or w.interval
      if deadline - now < gap then break end
      pause = deadline - now
    end
    sched.sleep(self, pause)
  end
  return nil, errors.new("timeout", "message " .. id .. why .. " (" .. _M.last_seen(last, last_err)
                         .. ")",
                         { method = "GET", path = path, last = last, last_error = last_err,
                           retry_after = last_err and last_err.retry_after,
                           requests = requests, waited = self.now() - start,
                           retryable = false })
end

return _M
