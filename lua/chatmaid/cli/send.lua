-- SPDX-License-Identifier: MIT
-- chatmaid send | message ID | wait ID

local _M = { commands = {} }

local ORDER = { "pending", "sent", "delivered", "read", "failed" }
local STATUSES = {}
for _, s in ipairs(ORDER) do STATUSES[s] = true end

function _M.register(p)
  local s = p:command("send", "Send a WhatsApp message.")
    :epilog([[
Sends exactly once: every send carries an idempotency key (yours, or a new UUID reused on
each retry). Pass the same --idempotency-key again to make a repeated command safe.

Examples:
  chatmaid send --from ph_primary --to +15557654321 --content "Your code is 123456"
  chatmaid send --from +15551230001 --to +15557654321 --media https://example.com/a.png
  chatmaid send --to +15557654321 --content "Hi" --idempotency-key order-42 --json]])
  s:option("--from", "Sender: phone id or E.164 number (default: the one connected phone).")
  s:option("--to", "Recipient, E.164 (+15557654321)."):count(1)
  s:option("--content", "Message text (up to 4096 characters).")
  s:option("--media", "Media URL (https); repeat for several."):count("*")
    :target("media_urls")
  s:option("--idempotency-key", "Your idempotency key (up to 64 characters).")

  local m = p:command("message", "Show one message.")
    :epilog("Examples:\n  chatmaid message msg_123\n  chatmaid message msg_123 --json")
  m:argument("id", "Message id.")

  local w = p:command("wait", "Wait until a message leaves pending (or a given status).")
    :epilog([[
Exits 0 with the message once its status is final, 1 with a timeout error otherwise.

Examples:
  chatmaid wait msg_123
  chatmaid wait msg_123 --timeout 120 --until delivered,read,failed --json]])
  w:argument("id", "Message id.")
  w:option("--timeout", "Seconds to wait in total (default 60).")
    :target("wait_timeout"):convert(function(v) return require("chatmaid.cli").positive(v) end)
  w:option("--interval", "Seconds between the first polls (grows x1.5, up to 10).")
    :convert(function(v) return require("chatmaid.cli").positive(v) end)
  w:option("--until", "Comma-separated statuses to wait for (default: any but pending).")
    :target("until_statuses")
end

function _M.commands.send(a, ctx)
  if a.content == nil and #a.media_urls == 0 then
    return ctx.usage("send needs --content or --media")
  end
  local c, code = ctx.client()
  if not c then return code end
  local msg, err = c:send{
    from = a.from, to = a.to, content = a.content,
    media_urls = #a.media_urls > 0 and a.media_urls or nil,
    idempotency_key = a.idempotency_key,
  }
  if not msg then return ctx.fail(err) end
  return ctx.print(msg)
end

function _M.commands.message(a, ctx)
  local c, code = ctx.client()
  if not c then return code end
  local msg, err = c:message(a.id)
  if not msg then return ctx.fail(err) end
  return ctx.print(msg)
end

function _M.commands.wait(a, ctx)
  local c, code = ctx.client()
  if not c then return code end
  if type(c.wait) ~= "function" then
    return ctx.fail("chatmaid: this version of the library has no client:wait")
  end
  local o = { timeout = a.wait_timeout or 60, interval = a.interval }
  if a.until_statuses then
    local list = {}
    for s in a.until_statuses:gmatch("[^,%s]+") do
      if not STATUSES[s] then
        return ctx.usage("--until: unknown status " .. s .. " (" .. table.concat(ORDER, ", ")
                         .. ")")
      end
      list[#list + 1] = s
    end
    if #list == 0 then return ctx.usage("--until needs at least one status") end
    o["until"] = list
  end
  local msg, err = c:wait(a.id, o)
  if not msg then return ctx.fail(err) end
  return ctx.print(msg)
end

return _M
