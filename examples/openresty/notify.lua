-- SPDX-License-Identifier: MIT
-- The send handler of nginx.conf's /notify, as a module: a module's top level runs once per
-- worker, so the client below is made once and reused by every request (its keep-alive
-- pool, parsed options and scheduler come with it), while a content_by_lua_file chunk runs
-- again for each request. Inside nginx the client picks the cosocket transport, ngx.sleep
-- and ngx.now by itself: a send waits without blocking the worker, and thousands can be in
-- flight in one worker at once.
local chatmaid = require "chatmaid"
local resty = require "chatmaid.resty"

local ngx = ngx   -- luacheck: ignore (nginx global)

local _M = {}

local client, limiter   -- one of each per worker, made by the first request

local function setup()
  client = assert(chatmaid.new{ api_key = os.getenv("CHATMAID_API_KEY"),
                                base_url = os.getenv("CHATMAID_BASE_URL") })
  -- At most 100 sends a minute across all workers (the API's default per-key limit).
  limiter = resty.rate_limiter{ shared_dict = "chatmaid_ratelimit", per_minute = 100 }
end

-- POST /notify?to=+15557654321
function _M.handle()
  if not client then setup() end
  limiter:wait(1)
  local msg, err = client:send{ from = "ph_primary", to = ngx.req.get_uri_args().to,
                                content = "Your order has shipped" }
  if not msg then
    if err.kind == "rate_limited" and err.retry_after then
      limiter:pause_until(ngx.now() + err.retry_after)
    end
    ngx.log(ngx.ERR, tostring(err))
    ngx.status = err.kind == "validation" and 400 or 502
    ngx.say(err.kind)
    return
  end
  ngx.say("sent ", tostring(msg.id or msg.messageId))
end

return _M
