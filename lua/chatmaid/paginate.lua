-- SPDX-License-Identifier: MIT
-- Lazy walks over GET /v1/messages: client:messages{}, client:message_pages{},
-- client:collect_messages{}. Pages are fetched one at a time, only when the previous one is
-- used up; ids already yielded are never yielded again (offset pagination shifts when new
-- messages arrive, newest first); a failure yields `false, err` once and ends the walk.
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

-- for page, err in client:message_pages{ status, phone_number_id, environment, page_size,
--                                         max_items, timeout, max_retries } do ... end
-- Each page is { data = { message... } (ids not yielded before), pagination = {...}, page }.
-- On failure yields false, err once and ends. err.kind: validation (nothing was sent),
-- and every kind of list_messages; "server" when the walk had to stop because the server
-- kept repeating pages.
function _M.message_pages(self, p)
  require("chatmaid.client")._check_open(self, "message_pages")
  local s, err = settings("message_pages", p)
  if not s then return failed_once(err) end
  return page_iter(self, s)
end

-- for msg, err in client:messages{ ...same parameters... } do if not msg then ... end end
-- Yields each message once, newest first.
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

-- client:collect_messages{ max_items = n, ... } -> array of messages | nil, err
-- max_items is required (raises without it). On failure err.collected holds what was read.
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

return _M
