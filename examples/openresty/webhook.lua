-- SPDX-License-Identifier: MIT
-- Chatmaid webhooks: verified, deduplicated across workers, answered 200 at once; the slow
-- work runs afterwards (or hand it to ngx.timer.at to free the request at once).
local resty = require "chatmaid.resty"

local event, err = resty.receive_webhook{
  secret = os.getenv("CHATMAID_WEBHOOK_SECRET"),
  shared_dict = "chatmaid_webhooks",
}
if not event then
  -- err == "duplicate": already handled (answered 200). Otherwise an error object, already
  -- answered 4xx: log it.
  if err ~= "duplicate" then ngx.log(ngx.WARN, "chatmaid webhook: ", tostring(err)) end
  return
end

-- The sender already has its 200: slow work here does not delay it.
ngx.log(ngx.INFO, "chatmaid webhook ", event.event, " ", tostring(event.data.messageId))
