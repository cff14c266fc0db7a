-- SPDX-License-Identifier: MIT
-- The quickstart: list phones, send from a connected one, wait until it is no longer
-- pending, walk recent messages, print usage, and verify one signed webhook.
-- Runs against the local sandbox with `make demo`, or against the real API with
-- CHATMAID_API_KEY (and optionally CHATMAID_BASE_URL) set:  lua5.4 examples/quickstart.lua
local chatmaid = require "chatmaid"

local function say(fmt, ...) io.write(string.format(fmt, ...), "\n") end
local function check(v, err)
  if v == nil then
    io.stderr:write(tostring(err), "\n")
    os.exit(1)
  end
  return v
end

local client = check(chatmaid.new{ timeout = 15 })   -- key and URL from the environment
say("client: %s", tostring(client))

-- 1. Phones: pick a connected sender.
local phones = check(client:phone_numbers())
local sender
for _, p in ipairs(phones) do
  say("  phone %-12s %-14s %-13s %s", p.id, p.phoneNumber, p.connectionStatus,
      p.displayName or "")
  if not sender and p.connectionStatus == "connected" then sender = p end
end
if not sender then
  io.stderr:write("no connected phone: connect one in the dashboard first\n")
  os.exit(1)
end

-- 2. Send. The client adds an idempotency key, so its retries never send twice.
local msg = check(client:send{ from = sender.id, to = os.getenv("DEMO_TO") or "+15557654321",
                               content = "Hello from lua-chatmaid" })
say("sent %s: status %s (idempotency key %s)", msg.id, msg.status, msg.idempotencyKey)

-- 3. Wait until it is no longer pending (live keys start pending).
local final
if client.wait then
  final = check(client:wait(msg.id, { timeout = 30, interval = 0.5 }))
else
  repeat
    final = check(client:message(msg.id))
    if final.status == "pending" then require("chatmaid.core").sleep(0.5) end
  until final.status ~= "pending"
end
say("message %s is now %s%s", final.id, final.status,
    final.sentAt and (" (sent at " .. final.sentAt .. ")") or "")

-- 4. Recent messages, newest first.
local page = check(client:list_messages{ limit = 5 })
say("recent messages (%d in all):", page.pagination.total)
for _, m in ipairs(page.data) do
  say("  %s  %-8s %s -> %s  %s", m.createdAt, m.status, m.from, m.to, m.content or "")
end

-- 5. Usage this month.
local usage = check(client:usage("month"))
say("usage this month: %d messages (%d sent, %d failed), %d API requests",
    usage.messages.total, usage.messages.sent, usage.messages.failed, usage.apiRequests.total)

client:close()
