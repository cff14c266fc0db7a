-- SPDX-License-Identifier: MIT
-- POST /notify?to=+15557654321: send a message. Inside nginx the client picks the
-- thread-pool transport, ngx.sleep and ngx.now by itself; this worker keeps serving others.
local chatmaid = require "chatmaid"
local resty = require "chatmaid.resty"

local client = assert(chatmaid.new{ api_key = os.getenv("CHATMAID_API_KEY"),
                                    base_url = os.getenv("CHATMAID_BASE_URL") })
-- At most 100 sends a minute across all workers (the API's default per-key limit).
local limiter = resty.rate_limiter{ shared_dict = "chatmaid_ratelimit", per_minute = 100 }

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
