-- SPDX-License-Identifier: MIT
-- Writes the static JSON that the bench's nginx serves (bench/data/*.json). Run it again only
-- to change the fixtures: `lua5.4 bench/gen_data.lua bench/data`. Output is deterministic.
local cjson = require "cjson"

local dir = arg[1] or "bench/data"

-- cjson writes keys in hash order; a fixed order keeps the files diffable and reads like the
-- provider's examples.
local FIELDS = { "id", "from", "to", "content", "mediaUrls", "environment", "status",
  "createdAt", "sentAt", "failedAt", "errorCode", "errorMessage" }

local function encode_message(m)
  local parts = {}
  for i, k in ipairs(FIELDS) do
    local v = m[k]
    local js
    if v == nil then js = "null"
    elseif type(v) == "table" and v[1] == nil then js = "[]"   -- cjson would write {}
    else js = cjson.encode(v) end
    parts[i] = cjson.encode(k) .. ":" .. js
  end
  -- cjson escapes "/" as "\/"; the API writes URLs plainly.
  return (("{" .. table.concat(parts, ",") .. "}"):gsub("\\/", "/"))
end

local function stamp(sec, ms)
  return string.format("2026-02-06T%02d:%02d:%02d.%03dZ", sec // 3600 % 24, sec // 60 % 60,
    sec % 60, ms)
end

local TEXTS = {
  "Hello",
  "Order 7784 confirmed.",
  "Your code is 493021.",
  "See you tomorrow at 10:30?",
  "Invoice INV-0113 ($148.20) is due Friday.",
  "Thanks! An agent will reply shortly.",
}

local function message(i)
  local created = 52713 - i * 37
  local m = {
    id = string.format("msg_%012x", 0x5f0c2a9b1e00 + i * 7919),
    from = "+15551234567",
    to = string.format("+1555%07d", 7654321 - i * 13),
    content = TEXTS[i % #TEXTS + 1],
    mediaUrls = {},
    environment = "test",
    status = "sent",
    createdAt = stamp(created, i * 7 % 1000),
    sentAt = stamp(created, (i * 7 + 120) % 1000),
  }
  if i % 9 == 0 then
    m.mediaUrls = { string.format("https://cdn.example.com/media/%06d.jpg", i) }
  end
  if i % 17 == 0 then
    m.status, m.sentAt = "failed", nil
    m.failedAt = stamp(created + 1, 0)
    m.errorCode = "RECIPIENT_UNREACHABLE"
    m.errorMessage = "The recipient is not on WhatsApp"
  elseif i % 23 == 0 then
    m.status, m.sentAt = "pending", nil
  end
  return m
end

local function write(name, text)
  local f = assert(io.open(dir .. "/" .. name, "w"))
  f:write(text, "\n")
  f:close()
end

local sent = message(0)
sent.id, sent.to, sent.content = "msg_abc123def456", "+15557654321", "Hello from the bench"
sent.mediaUrls, sent.status, sent.sentAt = {}, "sent", stamp(52713, 120)
sent.failedAt, sent.errorCode, sent.errorMessage = nil, nil, nil
write("send.json", '{"success":true,"data":' .. encode_message(sent) .. "}")

local one = message(1)
one.id = "msg_x"
write("msg.json", '{"success":true,"data":' .. encode_message(one) .. "}")

local items = {}
for i = 1, 100 do items[i] = encode_message(message(i)) end
write("list.json", '{"success":true,"data":{"data":[' .. table.concat(items, ",")
  .. '],"pagination":{"page":1,"limit":100,"total":1843,"totalPages":19}}}')

-- A webhook delivery of exactly 1 KiB (no newline: the signature covers the raw bytes).
local head = '{"event":"message.sent","timestamp":"2026-02-06T14:20:00.000Z","data":{'
  .. '"messageId":"msg_abc123def456","from":"+15551234567","to":"+15557654321",'
  .. '"status":"sent","environment":"live","sentAt":"2026-02-06T14:19:12.000Z","content":"'
local tail = '"}}'
local filler = {}
local words = { "Order", "7784", "confirmed;", "tracking", "follows", "shortly." }
local len, i = #head + #tail, 0
while true do
  local w = words[i % #words + 1] .. " "
  if len + #w > 1024 then break end
  filler[#filler + 1], len, i = w, len + #w, i + 1
end
local hook = head .. table.concat(filler) .. string.rep(".", 1024 - len) .. tail
assert(#hook == 1024 and cjson.decode(hook).event == "message.sent")
local f = assert(io.open(dir .. "/webhook.json", "wb"))
f:write(hook)
f:close()
