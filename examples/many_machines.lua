-- SPDX-License-Identifier: MIT
-- One worker of a campaign shared through Redis: start it on as many machines (or as many
-- times) as you like with the same arguments; together they send every line of the file
-- once, at the API key's rate shared by all of them, and a worker that dies is taken over.
--   CHATMAID_API_KEY=sk_... lua5.4 examples/many_machines.lua redis://10.0.0.5:6379/0 \
--     spring-2026 recipients.txt [per_minute]
-- recipients.txt: one "+15551234567 message text" per line. per_minute: the key's limit (100).
local chatmaid = require "chatmaid"
local redis = require "chatmaid.redis"

local url, id, file, per_minute = arg[1], arg[2], arg[3], tonumber(arg[4] or 100)
if not (url and id and file and per_minute) then
  io.stderr:write("usage: many_machines.lua REDIS_URL CAMPAIGN_ID RECIPIENTS_FILE [PER_MINUTE]\n")
  os.exit(2)
end

local items = {}
for line in io.lines(file) do
  local to, text = line:match("^%s*(%+%d+)%s+(.-)%s*$")
  if to then items[#items + 1] = { to = to, content = text } end
end

local client = assert(chatmaid.new{})   -- CHATMAID_API_KEY (and CHATMAID_BASE_URL)
-- one budget for the API key, whichever machine sends
local limiter = redis.rate_limiter{ url = url, key = redis.key_id(os.getenv("CHATMAID_API_KEY")),
                                    per_minute = per_minute }
local campaign = redis.campaign{ url = url, id = id, lease = 30 }

local results, summary = campaign:run(client, items, { rate_limiter = limiter, concurrency = 8 })
if not results and summary.kind == "state_lost" then
  -- Redis forgot the campaign (restart without persistence?): rebuild it from the list; what
  -- was sent already comes back as replays
  io.stderr:write(tostring(summary), "\nresuming from the item list\n")
  results, summary = campaign:run(client, items, { rate_limiter = limiter, concurrency = 8,
                                                   resume = true })
end
if not results then
  io.stderr:write(tostring(summary), "\n")   -- kind transport: Redis failed
  os.exit(1)
end
print(("this worker: sent %d, replayed %d, failed %d, taken over %d"):format(
  summary.sent, summary.replayed, summary.failed, summary.taken_over))
local st = assert(campaign:status())
print(("campaign %s: %d/%d done, %d sent, %d failed"):format(id, st.done, st.total, st.sent,
                                                            st.failed))
os.exit(st.failed == 0 and 0 or 1)
