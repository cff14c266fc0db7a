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

-- new{ total, tty, stream (io.stderr), now (seconds, monotonic), label } -> progress
function _M.new(o)
  return setmetatable({
    total = o.total, tty = o.tty, stream = o.stream or io.stderr, now = o.now,
    label = o.label or "batch", t0 = o.now(), last_draw = -1, last_step = 0,
    last_line = o.now(), done = 0,
  }, mt)
end

function _M:stats()
  local elapsed = self.now() - self.t0
  local rate = elapsed > 0 and self.done / elapsed or 0
  local eta = (rate > 0 and self.done < self.total) and (self.total - self.done) / rate or nil
  return rate, eta
end

function _M:line()
  local rate, eta = self:stats()
  local pct = self.total > 0 and math.floor(self.done * 100 / self.total) or 100
  local s = string.format("%d/%d (%d%%) %.1f/s", self.done, self.total, pct, rate)
  if eta then s = s .. " ETA " .. duration(eta) end
  return s, pct
end

function _M:update(done)
  self.done = done
  local t = self.now()
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
