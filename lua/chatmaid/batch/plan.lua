-- SPDX-License-Identifier: MIT
-- send_batch, part 1: the plan. The arguments checked (programmer errors raise), the journal
-- taken (its lock, then what earlier runs confirmed), the batch id and every item's key, and
-- each item sorted into: a job to send, an item that fails alone (bad values, a journal
-- entry that is another message), or one the journal already confirmed (skipped).
-- Nothing here makes a request.
local core = require "chatmaid.core"
local base = require "chatmaid.base"
local validate = require "chatmaid.validate"
local idempotency = require "chatmaid.idempotency"
local journal_mod = require "chatmaid.journal"

local _M = {}

_M.PATH = "/v1/messages/send"
_M.MAX_CONCURRENCY = 64
local OPTS = { concurrency = "number", batch_id = "string", rate_per_minute = "number|boolean",
               rate_limiter = "table", journal = "string|table", should_stop = "function",
               on_progress = "function", timeout = "number", max_retries = "number",
               max_retry_wait = "number" }
_M.OPTS = OPTS   -- docs/reference/options.md lists exactly these (spec/docs/options_table_spec)
local ITEM = { from = "string", to = true, content = true, media_urls = true,
               idempotency_key = true }

-- options(o) -> o (a table). Raises on a wrong name, type or value.
function _M.options(o)
  if o == nil then return {} end
  base.check_table("send_batch", o, OPTS, nil, 4)
  local c = o.concurrency
  if c ~= nil and (c ~= math.floor(c) or c < 1 or c > _M.MAX_CONCURRENCY) then
    error("chatmaid: send_batch: concurrency must be an integer 1.." .. _M.MAX_CONCURRENCY, 3)
  end
  local r = o.rate_per_minute
  if r == true or (type(r) == "number" and (r ~= r or r < 1)) then
    error("chatmaid: send_batch: rate_per_minute must be a number >= 1, or false to "
          .. "disable the limiter", 3)
  end
  if o.batch_id == "" then error("chatmaid: send_batch: batch_id must not be empty", 3) end
  for _, k in ipairs{ "timeout", "max_retry_wait" } do
    if o[k] ~= nil and not (o[k] > 0 or (k == "max_retry_wait" and o[k] == 0)) then
      error("chatmaid: send_batch: " .. k .. " must be a positive number", 3)
    end
  end
  if type(o.journal) == "string" and (o.journal == "" or o.journal:find("\0", 1, true)) then
    error("chatmaid: send_batch: journal must be a file path: not empty, without NUL bytes", 3)
  end
  if type(o.journal) == "table" and getmetatable(o.journal) ~= journal_mod.mt then
    error("chatmaid: send_batch: journal must be a path or a journal from "
          .. "chatmaid.journal.acquire", 3)
  end
  return o
end

-- items(items) -> n. Raises on anything but an array of tables of send parameters.
function _M.items(items)
  if type(items) ~= "table" then
    error("chatmaid: send_batch expects an array of send parameter tables (got "
          .. type(items) .. ")", 3)
  end
  local n, not_seq = validate.sequence(items, "items")
  if not n then error("chatmaid: send_batch: " .. not_seq, 3) end
  for i = 1, n do
    local it = items[i]
    if type(it) ~= "table" then
      error("chatmaid: send_batch: items[" .. i .. "] must be a table of send parameters (got "
            .. type(it) .. ")", 3)
    end
    base.check_table("send_batch: items", it, ITEM, nil, 4, i)
  end
  return n
end

-- journal(o, dest) -> journal | false, batch_id | nil, err (kind "validation", err.reason =
-- the journal's problem kind: "busy", "symlink", "not_regular", "not_owner", "open", "io",
-- "not_journal", "destination").
-- A path is acquired here (and closed by send_batch); a journal object the caller acquired
-- is the caller's to close. Without batch_id: the journal's, else a new one it records.
-- dest: where this client sends (base.destination); a journal whose last run sent elsewhere
-- is refused, its confirmed rows were not sent here (chatmaid.journal.destination).
function _M.journal(o, dest)
  local j, problem, kind = o.journal, nil, nil
  if j == nil then return false, o.batch_id end
  if type(j) == "string" then j, problem, kind = journal_mod.acquire(j) end
  if j then
    local st = j.state
    local batch_id = o.batch_id or j.batch_id or st.batch_id or journal_mod.new_batch_id()
    if st.dest and st.dest ~= dest then
      if j ~= o.journal then j:close() end
      local _, err = base.validation("POST", _M.PATH, "journal: " .. j.path .. " records a run"
        .. " of batch " .. tostring(st.batch_id) .. " that sent with " .. st.dest .. "; this"
        .. " client sends with " .. dest .. ", where the rows it confirms were never sent."
        .. " Nothing was sent: give this batch a new journal file (keep that one for the"
        .. " other destination)")
      err.reason = "destination"
      return nil, err
    end
    if j.batch_id ~= batch_id then
      problem, kind = select(2, j:start(batch_id, dest)), "io"    -- its header
    end
    if not problem then return j, batch_id end
    if j ~= o.journal then j:close() end
  end
  local _, err = base.validation("POST", _M.PATH, "journal: " .. problem)
  err.reason = kind
  return nil, err
