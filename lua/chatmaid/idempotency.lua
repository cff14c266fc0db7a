-- SPDX-License-Identifier: MIT
-- Idempotency keys bound to what is sent: the derived keys of batch items, the check that a
-- message the API returned for a key is the one the request asked for, and the test for a
-- message that existed before this run. No I/O here: batch.lua, client.lua and the CLI use
-- these, and so can code that splits one campaign across processes.
local core = require "chatmaid.core"
local errors = require "chatmaid.errors"

local _M = {}

_M.MAX_KEY = 64
-- A batch id at most this long, of these characters, is kept readable at the front of the
-- derived keys ("spring-42:3f9a..."); longer ids only enter the hash ("bk:3f9a...").
_M.MAX_PREFIX = 24
local HMAC_KEY = "chatmaid.batch.key/1"

-- One length-prefixed field: the concatenation of fields can be split back in one way only,
-- so no two different items hash the same material. Lengths are byte counts formatted with
-- %d, which prints the same on every Lua (5.1 has no integer subtype).
local function field(parts, v)
  local s = type(v) == "string" and v or (v == nil and "" or tostring(v))
  parts[#parts + 1] = string.format("%d:", #s)
  parts[#parts + 1] = s
end

-- What makes two items "the same message": sender (as written: a phone id and its E.164
-- number are different senders here), recipient, content, media URLs in order.
local function material(item)
  local parts = {}
  field(parts, item.from)
  field(parts, item.to)
  field(parts, item.content)
  local media = item.media_urls
  if type(media) == "table" then
    parts[#parts + 1] = string.format("%d[", #media)
    for i = 1, #media do field(parts, media[i]) end
  else
    field(parts, media)
  end
  return table.concat(parts)
end

local function check_batch_id(batch_id, level)
  if type(batch_id) ~= "string" or batch_id == "" then
    error("chatmaid: batch keys need a batch id (a non-empty string)", level + 1)
  end
end

-- derive(batch_id, item, n) -> key: the key of the n-th occurrence (1, 2, ...) of an item
-- identical to `item` (from, to, content, media_urls) in batch `batch_id`. At most 64
-- printable characters, the same on every Lua runtime.
function _M.derive(batch_id, item, n)
  check_batch_id(batch_id, 2)
  local hex = core.webhook_sign(string.format("%d:", #batch_id) .. batch_id
                                .. material(item) .. string.format("#%d", n), HMAC_KEY, 0)
  local prefix = "bk"
  if #batch_id <= _M.MAX_PREFIX and not batch_id:find("[^%w%._%-]") then prefix = batch_id end
  return prefix .. ":" .. hex:sub(1, _M.MAX_KEY - 1 - #prefix)
end

-- keys(batch_id, items) -> array of keys, one per item: the item's own idempotency_key, else
-- the derived key of its occurrence among the items without one. Editing, reordering or
-- filtering the list never gives one message's key to another; two identical items get two
-- keys. Splitting a campaign? Compute the keys over the whole list, then split.
function _M.keys(batch_id, items)
  check_batch_id(batch_id, 2)
  if type(items) ~= "table" then
    error("chatmaid: batch keys expect an array of send parameter tables", 2)
  end
  local keys, seen = {}, {}
  for i = 1, #items do
    local it = items[i]
    if type(it) ~= "table" then
      error("chatmaid: batch keys: items[" .. i .. "] must be a table", 2)
    end
    if it.idempotency_key ~= nil then
      keys[i] = it.idempotency_key
    else
      local m = material(it)
      local n = (seen[m] or 0) + 1
      seen[m] = n
      keys[i] = _M.derive(batch_id, it, n)
    end
  end
  return keys
end

-- ---- the message the API returned for a key ----

local function text(s)
  if s == nil then return "" end
  -- the service may trim or convert line ends: neither makes it another message
  return (tostring(s):gsub("\r\n", "\n"):gsub("^%s+", ""):gsub("%s+$", ""))
end

local NONE = {}

local function same_media(want, got)
  if type(want) ~= "table" then want = NONE end
  if #want ~= #got then return false end
  local in_order = true
  for i = 1, #want do
    if want[i] ~= got[i] then in_order = false; break end
  end
  if in_order then return true end
  local a, b = {}, {}
  for i = 1, #want do a[i] = tostring(want[i]) end
  for i = 1, #got do b[i] = tostring(got[i]) end
  table.sort(a)
  table.sort(b)
  for i = 1, #a do if a[i] ~= b[i] then return false end end
  return true
end

-- mismatch(req, msg, from_id, from_number) -> nil | array of the fields that differ ("to",
-- "from", "content", "media_urls"). req: the send parameters (to, content, media_urls);
-- from_id: the phone id sent as fromPhoneId; from_number: its E.164 number, when known.
-- A field the message does not carry is not compared: the check only ever refuses a
-- message that is provably another one.
function _M.mismatch(req, msg, from_id, from_number)
  if type(msg) ~= "table" then return nil end
  -- the common case, every field equal, allocates nothing
  local to_bad = msg.to ~= nil and msg.to ~= req.to
  local from_bad
  if msg.phoneNumberId ~= nil and from_id ~= nil then
    from_bad = msg.phoneNumberId ~= from_id
  else
    from_bad = msg.from ~= nil and from_number ~= nil and msg.from ~= from_number
  end
  local content = msg.content
  local content_bad = content ~= req.content and (content ~= nil or msg.mediaUrls ~= nil)
                      and text(content) ~= text(req.content)
  local media = msg.mediaUrls
  local media_bad = type(media) == "table" and not same_media(req.media_urls, media)
  if not (to_bad or from_bad or content_bad or media_bad) then return nil end
  local bad = {}
  if to_bad then bad[#bad + 1] = "to" end
  if from_bad then bad[#bad + 1] = "from" end
  if content_bad then bad[#bad + 1] = "content" end
  if media_bad then bad[#bad + 1] = "media_urls" end
  return bad
end

-- conflict(req, msg, key, from_id, from_number, method, path, status) -> nil | err (kind
-- "idempotency_conflict"): the API answered `key` with a message that is not the one
-- requested. err.idempotency_key, err.message_returned (the message the API returned),
-- err.mismatch (field names).
function _M.conflict(req, msg, key, from_id, from_number, method, path, status)
  -- fast path (runs per message): everything equal as sent, no media
  if type(msg) == "table" and msg.content == req.content
     and (msg.to == nil or msg.to == req.to)
     and (msg.phoneNumberId == nil or msg.phoneNumberId == from_id or from_id == nil)
     and (msg.from == nil or from_number == nil or msg.from == from_number
          or (msg.phoneNumberId ~= nil and from_id ~= nil)) then
    local media, want = msg.mediaUrls, req.media_urls
    if media == nil or (#media == 0 and (want == nil or #want == 0)) then return nil end
  end
  local bad = _M.mismatch(req, msg, from_id, from_number)
  if not bad then return nil end
  return errors.new("idempotency_conflict", "idempotency key " .. tostring(key)
    .. " already belongs to another message (" .. tostring(msg.id) .. " to "
    .. tostring(msg.to) .. "): " .. table.concat(bad, ", ") .. " differ"
    .. (#bad == 1 and "s" or "") .. " from this request; nothing was sent",
    { idempotency_key = key, message_returned = msg, mismatch = bad, method = method,
      path = path, status = status })
end

-- ---- replays ----

-- iso(t) -> "YYYY-MM-DDTHH:MM:SS.mmmZ" for a Unix time, the API's createdAt format.
function _M.iso(t)
  local s = math.floor(t)
  local ms = math.floor((t - s) * 1000)
  return os.date("!%Y-%m-%dT%H:%M:%S", s) .. string.format(".%03dZ", ms)
end

-- created_before(msg, since_iso) -> true when the message's createdAt is earlier than
-- since_iso: it existed before this run asked for it, so the API replayed it. Relies on the
-- server's clock agreeing with ours (a server behind by more than the network latency
-- makes a new message look replayed). A createdAt in another format counts as new.
function _M.created_before(msg, since_iso)
  local c = type(msg) == "table" and msg.createdAt
  if type(c) ~= "string" then return false end
  if #c == 20 then c = c:sub(1, 19) .. ".000Z" end     -- no fraction: the whole second
  if c >= since_iso then return false end
  return c:byte(-1) == 90     -- ends in "Z": UTC, comparable as text (this runs per message)
end

return _M
