-- SPDX-License-Identifier: MIT
-- chatmaid batch FILE.csv: send one message per CSV row through client:send_batch.
local core = require "chatmaid.core"
local errors = require "chatmaid.errors"
local journal = require "chatmaid.journal"
local csv = require "chatmaid.cli.csv"
local output = require "chatmaid.cli.output"
local progress = require "chatmaid.cli.progress"

local _M = { commands = {} }

_M.COLUMNS = { "to", "content", "media_url", "idempotency_key" }
local ALLOWED = {}
for _, c in ipairs(_M.COLUMNS) do ALLOWED[c] = true end
local MAX_BATCH_ID = 48

function _M.register(p)
  local b = p:command("batch", "Send one message per row of a CSV file.")
    :epilog([[
The CSV (RFC 4180) has a header row naming its columns, from: to, content, media_url,
idempotency_key. media_url may hold several URLs separated by spaces. A bad row (malformed
CSV, invalid number, API error) is reported with its line number and does not stop the rest.

Results go to --out (or stdout) as JSON lines, one per row in file order:
  {"line":2,"to":"+15557654321","id":"msg_...","status":"sent","idempotency_key":"..."}
  {"line":3,"to":"12","error":{"kind":"validation","message":"..."}}
Progress (a bar on a terminal, plain lines otherwise) and a summary go to stderr. Exit code:
0 when every row was sent, 1 when any row failed, 2 for a bad file or options, 130/143 when
interrupted.

Safe to re-run after a crash, kill -9 or Ctrl-C. A journal (--journal, default: the --out
file, else the CSV file, with ".journal" appended) records every send as it completes; a
re-run with it asks the API nothing for the rows it confirmed, and sends the others again
with their same keys. A row without its own idempotency_key is sent with a key derived from
the batch id and the row's message (--from, to, content, media_url, and which occurrence of
identical rows it is), so deleting, inserting or reordering rows never sends a row twice or
gives it another row's message. The batch id is --batch-id, else the one the journal
recorded, else "csv-" and 16 hex digits of a SHA-256 HMAC of --from and the file's bytes.
To send the same messages again on purpose, pass a new --batch-id.
Ctrl-C (SIGINT) or SIGTERM stops new sends at once, lets those in flight finish, writes the
results (unsent rows as "interrupted") and exits 130 (143 for SIGTERM).

Examples:
  chatmaid batch campaign.csv --from ph_primary --out results.jsonl
  chatmaid batch campaign.csv --from +15551230001 --concurrency 4 --batch-id spring-42]])
  b:argument("file", "CSV file.")
  b:option("--from", "Sender: phone id or E.164 number (default: the one connected phone).")
  b:option("--concurrency", "Requests in flight at once (default 8)."):convert(function(v)
    return require("chatmaid.cli").integer(1, 64)(v)
  end)
  b:option("--batch-id", "Batch id for the derived idempotency keys (see below).")
  b:option("--out", "Write the JSON-lines results to this file instead of stdout.")
  b:option("--journal", "The journal of sends (default: the --out file, else the CSV file,"
           .. " with .journal appended).")
  b:flag("--no-journal", "Keep no journal (a re-run then asks the API for every row).")
  b:option("--rate", "Client-side limit in requests per minute (default 100; 0 = off)")
    :convert(function(v) return require("chatmaid.cli").integer(0, 1000000)(v) end)
  b:option("--redis", "Share --rate through Redis (redis://host:port/db) with every sender "
           .. "on this API key, on any machine.")
end

local function read_file(path)
  local f, err = io.open(path, "rb")
  if not f then return nil, err end
  local s = f:read("*a")
  f:close()
  return s
end

-- default batch id: same sender and same bytes -> same id (so a re-run is deduplicated).
-- chatmaid.core exposes HMAC-SHA256 only through webhook_sign(body, key, t), which MACs
-- t .. "." .. body: a fixed key and t = 0 make it a plain keyed hash.
function _M.default_batch_id(from, text)
  return "csv-" .. core.webhook_sign((from or "") .. "\n" .. text, "chatmaid-cli-batch", 0)
                        :sub(1, 16)
end

local function trim(s) return (s:gsub("^%s+", ""):gsub("%s+$", "")) end