end

-- The item's sender check, as client:send makes it.
local function problems_of(p)
  local problems = validate.send(p)
  if p.from ~= nil then
    problems[#problems + 1] = p.from:sub(1, 1) == "+" and validate.e164(p.from, "from")
                              or validate.id(p.from, "from")
  end
  return problems
end

-- A message the journal holds for this key: the item's, or a conflict.
local function known_outcome(self, p, i, key, known)
  local from = p.from or self.default_from
  local plus = from and from:sub(1, 1) == "+"
  local err = idempotency.conflict(p, known, key, from and not plus and from or nil,
                                   plus and from or nil, "POST", _M.PATH)
  if err then
    err.index = i
    return { i, { err = err, idempotency_key = key } }
  end
  if known.idempotencyKey == nil then known.idempotencyKey = key end
  return { i, { message = known, idempotency_key = key, skipped = true } }
end

-- What a message is to a recipient: who, the text and the media; not the sender, which
-- enters the key as written (an id one run, the same phone's number the next).
-- (chatmaid batch's campaign check compares rows with a journal by it too.)
local function looks(to, content, media)
  return tostring(to) .. "\0" .. tostring(content or "") .. "\0"
         .. (type(media) == "table" and table.concat(media, "\0") or "")
end
_M.looks = looks

-- orphans(st, batch_id, keys, n) -> { [looks] = { key, ... } } | nil: the messages a journal
-- confirmed for this batch under keys this run derives for no item. An item without a
-- confirmed key whose message is one of them was sent already, under another key: its
-- sender written another way (or changed). Matched one message to one item, so a row
-- repeated on purpose is still sent; other batches sharing the journal are not looked at.
function _M.orphans(st, batch_id, keys, n)
  if not (st and st.batch_of and batch_id and keys) then return nil end
  local mine, list = {}, {}
  for i = 1, n do mine[keys[i]] = true end
  for k, b in pairs(st.batch_of) do
    if b == batch_id and not mine[k] and type(st.confirmed[k]) == "table" then
      list[#list + 1] = k
    end
  end
  if list[1] == nil then return nil end
  table.sort(list)      -- which orphan answers which item: the same on every run
  local by = {}
  for _, k in ipairs(list) do
    local m = st.confirmed[k]
    local l = looks(m.to, m.content, m.mediaUrls)
    by[l] = by[l] or {}
    table.insert(by[l], k)
  end
  return by
end

-- take_orphan(orphans, p) -> the key of an orphan with p's message (taken: it answers no
-- other item), or nil. An item with its own idempotency_key is the caller's: never matched.
local function take_orphan(orphans, p)
  if not orphans or p.idempotency_key ~= nil then return nil end
  local l = looks(p.to, p.content, p.media_urls)
  local keys = orphans[l]
  if not keys then return nil end
  local k = table.remove(keys, 1)
  if keys[1] == nil then orphans[l] = nil end
  return k
end

-- sort(self, items, n, keys, confirmed [, orphans]) -> jobs, early, senders
-- jobs: { i, p, key } to send, in order; early: { i, result } decided without a request;
-- senders: { [from or BY_DEFAULT] = false } to resolve. An item matching an orphan (above)
-- is answered from the journal: skipped, other_key = true, idempotency_key the key its
-- message exists under (a send with it is replayed, never a second message).
_M.BY_DEFAULT = {}
function _M.sort(self, items, n, keys, confirmed, orphans)
  local jobs, early, senders = {}, {}, {}
  for i = 1, n do
    local p = items[i]
    local problems = problems_of(p)
    local key = keys and keys[i] or p.idempotency_key
    local known = key and confirmed and confirmed[key]
    if #problems > 0 then
      local _, err = base.validation("POST", _M.PATH, problems)
      err.index = i
      early[#early + 1] = { i, { err = err } }
    elseif known then
      early[#early + 1] = known_outcome(self, p, i, key, known)
    else
      local other = take_orphan(orphans, p)
      if other then
        early[#early + 1] = { i, { message = confirmed[other], idempotency_key = other,
                                   skipped = true, other_key = true } }
      else
        jobs[#jobs + 1] = { i = i, p = p, key = key or core.uuid4() }
        local f = p.from or _M.BY_DEFAULT
        if senders[f] == nil then senders[f] = false end
      end
    end
  end
  return jobs, early, senders
end

return _M
