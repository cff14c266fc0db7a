-- SPDX-License-Identifier: MIT
-- The batch journal: an append-only file of JSON lines recording each send's launch and
-- outcome by idempotency key, flushed after every outcome, so that a run killed at any
-- moment (kill -9 included) leaves a file the next run reads back. A torn last line (the
-- process died mid-write) is ignored. No fsync: flush hands each line to the kernel, which
-- keeps it across a killed process; an OS crash or power loss can lose the last lines, and
-- then the items are sent again with their same keys (the API answers with the originals).
--
-- Lines: {"journal":"chatmaid.batch","v":1,"batch":<id>,"at":<unix time>}  (each run)
--        {"launch":<key>}                      a request for the key is about to leave
--        {"ok":<key>,"message":{...}}          the API's message for the key
--        {"fail":<key>,"kind":...,"error":...} the item failed (it is sent again next run)
local core = require "chatmaid.core"
local json = require("cjson").new()

local _M = {}
local mt = { __index = _M }

_M.MAGIC = "chatmaid.batch"

-- read(path) -> state | nil, problem
-- state = { exists, batch_id (the last run's), confirmed = { [key] = message },
--           launched = { [key] = true }, failed = { [key] = kind }, torn (a torn last
--           line was dropped), lines }. A missing file is an empty journal.
function _M.read(path)
  local st = { exists = false, confirmed = {}, launched = {}, failed = {}, torn = false,
               lines = 0, ends_clean = true }
  local f = io.open(path, "rb")
  if not f then
    -- missing is fine; anything else (a directory, no permission) is a problem
    local probe, err = io.open(path, "ab")
    if not probe then return nil, "cannot open " .. tostring(err) end
    probe:close()
    os.remove(path)
    return st
  end
  local text = f:read("*a")
  f:close()
  if text == nil then return nil, "cannot read " .. path end
  st.exists = #text > 0
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
      if r.journal == _M.MAGIC and type(r.batch) == "string" then st.batch_id = r.batch
      elseif type(r.launch) == "string" then st.launched[r.launch] = true
      elseif type(r.ok) == "string" and type(r.message) == "table" then
        st.confirmed[r.ok] = r.message
        st.failed[r.ok] = nil
      elseif type(r.fail) == "string" then st.failed[r.fail] = r.kind or true
      end
    end
  end
  return st
end

-- open(path, batch_id) -> journal | nil, problem. Appends this run's header line.
function _M.open(path, batch_id, state)
  -- a file holding only a torn header is started again
  local f, err = io.open(path, (state and state.torn and not state.exists) and "wb" or "ab")
  if not f then return nil, "cannot open " .. tostring(err) end
  local j = setmetatable({ f = f, path = path, dirty = false }, mt)
  -- after a torn line, start on a line of our own (the fragment stays an ignored line)
  local ok, werr = j:write((state and not state.ends_clean) and "\n" or "")
  if ok then
    ok, werr = j:write(json.encode{ journal = _M.MAGIC, v = 1, batch = batch_id,
                                    at = core.time() } .. "\n")
  end
  if ok then ok, werr = j:flush() end
  if not ok then f:close(); return nil, werr end
  return j
end

-- write(s) -> true | nil, problem   (buffered until flush)
function _M:write(s)
  if s == "" then return true end
  local ok, err = self.f:write(s)
  if not ok then return nil, "cannot write " .. self.path .. ": " .. tostring(err) end
  self.dirty = true
  return true
end

function _M:flush()
  if not self.dirty then return true end
  self.dirty = false
  local ok, err = self.f:flush()
  if not ok then return nil, "cannot write " .. self.path .. ": " .. tostring(err) end
  return true
end

-- launch(key): buffered; the next flush (at the latest the next outcome) writes it.
function _M:launch(key)
  return self:write(json.encode{ launch = key } .. "\n")
end

-- ok(key, message) / fail(key, err): written and flushed at once.
function _M:ok(key, message)
  local ok, err = self:write(json.encode{ ok = key, message = message } .. "\n")
  if not ok then return nil, err end
  return self:flush()
end

function _M:fail(key, e)
  local ok, err = self:write(json.encode{ fail = key, kind = e.kind,
                                          error = tostring(e.message) } .. "\n")
  if not ok then return nil, err end
  return self:flush()
end

function _M:close()
  if self.f then
    local ok, err = self:flush()
    self.f:close()
    self.f = nil
    if not ok then return nil, err end
  end
  return true
end

-- new_batch_id() -> "j-" and 16 random hex digits: the id of a journal made without one.
function _M.new_batch_id()
  return "j-" .. (core.random_bytes(8):gsub(".", function(c)
    return string.format("%02x", c:byte())
  end))
end

return _M
