-- SPDX-License-Identifier: MIT
-- Batch progress on stderr: a redrawn bar with rate and ETA on a terminal; plain lines at
-- each 10% step (or every 5 s, whichever comes first) when stderr is a file or a pipe.
local _M = {}
local mt = { __index = _M }

local function duration(s)
  s = math.floor(s + 0.5)
  if s < 60 then return s .. "s" end
  if s < 3600 then return string.format("%dm%02ds", math.floor(s / 60), s % 60) end
  return string.format("%dh%02dm", math.floor(s / 3600), math.floor(s % 3600 / 60))
end
_M.duration = duration

-- new{ total, tty, stream (io.stderr), now (seconds, monotonic), label, rate_per_minute,
--      window (60), margin (1) } -> progress
-- rate_per_minute: the batch's rate limit (nil: none). With one, the ETA is the limiter's
-- schedule for the rows left, not just the pace so far: a batch under --rate 20 sends its
-- first 20 rows in a second, and the pace of that burst says nothing about the next minute.
function _M.new(o)
  return setmetatable({
    total = o.total, tty = o.tty, stream = o.stream or io.stderr, now = o.now,
    label = o.label or "batch", t0 = o.now(), last_draw = -1, last_step = 0,
    last_line = o.now(), done = 0,
    limit = o.rate_per_minute, window = (o.window or 60) + (o.margin or 1),
    starts = {}, head = 1,    -- ring of the times of the last `limit` rows that were sent
  }, mt)
end

-- sent(t): a row went through the limiter at about t (its completion time stands in for its
-- start: a request's latency is small next to a rate window).
function _M:sent(t)
  if not self.limit then return end
  local ring = self.starts
  if #ring < self.limit then
    ring[#ring + 1] = t
  else
    ring[self.head] = t
    self.head = self.head % self.limit + 1
  end
end

-- limited_eta(now, left) -> seconds until the last of `left` rows may start under the limit.
-- The limiter lets a row start `window` after the row `limit` places before it started:
-- row j of those left reuses the j-th oldest slot of the ring, round after round.
function _M:limited_eta(now, left)
  local ring, limit = self.starts, self.limit
  local slots = {}
  for i = 1, #ring do slots[i] = ring[i] end
  table.sort(slots)
  local j = left - 1
  local round, i = math.floor(j / limit), j % limit + 1
  local first = slots[i - (limit - #slots)]   -- free slots (never used) come first
  local start = first and math.max(now, first + self.window) or now
  return start + round * self.window - now
end

function _M:stats()
  local t = self.now()
  local elapsed = t - self.t0
  local rate = elapsed > 0 and self.done / elapsed or 0
  local left = self.total - self.done
  local eta = (rate > 0 and left > 0) and left / rate or nil
  if self.limit and left > 0 then
    local limited = self:limited_eta(t, left)
    if not eta or limited > eta then eta = limited end
  end
  return rate, eta
end

function _M:line()
  local rate, eta = self:stats()
  local pct = self.total > 0 and math.floor(self.done * 100 / self.total) or 100
  local s = string.format("%d/%d (%d%%) %.1f/s", self.done, self.total, pct, rate)
  if eta then s = s .. " ETA " .. duration(eta) end
  return s, pct
end

-- update(done, result): result as send_batch's on_progress gives it (a row skipped because
-- the journal had it, or refused before sending, spent nothing of the rate limit).
function _M:update(done, result)
  local t = self.now()
  for _ = self.done + 1, done do
    if not (result and (result.skipped or (result.err and result.err.kind == "validation")))
    then
      self:sent(t)
    end
  end
  self.done = done
  local text, pct = self:line()
  if self.tty then
    if t - self.last_draw < 0.1 and done < self.total then return end
    self.last_draw = t
    local width = 30
    local fill = self.total > 0 and math.floor(width * done / self.total) or width
    self.stream:write("\r[", string.rep("=", fill), string.rep(" ", width - fill), "] ",
                      text, "\027[K")
  else
    local step = math.floor(pct / 10)
    if step > self.last_step or t - self.last_line >= 5 then
      self.last_step, self.last_line = step, t
      self.stream:write(self.label, ": ", text, "\n")
    end
  end
  self.stream:flush()
end

-- finish(): ends the bar's line (the summary follows on its own line).
function _M:finish()
  if self.tty and self.last_draw >= 0 then self.stream:write("\n") end
  self.stream:flush()
end

return _M
