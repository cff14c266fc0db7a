-- SPDX-License-Identifier: MIT

--- The batch journal: one writer, append-only JSON lines, read back to resume
--   (docs/campaigns-and-cli.md).
-- The batch journal: an append-only file of JSON lines recording each send's launch and
-- outcome by idempotency key, flushed after every outcome, so that a run killed at any
-- moment (kill -9 included) leaves a file the next run reads back. A torn last line (the
-- process died mid-write) is ignored. No fsync: flush hands each line to the kernel, which
-- keeps it across a killed process; an OS crash or power loss can lose the last lines, and
-- then the items are sent again with their same keys (the API answers with the originals).
--
-- One writer at a time: acquire() locks the file before reading it (flock, see
-- csrc/filelock.c); a second process (or a second batch in this one) gets "busy" naming the
-- holder's pid. The file is created 0600: it holds phone numbers and message text.
--
-- Lines: {"journal":"chatmaid.batch","v":1,"batch":<id>,"at":<unix time>,"to":<dest>}
--                                             (each run; "to": destination(), since 0.2)
--        {"launch":<key>}                      a request for the key is about to leave
--        {"ok":<key>,"message":{...}}          the API's message for the key
--        {"fail":<key>,"kind":...,"error":...} the item failed (it is sent again next run)
-- @module chatmaid.journal
local core = require "chatmaid.core"
local json = require("cjson").new()

local _M = {}
local mt = { __index = _M }
_M.mt = mt

_M.MAGIC = "chatmaid.batch"

