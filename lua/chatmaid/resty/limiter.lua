-- SPDX-License-Identifier: MIT

--- A request-rate limiter shared by every nginx worker (a GCRA token bucket in a lua_shared_dict).
-- A request-rate limiter shared by every nginx worker: a token bucket kept in a
-- lua_shared_dict as one number, the "theoretical arrival time" of GCRA (the virtual
-- scheduling form of the token bucket). Requests reserve their slot: take() returns how long
-- the caller must wait, and the slot is theirs, so concurrent callers in any worker queue up
-- at one request per `per_minute` of the window instead of stampeding.
-- @module chatmaid.resty.limiter
local ngx = ngx   -- luacheck: ignore (nginx global)

local _M = { WINDOW = 60 }
local mt = { __index = _M }

local YIELDABLE = { rewrite = true, server_rewrite = true, access = true, content = true,
                    timer = true, ssl_cert = true, ssl_session_fetch = true,
                    ssl_client_hello = true, preread = true }

--- Make a limiter (chatmaid.resty.rate_limiter).
-- new{ shared_dict = "chatmaid_ratelimit", key = "default", per_minute = 100, burst = 1,
--      window = 60 } -> limiter
-- new{ redis = "redis://...", key, per_minute, burst, window, ... } -> chatmaid.redis's
-- limiter instead (one budget for every nginx on every machine; the other options are
-- chatmaid.redis.rate_limiter's).
-- One key is one bucket (use one per API key). burst: requests allowed back to back after
-- an idle period; then one every window/per_minute seconds. With burst = 1 no 60 s window
-- holds more than per_minute starts. Raises on bad options or an unknown dict.
-- @tparam table opts shared_dict, key ("default"), per_minute, burst (1), window (60); or redis =
--   URL and chatmaid.redis.rate_limiter's options
-- @treturn table the limiter
-- @raise on a bad option or an unknown lua_shared_dict
function _M.new(opts)
  if type(opts) ~= "table" then error("chatmaid.resty.rate_limiter: opts must be a table", 2) end
  if opts.redis ~= nil then
    local o = {}
    for k, v in pairs(opts) do o[k] = v end
    o.url, o.redis = opts.redis, nil
    if o.shared_dict ~= nil then
      error("chatmaid.resty.rate_limiter: give shared_dict or redis, not both", 2)
    end
    return require("chatmaid.options").require_rock("chatmaid.redis", "chatmaid-redis",
      "chatmaid.resty.rate_limiter's redis option", 2).rate_limiter(o)
  end
  local dict = type(opts.shared_dict) == "string" and ngx.shared[opts.shared_dict]
  if not dict then
    error("chatmaid.resty.rate_limiter: shared_dict must name a lua_shared_dict (got "
          .. tostring(opts.shared_dict) .. ")", 2)
  end
  local per_minute, burst = opts.per_minute, opts.burst or 1
  if type(per_minute) ~= "number" or per_minute <= 0 then
    error("chatmaid.resty.rate_limiter: per_minute must be a positive number", 2)
  end
  if type(burst) ~= "number" or burst < 1 or burst ~= math.floor(burst) then
    error("chatmaid.resty.rate_limiter: burst must be an integer >= 1", 2)
  end
  local window = opts.window or _M.WINDOW
  local interval = window / per_minute
  local key = "rl:" .. tostring(opts.key or "default")
  return setmetatable({ dict = dict, key = key, lock = key .. ":lock", interval = interval,
                        tau = (burst - 1) * interval, ttl = window * 2 + 1 }, mt)
end

-- The read-modify-write of the arrival time must not interleave with another worker's:
-- a tiny add()-based lock (held for a get and a set, never across a yield).
local function locked(self, fn)
  local yieldable = YIELDABLE[ngx.get_phase()]
  for _ = 1, 2000 do
    if self.dict:add(self.lock, true, 0.1) then
      local ok, a = pcall(fn)
      self.dict:delete(self.lock)
      if not ok then error(a, 0) end
      return a
    end
    if yieldable then ngx.sleep(0.001) end
  end
  -- a worker died holding it: the 0.1 s expiry frees it; proceed rather than stall
  return fn()
end

--- Reserve n starts; never blocks.
-- limiter:take(n) -> wait_seconds
-- Reserves n request starts (default 1); the caller waits wait_seconds (>= 0) and then
-- sends. Never blocks by itself.
-- @tparam[opt=1] number n starts
-- @treturn number seconds (>= 0) to wait before starting
function _M:take(n)
  n = n or 1
  return locked(self, function()
    local now = ngx.now()
    local tat = self.dict:get(self.key) or now
    if tat < now then tat = now end
    local wait = tat - self.tau - now
    self.dict:set(self.key, tat + n * self.interval, self.ttl)
    if wait < 0 then wait = 0 end
    return wait
  end)
end

--- take(n), then ngx.sleep for it.
-- limiter:wait(n) -> waited_seconds: take(n), then ngx.sleep for it.
-- @tparam[opt=1] number n starts
-- @treturn number the seconds waited
function _M:wait(n)
  local w = self:take(n)
  if w > 0 then ngx.sleep(w) end
  return w
end

--- No start before t in any worker (after a 429).
-- limiter:pause_until(t): the API answered 429 (Retry-After); no slot starts before t
-- (an ngx.now() time), in any worker.
-- @tparam number t an ngx.now() time
function _M:pause_until(t)
  locked(self, function()
    local tat = self.dict:get(self.key) or 0
    if tat < t + self.tau then self.dict:set(self.key, t + self.tau, self.ttl) end
  end)
end

return _M
