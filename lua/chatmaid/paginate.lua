-- SPDX-License-Identifier: MIT

--- Iterators over every message, installed as client methods.
-- Lazy walks over GET /v1/messages: client:messages{}, client:message_pages{},
-- client:collect_messages{}. Pages are fetched one at a time, only when the previous one is
-- used up; ids already yielded are never yielded again (offset pagination shifts when new
-- messages arrive, newest first); a failure yields `false, err` once and ends the walk.
-- Also the cursor walk of the conversations API (`before` = a message id) as a pure step
-- function, cursor_state()/cursor_step(), which does no I/O so any fetch loop can drive it.
-- @module chatmaid.paginate
local core = require "chatmaid.core"
local base = require "chatmaid.base"
local errors = require "chatmaid.errors"
local validate = require "chatmaid.validate"
-- chatmaid.client is required where it is used: it installs these functions when it loads,
-- so requiring it at the top would be a cycle.

local _M = {}

_M.DEFAULT_PAGE_SIZE = 100
-- Pages allowed beyond ceil(total / page_size) before the walk is declared stuck.
_M.EXTRA_PAGES = 3

local PARAMS = { status = true, phone_number_id = true, environment = true,
                 page_size = true, max_items = true }

-- Checks the parameter table (raises on unknown keys, like list_messages) and returns the
-- walk settings, or nil, validation err.
local function settings(where, p, need_max)
  if p == nil then p = {} end
  base.check_table(where, p, PARAMS, base.CALL_OPTIONS, 4)
  if need_max and p.max_items == nil then
    error("chatmaid: " .. where .. " requires max_items (a positive integer): collecting "
          .. "without a bound could hold every message of the account in memory", 3)
  end
  local problems = {}
  local function add(m) if m then problems[#problems + 1] = m end end
  if p.page_size ~= nil then add(validate.integer_range(p.page_size, "page_size", 1, 100)) end
  if p.max_items ~= nil then add(validate.integer_range(p.max_items, "max_items", 1)) end
  if p.status ~= nil then add(validate.one_of(p.status, validate.statuses, "status")) end
  if p.environment ~= nil then
    add(validate.one_of(p.environment, validate.environments, "environment"))
  end
  if p.phone_number_id ~= nil then add(validate.id(p.phone_number_id, "phone_number_id")) end
  if #problems > 0 then return base.validation("GET", "/v1/messages", problems) end
  return {
    size = p.page_size or _M.DEFAULT_PAGE_SIZE, max_items = p.max_items,
    list = { status = p.status, phone_number_id = p.phone_number_id,
             environment = p.environment, timeout = p.timeout, max_retries = p.max_retries,
             max_retry_wait = p.max_retry_wait },
  }
end

local function stuck(page, why)
  return errors.new("server", "pagination stopped at page " .. page .. ": " .. why
                    .. "; the listing may be incomplete (restart the walk)",
                    { method = "GET", path = "/v1/messages", retryable = false })
end

-- A page source: next() -> page (data holds only ids not seen before; may be empty when
-- the page was all duplicates) | nil (the walk is complete) | false, err (then nil forever).
local function source(self, s)
  local seen, yielded = {}, 0
  local page, max_total, last_total = 0, 0, nil
  local done, queued = false, nil
  return function()
    if queued then
      local e = queued
      queued = nil
      return false, e
    end
    if done then return nil end
    if s.max_items and yielded >= s.max_items then done = true; return nil end
    page = page + 1
    local q = {}
    for k, v in pairs(s.list) do q[k] = v end
    q.page, q.limit = page, s.size
    local res, err = self:list_messages(q)
    if not res then
      done = true
      err.page = page
      return false, err
    end
    local data = type(res.data) == "table" and res.data or {}
    local pg = type(res.pagination) == "table" and res.pagination or {}
    local total = tonumber(pg.total)
    if #data == 0 then done = true; return nil end
    local fresh = setmetatable({}, core.array_mt)
    for _, m in ipairs(data) do
      local id = type(m) == "table" and m.id
      if id ~= nil and not seen[id] then
        if s.max_items and yielded >= s.max_items then break end
        seen[id] = true
        fresh[#fresh + 1] = m
        yielded = yielded + 1
      end
    end
    -- A server that repeats a page without growing (a bug, or a broken proxy cache) would
    -- make an offset walk endless. A page of nothing new is fine only if the total grew:
    -- new messages pushed old ones back onto this page.
    if #fresh == 0 and total and last_total and total <= last_total then
      done = true
      return false, stuck(page, "the page brought no new message and the total did not grow")
    end
    if total then
      if total > max_total then max_total = total end
      last_total = total
    end
    local tp = tonumber(pg.totalPages) or (total and math.ceil(total / s.size))
    if tp == nil or page >= tp or #data < (tonumber(pg.limit) or s.size) then
      done = true
    elseif page >= math.ceil(max_total / s.size) + _M.EXTRA_PAGES then
      -- this page is still delivered; the walk then fails instead of looking complete
      done, queued = true, stuck(page, "more pages than the announced total allows")
    end
    return { data = fresh, pagination = pg, page = page }
  end
end

local function page_iter(self, s)
  local nxt = source(self, s)
  local finished = false
  return function()
    if finished then return nil end
    while true do
      local pg, err = nxt()
      if pg == nil then finished = true; return nil end
      if pg == false then finished = true; return false, err end
      if #pg.data > 0 then return pg end
    end
  end
end

local function failed_once(err)
  local given = false
  return function()
    if given then return nil end
    given = true
    return false, err
  end
end

--- Iterate page by page (client:message_pages).
-- for page, err in client:message_pages{ status, phone_number_id, environment, page_size,
--                                         max_items, timeout, max_retries } do ... end
-- Each page is { data = { message... } (ids not yielded before), pagination = {...}, page }.
-- On failure yields false, err once and ends. err.kind: validation (nothing was sent),
-- and every kind of list_messages; "server" when the walk had to stop because the server
-- kept repeating pages.
-- @tparam table self the client
-- @tparam[opt] table p status, phone_number_id, environment, page_size (100), max_items, and the
--   per-call options
-- @treturn function an iterator yielding page, or false, err once on failure
-- @raise on a wrong argument type, an unknown parameter or a closed client
function _M.message_pages(self, p)
  require("chatmaid.client")._check_open(self, "message_pages")
  local s, err = settings("message_pages", p)
  if not s then return failed_once(err) end
  return page_iter(self, s)
end

--- Iterate over every message once, newest first (client:messages).
-- for msg, err in client:messages{ ...same parameters... } do if not msg then ... end end
-- Yields each message once, newest first.
-- @tparam table self the client
-- @tparam[opt] table p as for message_pages
-- @treturn function an iterator yielding msg, or false, err once on failure
-- @raise on a wrong argument type, an unknown parameter or a closed client
function _M.messages(self, p)
  require("chatmaid.client")._check_open(self, "messages")
  local s, err = settings("messages", p)
  if not s then return failed_once(err) end
  local pages = page_iter(self, s)
  local buf, i, finished = nil, 0, false
  return function()
    if finished then return nil end
    while true do
      if buf and i < #buf then
        i = i + 1
        return buf[i]
      end
      local pg, e = pages()
      if pg == nil then finished = true; return nil end
      if pg == false then finished = true; return false, e end
      buf, i = pg.data, 0
    end
  end
end

--- Every message in one array (client:collect_messages).
-- client:collect_messages{ max_items = n, ... } -> array of messages | nil, err
-- max_items is required (raises without it). On failure err.collected holds what was read.
-- @tparam table self the client
-- @tparam table p max_items (required), and the parameters of message_pages
-- @treturn ?table array of messages, or nil
-- @treturn ?table err (docs/reference/errors.md) when the first value is nil (err.collected: what
--   was read)
-- @raise without max_items, and as messages
function _M.collect_messages(self, p)
  require("chatmaid.client")._check_open(self, "collect_messages")
  local s, err = settings("collect_messages", p, true)
  if not s then return nil, err end
  local out = setmetatable({}, core.array_mt)
  for pg, e in page_iter(self, s) do
    if not pg then
      e.collected = out
      return nil, e
    end
    for _, m in ipairs(pg.data) do out[#out + 1] = m end
  end
  return out
end

-- ---- cursor pagination (the conversations API: GET /api/whatsapp/messages?before=<id>) ----
--
-- Each page holds messages older than the cursor, but the contract does not fix the order
-- within a page (its example is ascending). So every page's order is found from its
-- timestamps, the next cursor is the id of the page's oldest message, and each page's new
-- messages are handed out newest first: newest first overall, whatever the page order.

-- Ids kept to drop repeats: the last two pages, and at least this many recent ids.
_M.CURSOR_SEEN = 1000
_M.CURSOR_PAGE_SIZE = 50        -- the API's default `limit`, always sent explicitly

local floor = math.floor

-- Days from 1970-01-01 to a proleptic Gregorian date (H. Hinnant's days_from_civil).
local function days_from_civil(y, m, d)
  if m <= 2 then y = y - 1 end
  local era = floor(y / 400)
  local yoe = y - era * 400
  local mp = (m + 9) % 12
  local doy = floor((153 * mp + 2) / 5) + d - 1
  local doe = yoe * 365 + floor(yoe / 4) - floor(yoe / 100) + doy
  return era * 146097 + doe - 719468
end

local function zone_offset(z)
  if z == "" or z == "Z" or z == "z" then return 0 end
  local sign, hh, mm = z:match("^([%+%-])(%d%d):?(%d%d)$")
  if not sign then
    sign, hh = z:match("^([%+%-])(%d%d)$")
    mm = "00"
  end
  if not sign then return nil end
  hh, mm = tonumber(hh), tonumber(mm)
  if hh > 23 or mm > 59 then return nil end
  local off = hh * 3600 + mm * 60
  if sign == "-" then off = -off end
  return off
end

--- Parse a timestamp.
-- time(v) -> seconds since the epoch (fractions kept) | nil when v is not a time.
-- Accepts ISO 8601 / RFC 3339 strings ("2026-05-16T10:30:00.000Z", any number of fraction
-- digits, "+02:00"/"+0200"/"+02"/no zone = UTC, "T" or a space, a date alone) and epoch
-- numbers (or digit strings) in seconds, or milliseconds when larger than 1e11.
-- @tparam string|number v an ISO 8601 string or epoch seconds/milliseconds
-- @treturn ?number seconds since the epoch, or nil
function _M.time(v)
  if type(v) == "string" and v:match("^%s*%-?%d+%.?%d*%s*$") then v = tonumber(v) end
  if type(v) == "number" then
    if v ~= v or v == math.huge or v == -math.huge then return nil end
    if v > 1e11 or v < -1e11 then return v / 1000 end
    return v
  end
  if type(v) ~= "string" then return nil end
  local y, mo, d, rest = v:match("^%s*(%d%d%d%d)%-(%d%d)%-(%d%d)(.-)%s*$")
  if not y then return nil end
  y, mo, d = tonumber(y), tonumber(mo), tonumber(d)
  local h, mi, sec, frac, zone = 0, 0, 0, 0, ""
  if rest ~= "" then
    local hh, mm, tail = rest:match("^[Tt ](%d%d):(%d%d)(.*)$")
    if not hh then return nil end
    h, mi = tonumber(hh), tonumber(mm)
    local ss, t2 = tail:match("^:(%d%d)(.*)$")
    if ss then sec, tail = tonumber(ss), t2 end
    local f, t3 = tail:match("^[%.,](%d+)(.*)$")
    if f then frac, tail = tonumber("0." .. f), t3 end
    zone = tail
  end
  local off = zone_offset(zone)
  if not off or mo < 1 or mo > 12 or d < 1 or d > 31 or h > 24 or mi > 59 or sec > 60
     or (h == 24 and (mi > 0 or sec > 0 or frac > 0)) then
    return nil
  end
  return days_from_civil(y, mo, d) * 86400 + h * 3600 + mi * 60 + sec + frac - off
end

--- A cursor walk's state (no I/O).
-- cursor_state{ page_size, before, page_order, path } -> state for cursor_step.
-- page_size: the `limit` sent (default CURSOR_PAGE_SIZE); before: the first cursor (nil:
-- start at the newest message); page_order: "asc" | "desc" to trust a known page order
-- instead of detecting it; path: for error messages. The fetch loop reads state.size,
-- state.cursor (the next `before`; nil for the first page) and state.done.
-- @tparam[opt] table o page_size, before, page_order, path
-- @treturn table the state (size, cursor, done)
function _M.cursor_state(o)
  o = o or {}
  local st = {
    size = o.page_size or _M.CURSOR_PAGE_SIZE, cursor = o.before, path = o.path,
    fixed = o.page_order, order = o.page_order or "asc", sure = o.page_order ~= nil,
    seen = {}, window = {}, first = 1, held = 0,      -- the dedup window
    used = {},                                        -- every cursor sent (one per page)
    pages = 0, yielded = 0, max_total = nil, done = false,
  }
  if st.cursor then st.used[st.cursor] = true end
  return st
end

local function cursor_stuck(st, why)
  return errors.new("server", "pagination stopped after page " .. st.pages .. ": " .. why
                    .. "; the listing may be incomplete",
                    { method = "GET", path = st.path, retryable = false })
end

local function id_of(m)
  local id = type(m) == "table" and m.id
  if type(id) == "string" and id ~= "" then return id end
  return nil
end

-- The order of one page from its timestamps: the first and last, else where the earliest
-- and the latest ones sit. nil when they all tie or are missing.
local function detect(keys, n)
  local a, b = keys[1], keys[n]
  if a and b and a ~= b then return a < b and "asc" or "desc" end
  local lo, hi, ilo, ihi
  for i = 1, n do
    local k = keys[i]
    if k then
      if lo == nil or k < lo then lo, ilo = k, i end
      if hi == nil or k > hi then hi, ihi = k, i end
    end
  end
  if lo ~= nil and lo ~= hi then return ilo < ihi and "asc" or "desc" end
  return nil
end

-- The page's oldest message that can be a cursor: the earliest timestamp, a tie going to
-- the one nearer the page's older end; when the page has messages without a timestamp (or a
-- page order was given), simply the one nearest the older end.
local function oldest(data, keys, n, order, complete)
  local from, to, step = 1, n, 1
  if order == "desc" then from, to, step = n, 1, -1 end
  local best, bestkey
  for i = from, to, step do
    local id = id_of(data[i])
    if id then
      if not complete then return id end
      if best == nil or keys[i] < bestkey then best, bestkey = id, keys[i] end
    end
  end
  return best
end

local function remember(st, ids)
  local w = st.window
  w[#w + 1] = ids
  st.held = st.held + #ids
  local page_no = #w
  for _, id in ipairs(ids) do st.seen[id] = page_no end
  -- drop the oldest page while two pages and CURSOR_SEEN ids would still be kept
  while #w - st.first + 1 > 2 and st.held - #w[st.first] >= _M.CURSOR_SEEN do
    local old = w[st.first]
    for _, id in ipairs(old) do
      if st.seen[id] == st.first then st.seen[id] = nil end
    end
    st.held = st.held - #old
    w[st.first] = false
    st.first = st.first + 1
  end
end

--- Feed one page to a cursor walk (no I/O).
-- cursor_step(state, page) -> fresh, err
-- page: a decoded list response { data = { message... }, hasNext?, total? }. fresh: the
-- page's messages not handed out before, newest first (may be empty). err (kind "server",
-- or "decode" for a page without a data array): the walk cannot go on; deliver fresh, then
-- the error. Afterwards state.done tells whether to stop, state.cursor is the next `before`.
-- Pure: no I/O, only state changes, so a blocking or a non-blocking fetch loop can drive it.
-- @tparam table st the state of cursor_state
-- @tparam table page a decoded list response
-- @treturn table the page's new messages, newest first
-- @treturn ?table err (kind "server" or "decode") when the walk cannot go on
function _M.cursor_step(st, page)
  if st.done then error("chatmaid.paginate: cursor_step after the walk ended", 2) end
  st.pages = st.pages + 1
  local data = type(page) == "table" and page.data
  if type(data) ~= "table" then
    st.done = true
    return {}, errors.new("decode", "the list response has no data array",
                          { method = "GET", path = st.path })
  end
  local n = #data
  local total = tonumber(page.total)
  if total and (st.max_total == nil or total > st.max_total) then st.max_total = total end
  if n == 0 then st.done = true; return {} end

  local keys, nkeys = {}, 0
  for i = 1, n do
    local m = data[i]
    local k = type(m) == "table" and _M.time(m.timestamp) or nil
    keys[i] = k
    if k then nkeys = nkeys + 1 end
  end
  local dupes = 0
  for i = 1, n do
    local id = id_of(data[i])
    if id and st.seen[id] then dupes = dupes + 1 end
  end
  local order = not st.fixed and detect(keys, n)
  if order then
    st.order, st.sure = order, true
  else
    -- No timestamp tells the order: keep the last known one (or the contract's ascending).
    -- A guess that was wrong shows up as an overlap with the page before (the cursor was
    -- its newest message): flip once, and keep the flipped order from then on.
    if not st.sure and dupes > 0 then
      st.order = st.order == "asc" and "desc" or "asc"
      st.sure = true
    end
    order = st.order
  end

  -- hand out newest first: an ascending page backwards
  local fresh, ids = {}, {}
  local from, to, step = 1, n, 1
  if order == "asc" then from, to, step = n, 1, -1 end
  for i = from, to, step do
    local m = data[i]
    local id = id_of(m)
    if id == nil then
      fresh[#fresh + 1] = m               -- cannot be deduplicated; passed through
    elseif not st.seen[id] then
      st.seen[id] = true
      ids[#ids + 1] = id
      fresh[#fresh + 1] = m
    end
  end
  remember(st, ids)
  st.yielded = st.yielded + #ids

  local more
  if page.hasNext ~= nil then more = page.hasNext == true
  else more = n >= st.size end
  if not more then st.done = true; return fresh end

  st.done = true                      -- until a usable next cursor is found
  if #ids == 0 then
    return fresh, cursor_stuck(st, (page.hasNext ~= nil and "hasNext is true" or "the page "
                               .. "is full") .. " but it brought no new message (the server "
                               .. "ignored the cursor)")
  end
  if st.max_total and st.yielded > st.max_total + st.size then
    return fresh, cursor_stuck(st, "the server gave " .. st.yielded .. " messages, more than "
                               .. "its total of " .. st.max_total)
  end
  local nxt = oldest(data, keys, n, order, nkeys == n and not st.fixed)
  if nxt == nil then
    return fresh, errors.new("decode", "the page has no message id to continue from",
                             { method = "GET", path = st.path, status = 200 })
  end
  if st.used[nxt] then
    return fresh, cursor_stuck(st, "the next cursor " .. nxt .. " was already used")
  end
  st.used[nxt], st.cursor, st.done = true, nxt, false
  return fresh
end

return _M
