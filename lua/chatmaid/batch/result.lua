-- SPDX-License-Identifier: MIT
-- send_batch, part 3: the results. Each item's outcome is reported once (results[i] in
-- input order, the summary's counts, on_progress); at the end the unsent items of a stopped
-- batch become "interrupted" and the stop becomes one error (nil, err: err.results,
-- err.summary), not a raise.
local core = require "chatmaid.core"
local errors = require "chatmaid.errors"

local _M = {}
local Acc = {}
Acc.__index = Acc

-- new(n, on_progress, stop) -> the accumulator; stop: the batch's stop state (run.stopper),
-- whose callback() runs on_progress protected.
function _M.new(n, on_progress, stop)
  return setmetatable({
    n = n, done = 0, on_progress = on_progress, stop = stop,
    results = setmetatable({}, core.array_mt),
    summary = { sent = 0, replayed = 0, skipped = 0, failed = 0, interrupted = 0,
                requests = 0, rate_limited = 0, retries = 0 },
  }, Acc)
end

-- report(i, result): result = { message, idempotency_key, replayed?, skipped? } | { err, ... }
function Acc:report(i, result)
  self.results[i] = result
  self.done = self.done + 1
  local s = self.summary
  if result.skipped then s.skipped = s.skipped + 1
  elseif result.replayed then s.replayed = s.replayed + 1
  elseif result.message then s.sent = s.sent + 1
  else s.failed = s.failed + 1 end
  if self.on_progress then self.stop.callback(self.on_progress, self.done, self.n, result) end
end

-- early(list): the outcomes decided without a request, in input order.
function Acc:early(list)
  table.sort(list, function(a, b) return a[1] < b[1] end)
  for _, e in ipairs(list) do self:report(e[1], e[2]) end
end

local function interrupted(i, job)
  local key = job and job.key
  return { idempotency_key = key, err = errors.new("interrupted",
    "not sent: the batch was interrupted", { index = i, method = "POST",
      path = "/v1/messages/send", idempotency_key = key, last = job and job.last_err,
      maybe_sent = job and job.maybe_sent or false }) }
end

local function why(reason, cause)
  if reason == "stop" then return "stop requested (" .. tostring(cause) .. ")" end
  if reason == "journal" then return tostring(cause) end
  if reason == "closed" then return "the client was closed" end
  if reason == "limiter" then return "the rate limiter failed: " .. tostring(cause) end
  return "a callback raised: " .. tostring(cause)
end

-- finish(jobs, elapsed) -> results, summary | nil, err (kind "interrupted": .reason "stop" |
-- "callback" | "journal" | "closed" | "limiter", .cause, .results, .summary)
function Acc:finish(jobs, elapsed)
  local s, results, stop = self.summary, self.results, self.stop
  s.elapsed = elapsed
  s.already_sent = s.skipped + s.replayed
  if not stop.reason then return results, s end
  local job_of = {}
  for _, job in ipairs(jobs) do job_of[job.i] = job end
  for i = 1, self.n do
    if results[i] == nil then
      results[i] = interrupted(i, job_of[i])
      s.interrupted = s.interrupted + 1
    end
  end
  return nil, errors.new("interrupted", why(stop.reason, stop.cause) .. "; " .. s.interrupted
                         .. " of " .. self.n .. " items not sent (err.results, err.summary)",
                         { reason = stop.reason, cause = stop.cause, results = results,
                           summary = s })
end

return _M
