-- SPDX-License-Identifier: MIT
-- Client-side request pacing for batches: a bucket of `per_minute` tokens where each spent
-- token comes back `window` seconds after it was spent. That is exactly "at most per_minute
-- requests in any 60 s window", the way the API counts (a sliding window per key), so a
-- batch paced at the key's limit never sees a 429 from its own traffic. A bucket that
-- refills continuously would allow up to twice the limit in the first minute.
local _M = {}
local mt = { __index = _M }

_M.WINDOW = 60
-- Requests are counted when they reach the server, a little after we send them; the margin
-- absorbs that difference so that two requests a window apart on our clock stay apart there.
_M.MARGIN = 1

-- new(per_minute, opts) -> limiter. opts.window, opts.margin (seconds).
function _M.new(per_minute, opts)
  opts = opts or {}
  return setmetatable({
    size = per_minute, window = opts.window or _M.WINDOW,
    margin = opts.margin or _M.MARGIN,
    spent = {}, head = 1,      -- ring of the times of the last `size` requests
    count = 0, hold = -math.huge,
  }, mt)
end

-- ready_at(now) -> the earliest time a request may start (<= now: at once).
function _M:ready_at(now)
  local t = self.hold
  if self.count >= self.size then
    local back = self.spent[self.head] + self.window + self.margin
    if back > t then t = back end
  end
  if t < now then return now end
  return t
end

-- take(now): spend one token (call only when ready_at(now) <= now).
function _M:take(now)
  if self.count < self.size then
    self.count = self.count + 1
    self.spent[self.count] = now
    return
  end
  self.spent[self.head] = now
  self.head = self.head % self.size + 1
end

-- pause_until(t): the server said 429 with Retry-After; no request starts before t.
function _M:pause_until(t)
  if t > self.hold then self.hold = t end
end

-- shared(lim): the batch's limiter interface over a limiter shared with other processes,
-- such as chatmaid.resty's token bucket in a lua_shared_dict (every nginx worker draws from
-- it). lim:take(n) reserves n request starts and returns the seconds to wait for them;
-- lim:pause_until(t), when present, holds every sharer after a 429.
function _M.shared(lim)
  if type(lim.take) ~= "function" then
    error("chatmaid: send_batch: rate_limiter must have a take(n) method", 3)
  end
  local slot       -- the start time reserved for the next request, if any
  local stale      -- after this moment the slot may not be used (limiters with reserve)
  local retry_at   -- the limiter failed: ask again then (never a blocking retry here)
  return {
    -- ready_at(now) -> when the next request may start | nil, err (the limiter gave up)
    ready_at = function(_, now)
      if retry_at then
        if now < retry_at then return retry_at end
        retry_at = nil
      end
      if slot and stale and now > stale then slot = nil end   -- paused past it: book again
      if not slot then
        if type(lim.reserve) == "function" then
          local w, s, retry_in = lim:reserve(1)
          if not w then
            if not retry_in then return nil, s end
            retry_at = now + retry_in
            return retry_at
          end
          slot, stale = now + math.max(0, w), s and now + s
        else
          slot = now + math.max(0, lim:take(1) or 0)
        end
      end
      return slot > now and slot or now
    end,
    take = function(_, now)
      if not slot then lim:take(1) end
      slot, stale = nil, nil
      return now
    end,
    pause_until = function(_, t)
      if lim.pause_until then lim:pause_until(t) end
    end,
  }
end

return _M
