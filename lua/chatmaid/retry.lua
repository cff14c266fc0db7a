-- SPDX-License-Identifier: MIT
-- Retry policy: which failures are retried and how long to wait. Pure functions of their
-- inputs (random comes from the client) so specs are deterministic.
local _M = {}

_M.BASE_DELAY = 0.5
_M.MAX_DELAY = 8

-- Exponential backoff with jitter and a cap: attempt 1 waits ~0.5 s, then 1, 2, 4, 8, 8...
-- The jitter keeps [50%, 100%] of the delay so clients that failed together spread out.
function _M.backoff(attempt, random)
  local delay = math.min(_M.MAX_DELAY, _M.BASE_DELAY * 2 ^ (attempt - 1))
  return delay * (0.5 + 0.5 * random())
end

-- Decides what to do after a failed attempt.
-- Returns "retry", wait_seconds | "stop" | "give_up_wait" (the server asks for a longer wait
-- than max_retry_wait: return the error at once, with retry_after set).
function _M.decide(err, attempt, max_retries, max_retry_wait, random)
  if not err.retryable then return "stop" end
  if attempt > max_retries then return "stop" end
  local ra = err.retry_after
  if ra and (err.status == 429 or err.status == 503) then
    if ra > max_retry_wait then return "give_up_wait" end
    return "retry", ra
  end
  if err.status == 429 then
    -- A 429 without a hint: back off, but never faster than a second.
    return "retry", math.max(1, _M.backoff(attempt, random))
  end
  return "retry", _M.backoff(attempt, random)
end

-- Retry-After: delay-seconds or an HTTP-date. Returns seconds (>= 0) or nil.
function _M.parse_retry_after(v, now)
  if type(v) ~= "string" then return nil end
  local n = tonumber(v:match("^%s*(%d+)%s*$"))
  if n then return n end
  local months = { Jan = 1, Feb = 2, Mar = 3, Apr = 4, May = 5, Jun = 6, Jul = 7, Aug = 8,
                   Sep = 9, Oct = 10, Nov = 11, Dec = 12 }
  local d, mon, y, h, mi, s = v:match("^%a+, (%d+) (%a+) (%d+) (%d+):(%d+):(%d+) GMT$")
  if d and months[mon] then
    -- os.time reads local time; correct by the offset between local and UTC now.
    local t = os.time{ year = tonumber(y), month = months[mon], day = tonumber(d),
                       hour = tonumber(h), min = tonumber(mi), sec = tonumber(s) }
    local utc_now = os.time(os.date("!*t"))
    local local_now = os.time()
    local at = t + (local_now - utc_now)
    return math.max(0, at - (now or local_now))
  end
  return nil
end

return _M