--- Parse a journal's text.
-- parse(text, path) -> state | nil, problem
-- state = { exists, batch_id and dest (the last run's), confirmed = { [key] = message },
--           batch_of = { [key] = the batch id of the run that confirmed it },
--           launched = { [key] = true }, failed = { [key] = kind }, torn (a torn last
--           line was dropped), lines, runs (header lines), first_at / last_at (Unix times of
--           the first and the last run) }.
-- @tparam string text the file's bytes
-- @tparam string path for messages
-- @treturn ?table state: exists, batch_id, confirmed, launched, failed, torn, lines, runs,
--   first_at, last_at; or nil
-- @treturn ?string the problem when nil (not a journal)
function _M.parse(text, path)
  local st = { exists = #text > 0, confirmed = {}, batch_of = {}, launched = {}, failed = {},
               torn = false, lines = 0, ends_clean = true, runs = 0 }
  local pos, first = 1, true
  while pos <= #text do
    local nl = text:find("\n", pos, true)
    if not nl then            -- no newline: the process died writing this line
      st.torn, st.ends_clean = true, false
      if first then st.exists, st.ends_clean = false, true end   -- not even a header yet
      break
    end
    local line = text:sub(pos, nl - 1)
    pos = nl + 1
    local r = line ~= "" and core.decode_json(line)
    if first then
      if not (r and r.journal == _M.MAGIC) then
        return nil, path .. " is not a chatmaid batch journal (its first line is not one)"
      end
      first = false
    end
    if r then
      st.lines = st.lines + 1
      if r.journal == _M.MAGIC and type(r.batch) == "string" then
        st.batch_id, st.runs = r.batch, st.runs + 1
        st.dest = type(r.to) == "string" and r.to or nil   -- the last run's; older: none
        -- a time os.date takes (a damaged file's 1e300 would make it raise)
        if type(r.at) == "number" and r.at >= 0 and r.at < 1e11 then
          st.first_at, st.last_at = st.first_at or r.at, r.at
        end
      elseif type(r.launch) == "string" then st.launched[r.launch] = true
      elseif type(r.ok) == "string" and type(r.message) == "table" then
        st.confirmed[r.ok], st.batch_of[r.ok] = r.message, st.batch_id
        st.failed[r.ok] = nil
      elseif type(r.fail) == "string" then st.failed[r.fail] = r.kind or true
      end
    end
  end
  return st
end

--- Read a journal without taking its lock (to look at one).
-- read(path) -> state | nil, problem: the journal as it is now, without taking its lock (to
-- look at one). A missing file is an empty journal. A writer uses acquire().
-- @tparam string path the journal file (missing: an empty journal)
-- @treturn ?table state (as parse), or nil
-- @treturn ?string the problem when nil
function _M.read(path)
  local f, err = io.open(path, "rb")
  if not f then
    if not err:find("No such file", 1, true) then return nil, "cannot open " .. err end
    return _M.parse("", path)
  end
  local text = f:read("*a")
  f:close()
  if text == nil then return nil, "cannot read " .. path end
  return _M.parse(text, path)
end

--- Become the one writer of a journal: lock it, then read it.
-- acquire(path) -> journal | nil, problem, kind
-- The one writer of the journal at path: takes its lock (chatmaid.core.lock_file: created
-- 0600, never through a symbolic link, a regular file of ours only) BEFORE reading it, makes
-- it 0600 once it parses as a journal, and holds it until journal:close() (or the journal is
-- collected). journal.state is what earlier runs
-- wrote (parse). kind: "busy" (another writer holds it: problem names its pid), "symlink",
-- "not_regular", "not_owner" (another user's file), "open", "io", "not_journal".
-- @tparam string path the journal file (created 0600)
-- @treturn ?table the journal (journal.state: what earlier runs wrote), or nil
-- @treturn ?string the problem when nil (for "busy", it names the holder's pid)
-- @treturn ?string kind: "busy", "symlink", "not_regular", "not_owner", "open", "io" or
--   "not_journal"
function _M.acquire(path)
  local lock, kind, msg = core.lock_file(path)
  if not lock then return nil, msg, kind end
  local text, _, rerr = lock:read()     -- nil, "io", the system's message
  if not text then lock:close(); return nil, "cannot read " .. path .. ": " .. rerr, "io" end
  local st, problem = _M.parse(text, path)
  if not st then lock:close(); return nil, problem, "not_journal" end
  local ok, _, perr = lock:private()      -- 0600 also for one an older version made 0644
  if not ok then lock:close(); return nil, "cannot chmod " .. path .. ": " .. perr, "io" end
  return setmetatable({ lock = lock, path = path, state = st, buf = {} }, mt)
end

--- Append this run's header line.
-- journal:start(batch_id [, dest]) -> true | nil, problem. Appends this run's header line.
-- @tparam string batch_id the batch id
-- @tparam[opt] string dest where this run sends (destination())
-- @treturn ?boolean true, or nil
-- @treturn ?string the problem when nil
function _M:start(batch_id, dest)
  local st = self.state
  -- a file holding only a torn header is started again
  if st.torn and not st.exists then
    local ok, _, err = self.lock:truncate()
    if not ok then return nil, "cannot truncate " .. self.path .. ": " .. err end
  elseif not st.ends_clean then
    self:write("\n")  -- after a torn line, start on a line of our own (the fragment is ignored)
  end
  self.batch_id = batch_id
  self.state.dest = dest
  self:write(json.encode{ journal = _M.MAGIC, v = 1, batch = batch_id, at = core.time(),
                          to = dest } .. "\n")
  return self:flush()
end

--- Buffer a line until the next flush.
-- write(s): buffered until flush.
-- @tparam string s the line
function _M:write(s)
  if s ~= "" then self.buf[#self.buf + 1] = s end
  return true
end

--- Write what is buffered.
-- @treturn ?boolean true, or nil
-- @treturn ?string the problem when nil
function _M:flush()
  local buf = self.buf
  if buf[1] == nil then return true end
  if not self.lock then return nil, "cannot write " .. self.path .. ": journal closed" end
  self.buf = {}
  local ok, _, err = self.lock:append(table.concat(buf))   -- nil, "io", the system's message
  if not ok then return nil, "cannot write " .. self.path .. ": " .. tostring(err) end
  return true
end

--- Record that the send with this key started (buffered).
-- launch(key): buffered; the next flush (at the latest the next outcome) writes it.
-- @tparam string key the idempotency key
function _M:launch(key)
  self.state.launched[key] = true     -- the state follows the file: a journal acquired once
  return self:write(json.encode{ launch = key } .. "\n")   -- may serve several batches
end

--- Record a send's message (written and flushed at once).
-- ok(key, message) / fail(key, err): written and flushed at once.
-- @tparam string key the idempotency key
-- @tparam table message the message the API returned
function _M:ok(key, message)
  local st = self.state
  st.confirmed[key], st.batch_of[key], st.failed[key] = message, self.batch_id, nil
  self:write(json.encode{ ok = key, message = message } .. "\n")
  return self:flush()
end

--- Record a send's failure (written and flushed at once).
-- @tparam string key the idempotency key
-- @tparam table e the error
function _M:fail(key, e)
  self.state.failed[key] = e.kind or true
  self:write(json.encode{ fail = key, kind = e.kind, error = tostring(e.message) } .. "\n")
  return self:flush()
end

--- Write what is buffered and release the lock. Idempotent.
-- close() -> true | nil, problem: writes what is buffered and releases the lock. Idempotent.
-- @treturn ?boolean true, or nil
-- @treturn ?string the problem when nil
function _M:close()
  if not self.lock then return true end
  local ok, err = self:flush()
  self.lock:close()
  self.lock = nil
  if not ok then return nil, err end
  return true
end

-- Where a journal's rows were sent. A journal that confirms a row means "the API that run
-- talked to has this message"; read as "sent" by a run that talks to another API (the
-- sandbox, then the real one) or in another mode (a test key, then a live one) it would skip
-- rows that were never sent there. So each run's header records its destination, and a run
-- with another one stops before sending (the CLI; send_batch: reason "destination").

--- The scope of an API key, as the API scopes idempotency keys and messages: its mode.
-- key_scope(api_key) -> "test key" | "live key" (sk_test_..., sk_live_...: rotating a key
-- keeps its scope), else "key " and 16 hex digits of a keyed hash (never the key itself).
-- @tparam string api_key the API key
-- @treturn string the scope
function _M.key_scope(api_key)
  local mode = type(api_key) == "string" and api_key:match("^sk_(%l+)_")
  if mode == "test" or mode == "live" then return mode .. " key" end
  return "key " .. core.webhook_sign(tostring(api_key or ""), "chatmaid-key-scope", 0):sub(1, 16)
end

--- Where a batch sends, as a journal header records it.
-- destination(base_url, api_key) -> "a live key at developers-api.chatmaid.net": the key's
-- scope and the API's host (no port, path or credentials: the same API behind another port
-- or prefix is the same place).
-- @tparam string base_url the client's base URL
-- @tparam string api_key the API key
-- @treturn string the destination
function _M.destination(base_url, api_key)
  local host = tostring(base_url):match("^%a[%w+.-]*://([^/?#]*)") or tostring(base_url)
  host = host:gsub("^.*@", ""):gsub(":%d*$", ""):lower()
  local scope = _M.key_scope(api_key)
  return (scope:sub(1, 4) == "key " and scope or "a " .. scope) .. " at " .. host
end

--- A batch id for a journal made without one.
-- new_batch_id() -> "j-" and 16 random hex digits: the id of a journal made without one.
-- @treturn string "j-" and 16 random hex digits
function _M.new_batch_id()
  return "j-" .. (core.random_bytes(8):gsub(".", function(c)
    return string.format("%02x", c:byte())
  end))
end

return _M