-- rows(text) -> header_err | nil, rows, bad
-- rows: { line, ordinal, item }; bad: { line, to, error } for records that are not rows.
function _M.rows(text)
  local records = csv.parse(text)
  local head = records[1]
  if not head then return "the file is empty: expected a header row (to,content,...)" end
  if head.error then return "line " .. head.line .. ": header: " .. head.error end
  local cols, unknown, seen = {}, {}, {}
  for i, name in ipairs(head.fields) do
    name = trim(name)
    if not ALLOWED[name] then unknown[#unknown + 1] = name == "" and '""' or name end
    if seen[name] then return "column " .. name .. " appears twice in the header" end
    seen[name] = i
    cols[i] = name
  end
  if #unknown > 0 then
    return "unknown column" .. (#unknown > 1 and "s " or " ") .. table.concat(unknown, ", ")
           .. " in the header (allowed: " .. table.concat(_M.COLUMNS, ", ") .. ")"
  end
  if not seen.to then return "the header has no 'to' column" end
  if not (seen.content or seen.media_url) then
    return "the header needs a 'content' or a 'media_url' column"
  end
  local rows, bad = {}, {}
  for k = 2, #records do
    local r = records[k]
    local ordinal = k - 1
    if r.error then
      bad[#bad + 1] = { line = r.line, error = { kind = "validation", message = r.error } }
    elseif #r.fields ~= #cols then
      bad[#bad + 1] = { line = r.line, to = r.fields[seen.to],
                        error = { kind = "validation", message = "expected " .. #cols
                                  .. " fields (as in the header), got " .. #r.fields } }
    else
      local v = {}
      for i, name in ipairs(cols) do
        if r.fields[i] ~= "" then v[name] = r.fields[i] end
      end
      local media
      if v.media_url then
        media = {}
        for u in v.media_url:gmatch("%S+") do media[#media + 1] = u end
      end
      rows[#rows + 1] = { line = r.line, ordinal = ordinal, item = {
        to = v.to and trim(v.to) or "", content = v.content, media_urls = media,
        idempotency_key = v.idempotency_key } }
    end
  end
  return nil, rows, bad
end

-- Exit codes after SIGINT / SIGTERM, as a shell reports a process killed by them.
_M.SIGNAL_EXIT = { INT = 130, TERM = 143 }

-- journal_path(a) -> path | nil: --journal, else next to the results (--out), else next to
-- the CSV file; nil with --no-journal.
function _M.journal_path(a)
  if a.no_journal then return nil end
  return a.journal or ((a.out or a.file) .. ".journal")
end

-- send(c, items, opts) -> results, summary, interrupted_err | nil, err
-- SIGINT and SIGTERM stop the batch (within STOP_SLICE) instead of killing the process.
local function send(c, items, opts)
  core.signal_watch{ "INT", "TERM" }
  opts.should_stop = function()
    local sig = core.signal_pending()
    return sig and ("SIG" .. sig) or nil
  end
  local ok, results, summary = pcall(c.send_batch, c, items, opts)
  core.signal_restore()
  if ok then return results, summary end
  local e = results
  if errors.is(e) and e.kind == "interrupted" then return e.results, e.summary, e end
  error(e, 0)
end

function _M.commands.batch(a, ctx)
  local text, rerr = read_file(a.file)
  if not text then return ctx.usage("cannot read " .. rerr) end
  local herr, rows, bad = _M.rows(text)
  if herr then return ctx.usage(a.file .. ": " .. herr) end
  if #rows + #bad == 0 then return ctx.usage(a.file .. ": no data rows after the header") end
  local jpath = _M.journal_path(a)
  local jstate
  if jpath then
    local problem
    jstate, problem = journal.read(jpath)
    if not jstate then return ctx.usage("--journal: " .. problem) end
  end
  -- the journal remembers the batch it belongs to, so an edited file continues that batch
  local resumed = not a.batch_id and jstate and jstate.batch_id
  local batch_id = a.batch_id or resumed or _M.default_batch_id(a.from, text)
  if #batch_id > MAX_BATCH_ID or batch_id:find("[^\33-\126]") then
    return ctx.usage("--batch-id must be 1 to " .. MAX_BATCH_ID .. " printable ASCII"
                     .. " characters without spaces")
  end
  local limiter
  if a.redis then
    if a.rate == 0 then return ctx.usage("--redis shares the rate limit: not with --rate 0") end
    local redis = require "chatmaid.redis"
    -- a 0.5 s command timeout: Ctrl-C is seen within 1 s even while Redis does not answer
    local ok, lim = pcall(redis.rate_limiter, { url = a.redis, per_minute = a.rate or 100,
      key = redis.key_id(a.api_key or os.getenv("CHATMAID_API_KEY") or ""), timeout = 0.5 })
    if not ok then return ctx.usage("--redis: " .. tostring(lim):gsub("^[^\n]-:%d+: ", "")) end
    limiter = lim
  end
  local out = ctx.stdout
  if a.out then
    local f, oerr = io.open(a.out, "wb")
    if not f then return ctx.usage("cannot write " .. oerr) end
    out = f
  end
  local c, code = ctx.client()
  if not c then return code end
  if type(c.send_batch) ~= "function" then
    return ctx.fail("chatmaid: this version of the library has no client:send_batch")
  end
  if resumed then
    ctx.stderr:write("batch ", batch_id, ": continuing the batch recorded in ", jpath,
                     " (--batch-id NEW starts another)\n")
  end
  local items = {}
  for i, r in ipairs(rows) do
    local it = r.item
    it.from = a.from      -- the key of a row without its own comes from the batch id + row
    items[i] = it
  end
  local now = core.monotime
  local t0 = now()
  local bar = progress.new{ total = #items, tty = ctx.tty_err, stream = ctx.stderr, now = now }
  local rate = a.rate          -- 0 turns the limiter off: false, not 0 ("x and false or y"
  if rate == 0 then rate = false end   -- would give 0 back)
  local results, summary, stopped = send(c, items, {
    concurrency = a.concurrency or 8, batch_id = batch_id, journal = jpath,
    rate_per_minute = rate, rate_limiter = limiter,
    on_progress = function(done) bar:update(done) end,
  })
  bar:finish()
  if not results then return ctx.fail(summary) end
  local lines = {}
  for _, b in ipairs(bad) do lines[#lines + 1] = b end
  local failed_lines = {}
  local why = stopped and (stopped.reason == "stop" and tostring(stopped.cause) or "an error")
  for i, r in ipairs(rows) do
    local res = results[i] or {}
    local rec = { line = r.line, to = r.item.to }
    if res.message then
      rec.id, rec.status = res.message.id, res.message.status
      rec.idempotency_key = res.idempotency_key
      if res.replayed then rec.replayed = true end
      if res.skipped then rec.skipped = true end
    elseif res.err and res.err.kind == "interrupted" then
      rec.error = { kind = "interrupted", message = "not sent: the batch was interrupted ("
                    .. why .. "); run the same command again to continue" }
      rec.idempotency_key = res.idempotency_key
    else
      local e = res.err or { kind = "transport", message = "no result" }
      rec.error = { kind = e.kind, message = e.message }
    end
    lines[#lines + 1] = rec
  end
  table.sort(lines, function(x, y) return x.line < y.line end)
  for _, rec in ipairs(lines) do
    out:write(output.json(rec), "\n")
    if rec.error and rec.error.kind ~= "interrupted" then
      failed_lines[#failed_lines + 1] = rec.line
    end
  end
  if out ~= ctx.stdout then out:close() else out:flush() end
  local list = {}
  for i = 1, math.min(#failed_lines, 10) do list[i] = tostring(failed_lines[i]) end
  if #failed_lines > 10 then list[#list + 1] = "..." end
  ctx.stderr:write(string.format(
    "batch %s: sent %d, replayed %d, skipped %d, failed %d%s, %d rows in %.1f s%s\n",
    batch_id, summary.sent, summary.replayed, summary.skipped, #failed_lines,
    #failed_lines > 0 and (" (line" .. (#failed_lines > 1 and "s " or " ")
                          .. table.concat(list, ", ") .. ")") or "",
    #lines, now() - t0,
    stopped and ("; interrupted (" .. why .. "): " .. summary.interrupted
                 .. " rows not sent, run the same command again to continue") or ""))
  if stopped and stopped.reason == "journal" then
    ctx.stderr:write(output.one_line(tostring(stopped)), "\n")
  end
  if stopped then
    local sig = stopped.reason == "stop" and tostring(stopped.cause):match("^SIG(%u+)$")
    return _M.SIGNAL_EXIT[sig] or 1
  end
  return #failed_lines == 0 and 0 or 1
end

return _M
