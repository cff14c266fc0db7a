-- SPDX-License-Identifier: MIT

--- The retry policy (pure functions; docs/sending.md, Reliability).
-- Retry policy: which failures are retried and how long to wait. Pure functions of their
-- inputs (random comes from the client) so specs are deterministic.
-- @module chatmaid.retry
local _M = {}

_M.BASE_DELAY = 0.5
_M.MAX_DELAY = 8
-- Bounds of every delay a server supplies (Retry-After, retryAfter, "try again in N
-- seconds"): a server that says 0 (or a negative number) is waited for 1 s, so a rate
-- limited client never turns into a busy loop; one that asks for more than a day is read as a
-- day (max_retry_wait decides whether the client waits that long by itself).
_M.MIN_SERVER_DELAY = 1
_M.MAX_SERVER_DELAY = 86400

--- A server-supplied delay, made safe to sleep on.
-- A delay a server asked for, made safe to sleep on: nil when it is not a number (NaN
-- included), else clamped to [MIN_SERVER_DELAY, MAX_SERVER_DELAY].
-- @param v the delay as read
-- @treturn ?number seconds clamped to 1 s .. 1 day, or nil when not a number
function _M.server_delay(v)
  if type(v) ~= "number" or v ~= v then return nil end
  if v < _M.MIN_SERVER_DELAY then return _M.MIN_SERVER_DELAY end
  if v > _M.MAX_SERVER_DELAY then return _M.MAX_SERVER_DELAY end
  return v
end

--- The backoff before a retry.
-- Exponential backoff with jitter and a cap: attempt 1 waits ~0.5 s, then 1, 2, 4, 8, 8...
-- The jitter keeps [50%, 100%] of the delay so clients that failed together spread out.
-- @tparam number attempt 1 for the first retry
-- @tparam function random returns [0, 1)
-- @treturn number seconds
function _M.backoff(attempt, random)
  local delay = math.min(_M.MAX_DELAY, _M.BASE_DELAY * 2 ^ (attempt - 1))
  return delay * (0.5 + 0.5 * random())
end

--- What to do after a failed attempt.
-- Decides what to do after a failed attempt.
-- Returns "retry", wait_seconds | "stop" | "give_up_wait" (the server asks for a longer wait
-- than max_retry_wait: return the error at once, with retry_after set).
-- @tparam table err the failure
-- @tparam number attempt attempts made
-- @tparam number max_retries
-- @tparam number max_retry_wait seconds
-- @tparam function random returns [0, 1)
-- @treturn string "retry", "stop" or "give_up_wait"
-- @treturn ?number the wait, with "retry"
function _M.decide(err, attempt, max_retries, max_retry_wait, random)
  if not err.retryable then return "stop" end
  if attempt > max_retries then return "stop" end
  local ra = _M.server_delay(err.retry_after)
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

--- Parse a Retry-After header.
-- Retry-After: delay-seconds or an HTTP-date. Returns seconds (>= 0) or nil.
-- @tparam ?string v delay-seconds or an HTTP-date
-- @tparam[opt] number now unix time
-- @treturn ?number seconds (>= 0), or nil
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
