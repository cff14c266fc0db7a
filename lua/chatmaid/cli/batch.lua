-- SPDX-License-Identifier: MIT
-- chatmaid batch FILE.csv: send one message per CSV row through client:send_batch.
local core = require "chatmaid.core"
local errors = require "chatmaid.errors"
local journal = require "chatmaid.journal"
local idempotency = require "chatmaid.idempotency"
local validate = require "chatmaid.validate"
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

A campaign is its name: --campaign NAME, by default the CSV file's name without its
extension ("spring.csv" -> spring), never its bytes nor --out. Its journal lives beside the
CSV as NAME.journal (--journal PATH elsewhere; --no-journal none) and records every send as
it completes: a re-run, with any --out, asks the API nothing for the rows it confirmed and
sends the others with their same keys. Each row's key comes from the batch id and the row's
message (--from, to, content, media_url, and which occurrence of identical rows it is): an
unchanged row is never sent twice after rows are fixed, deleted, inserted or reordered.
Write --from the same way on every run: a list the journal shows was sent under other keys
stops, even with --continue. The batch id is --batch-id, else the one the journal recorded
(--no-journal still reads it, and writes none), else "csv-" and 16 hex digits of a SHA-256
HMAC of the campaign name, --from and the API key: the same on another machine, where the
API answers the rows it already has (replayed). The ids of --new and of an earlier
--batch-id live only in the journal: elsewhere pass the id the summary line printed.
A different list under the name of an earlier campaign is not merged silently: unless more
than 2 in 3 of its rows are rows of the earlier run(s), nothing is sent and the run stops
(exit 2) naming the earlier run (date, counts). Then --continue sends the rows not sent yet
as part of that campaign, --new starts a new campaign under the name (the old journal is
kept as NAME.journal.<date>), or pick another --campaign. --batch-id NEW sends the file
again on purpose. The summary says how many rows an earlier run had already sent.
One writer per journal: a second `chatmaid batch` on the same campaign (same journal) stops
before sending, naming the other's pid (exit 2). The journal holds phone numbers and
message text: it is created with mode 0600 (owner only), and a journal path that is a
symbolic link, not a regular file or another user's file is refused. --out may not name the
CSV file or the journal.
Ctrl-C (SIGINT) or SIGTERM stops new sends at once, lets those in flight finish, writes the
results (unsent rows as "interrupted") and exits 130 (143 for SIGTERM). An interrupted row
whose request may have reached the API has "maybe_sent": true; running the same command
again finishes it with its same key, so it is never sent twice.

Examples:
  chatmaid batch campaign.csv --from ph_primary --out results.jsonl
  chatmaid batch campaign.csv --from +15551230001 --concurrency 4 --batch-id spring-42
  chatmaid batch week-50.csv --campaign weekly --new]])
  b:argument("file", "CSV file.")
  b:option("--from", "Sender: phone id or E.164 number (default: the one connected phone).")
  b:option("--concurrency", "Requests in flight at once (default 8)."):convert(function(v)
    return require("chatmaid.cli").integer(1, 64)(v)
  end)
  b:option("--campaign", "The campaign's name (default: the CSV file's name without its"
           .. " extension).")
  b:flag("--continue", "Send this list as part of the earlier campaign of the same name.")
  b:flag("--new", "Start a new campaign under this name (the earlier journal is kept aside).")
  b:option("--batch-id", "Batch id for the derived idempotency keys (see below).")
  b:option("--out", "Write the JSON-lines results to this file instead of stdout.")
  b:option("--journal", "The journal of sends (default: NAME.journal beside the CSV file).")
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

-- default_batch_id(campaign, from, api_key) -> "csv-" and 16 hex digits: the same for the
-- same campaign name, sender and key scope (journal.key_scope: test or live; a rotated key
-- keeps it, so the API, which scopes idempotency keys per account, still answers replays),
-- on any machine, whatever the file's bytes. chatmaid.core exposes HMAC-SHA256 only through
-- webhook_sign(body, key, t), which MACs t .. "." .. body: a fixed key and t = 0 make it a
-- plain keyed hash.
function _M.default_batch_id(campaign, from, api_key)
  return "csv-" .. core.webhook_sign(#campaign .. ":" .. campaign .. "\n" .. (from or "")
                                     .. "\n" .. journal.key_scope(api_key or ""),
                                     "chatmaid-cli-batch", 0):sub(1, 16)
end

-- campaign_name(a) -> name | nil, problem: --campaign, else the CSV file's name without
-- its directory and extension.
function _M.campaign_name(a)
  local name = a.campaign or a.file:match("([^/]*)$"):gsub("%.[^.]*$", "")
  if name == "" or #name > 64 or name:find("[%c/]") or name:sub(1, 1) == "." then
    return nil, "--campaign must be 1 to 64 characters, without '/', control characters or"
                .. " a leading '.' (got " .. string.format("%q", name) .. ")"
  end
  return name
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

local function exists(path)
  local f = io.open(path, "rb")
  if f then f:close() end
  return f ~= nil
end

-- journal_path(a, name) -> path, its new place | nil: --journal, else NAME.journal beside
-- the CSV file; nil with --no-journal. A journal where versions before 0.2 put it (the --out
-- file's path, else the CSV file's, with ".journal" appended; both are looked for, since the
-- --out of that run is not known) is used while NAME.journal does not exist: it holds that
-- campaign's batch id, so an upgrade never sends its rows again. Then the second value is
-- NAME.journal, where the caller moves it (so that a later run with another --out finds it).
function _M.journal_path(a, name)
  if a.no_journal then return nil end
  if a.journal then return a.journal end
  local path = (a.file:match("^(.*/)") or "") .. name .. ".journal"
  if exists(path) then return path end
  for _, old in ipairs{ a.out and a.out .. ".journal", a.file .. ".journal" } do
    if old and exists(old) then return old, path end
  end
  return path
end

-- move_journal(j, to, ctx): an older version's journal, held, renamed to its place now.
local function move_journal(j, to, ctx)
  if exists(to) then return end             -- appeared meanwhile: leave both alone
  local ok, err = os.rename(j.path, to)
  if not ok then
    ctx.stderr:write("chatmaid batch: could not move the journal ", j.path, " to ", to, ": ",
                     tostring(err), "; it is used where it is\n")
    return
  end
  ctx.stderr:write("chatmaid batch: moved the journal ", j.path, " to ", to,
                   " (its place since 0.2)\n")
  j.path = to
end

-- recorded_journal(a, name) -> path | nil: with --no-journal, the campaign's journal if it
-- exists. It is read (not written) for its batch id, which may not be derivable (--new, a
-- --batch-id of an earlier run, an older version's id): without it every row would be sent
-- again under another id.
function _M.recorded_journal(a, name)
  if not a.no_journal or a.batch_id then return nil end
  local path = _M.journal_path({ file = a.file, out = a.out, journal = a.journal }, name)
  return exists(path) and path or nil
end

local function count(t)
  local n = 0
  for _ in pairs(t) do n = n + 1 end
  return n
end

-- earlier(state) -> "the run of DATE (sent S, failed F)": what the journal remembers.
local function earlier(st)
  local failed = 0
  for k in pairs(st.failed) do if not st.confirmed[k] then failed = failed + 1 end end
  return string.format("%s of %s (sent %d, failed %d)", st.runs > 1 and "the runs" or "the run",
    st.last_at and os.date("!%Y-%m-%d %H:%M UTC", math.floor(st.last_at)) or "an unknown date",
    count(st.confirmed), failed)
end

-- shared(state, keys) -> rows of this list the journal knows, keys the journal knows
local function shared(st, keys)
  local known = {}
  for _, set in ipairs{ st.confirmed, st.launched, st.failed } do
    for k in pairs(set) do known[k] = true end
  end
  local n = 0
  for _, k in ipairs(keys) do if known[k] then n = n + 1 end end
  return n, count(known)
end

-- same_campaign(st, keys) -> true when this list continues the journal's campaign: more
-- than 2 in 3 of the smaller of (this list, the rows the journal knows) are in both. Edits of
-- a few rows, deletions and appended rows continue it; another list under the same name,
-- even one repeating some earlier rows, does not.
function _M.same_campaign(st, keys)
  local both, known = shared(st, keys)
  if known == 0 then return true end
  return both * 3 > math.min(#keys, known) * 2, both, known
end

-- resent(st, items, keys) -> rows of this list without a confirmed key whose message (same
-- recipient, text and media) the journal confirmed under another key, a sender it used.
-- Keys include --from as written: "ph_primary" one day and "+15551230001" (the same phone)
-- the next make other keys, and only this comparison sees that those rows were sent.
local function resent(st, items, keys)
  local sig = require("chatmaid.batch.plan").looks
  local sent, from = {}, nil
  for _, m in pairs(st.confirmed) do
    if type(m) == "table" then
      sent[sig(m.to, m.content, m.mediaUrls)] = true
      from = from or m.from
    end
  end
  local n = 0
  for i, it in ipairs(items) do
    if not st.confirmed[keys[i]] and sent[sig(it.to, it.content, it.media_urls)] then
      n = n + 1
    end
  end
  return n, from
end

-- other_destination(a, ctx, name, jpath, st, dest) -> true | nil, 2: a journal whose last
-- run sent elsewhere (the sandbox, then the real API; a test key, then a live one) confirms
-- rows that were never sent here: stop before sending, unless --continue says it is the same
-- place (--new moved it aside already).
local function other_destination(a, ctx, name, jpath, st, dest)
  if not (st and st.exists and st.dest) or st.dest == dest or a.continue then return true end
  ctx.stderr:write(string.format("chatmaid batch: campaign '%s': its journal (%s) records %s"
    .. " with %s; this run sends with %s, where those rows were never sent. Nothing was sent."
    .. " Run again with --new to send the campaign there as a new one (the journal is kept"
    .. " aside), with --continue if both are the same account and API (the rows the journal"
    .. " confirms are then skipped), or with --campaign OTHER.\n", name, jpath, earlier(st),
    st.dest, dest))
  return nil, 2
end

-- check_campaign(a, ctx, name, jpath, st, batch_id, items) -> true | nil, 2 (stopped: the
-- list is not this campaign's, or is its rows under other keys; nothing is sent)
local function check_campaign(a, ctx, name, jpath, st, batch_id, items)
  local keys = idempotency.keys(batch_id, items)
  local same, both, known = _M.same_campaign(st, keys)
  if same then return true end
  local again, from = resent(st, items, keys)
  if again * 3 > math.min(#items, known) * 2 then      -- --continue would send them twice
    ctx.stderr:write(string.format("chatmaid batch: campaign '%s': %d of this file's %d rows"
      .. " were already sent by %s to the same recipients with the same text, under other"
      .. " idempotency keys: --from is written differently from that run's (it sent from %s),"
      .. " or the rows' idempotency_key column changed. Nothing was sent. Run again with that"
      .. " run's --from to continue the campaign; --new%s sends every row again as a new"
      .. " campaign.\n", name, again, #items, earlier(st), tostring(from),
      a.no_journal and " (without --no-journal)" or ""))
    return nil, 2
  end
  if a.continue then return true end
  ctx.stderr:write(string.format("chatmaid batch: campaign '%s' already has a journal (%s)"
    .. " with %s; this file shares only %d of its %d rows with it. Nothing was sent."
    .. " Run again with --continue to send the rows not sent yet as part of that"
    .. " campaign, %s--new to start a new campaign named '%s', or with --campaign"
    .. " OTHER.\n", name, jpath, earlier(st), both, #items,
    a.no_journal and "without --no-journal and with " or "with ", name))
  return nil, 2
end

-- acquire(path, ctx) -> journal | nil, exit code: the journal taken (its lock before it is
-- read); another writer, a symlink or a file that is not a journal is exit 2.
local function acquire(path, ctx)
  local j, problem, kind = journal.acquire(path)
  if j then return j end
  if kind == "busy" then
    ctx.stderr:write("chatmaid batch: ", problem, ": another chatmaid batch is sending this"
                     .. " campaign; nothing was sent (wait for it, or kill it and run again)\n")
    return nil, 2
  end
  if kind == "open" then   -- e.g. the CSV's directory is read-only
    problem = problem .. " (pass --journal PATH to keep the journal where you can write, or"
              .. " --no-journal)"
  end
  return nil, ctx.usage("--journal: " .. problem)
end

-- start_new(path, st, ctx) -> journal | nil, code: --new keeps the earlier journal aside
-- (NAME.journal.<date of its last run>) and starts an empty one.
local function start_new(j, ctx)
  local st = j.state
  if not st.exists then return j end
  local aside = j.path .. "." .. os.date("!%Y%m%dT%H%M%SZ", math.floor(st.last_at or 0))
  local n, first = 1, aside
  while exists(aside) do n = n + 1; aside = first .. "-" .. n end   -- never over another
  local ok, err = os.rename(j.path, aside)
  j:close()
  if not ok then return nil, ctx.usage("--new: cannot keep the earlier journal: " .. err) end
  ctx.stderr:write("chatmaid batch: the earlier campaign's journal is now ", aside, "\n")
  return acquire(j.path, ctx)
end

-- send(c, items, opts) -> results, summary, interrupted_err | nil, err
-- SIGINT and SIGTERM stop the batch (within STOP_SLICE) instead of killing the process.
local function send(c, items, opts)
  opts.should_stop = function()               -- the flag commands.batch's watch sets
    local sig = core.signal_pending()
    return sig and ("SIG" .. sig) or nil
  end
  local results, summary = c:send_batch(items, opts)
  if results then return results, summary end
  local e = summary
  if errors.is(e) and e.kind == "interrupted" then return e.results, e.summary, e end
  return nil, e
end

-- campaign_journal(a, ctx, name) -> journal | false, path, written | nil, exit code
-- The campaign's journal, locked; written = false for one only read (--no-journal).
local function campaign_journal(a, ctx, name)
  if a.journal == "" then return nil, ctx.usage("--journal needs a file path") end
  if a.new and a.no_journal then
    return nil, ctx.usage("--new needs the journal: it alone records the new campaign's batch"
                          .. " id (without a journal, pass a new --batch-id or --campaign)")
  end
  local jpath, moved_to = _M.journal_path(a, name)
  local path = jpath or _M.recorded_journal(a, name)
  if not path then return false end
  local j, code = acquire(path, ctx)
  if j and moved_to then move_journal(j, moved_to, ctx) end
  if j and a.new then j, code = start_new(j, ctx) end
  if not j then return nil, code end
  return j, j.path, jpath ~= nil
end

-- identity(a, ctx, items) -> journal|false, batch_id | nil, exit code
-- The campaign's journal (locked), its batch id, and the check that this list is that
-- campaign (else exit 2 before anything is sent, unless --continue or --new).
local function identity(a, ctx, items)
  local name, nerr = _M.campaign_name(a)
  if not name then return nil, ctx.usage(nerr) end
  if a.continue and a.new then return nil, ctx.usage("--continue and --new: pick one") end
  local api_key = a.api_key or os.getenv("CHATMAID_API_KEY") or ""
  local derived = _M.default_batch_id(name, a.from, api_key)
  local j, jpath, written = campaign_journal(a, ctx, name)
  if j == nil then return nil, jpath end
  if a.new then   -- a new campaign under the name: a new id, kept by its journal
    derived = _M.default_batch_id(name .. "\n" .. string.format("%.6f", core.time()), a.from,
                                  api_key)
  end
  local st = j and j.state
  local dest = journal.destination(require("chatmaid.client").base_url_of(a.base_url),
                                   api_key)
  local same_place, dcode = other_destination(a, ctx, name, jpath, st, dest)
  if not same_place then
    if j then j:close() end
    return nil, dcode
  end
  if j and not written then j:close(); j = false end   -- --no-journal: its id only
  local resumed = not a.batch_id and st and st.batch_id
  local batch_id = a.batch_id or resumed or derived
  if #batch_id == 0 or #batch_id > MAX_BATCH_ID or batch_id:find("[^\33-\126]") then
    if j then j:close() end
    return nil, ctx.usage("--batch-id must be 1 to " .. MAX_BATCH_ID .. " printable ASCII"
                          .. " characters without spaces")
  end
  if resumed then
    local ok, code = check_campaign(a, ctx, name, jpath, st, batch_id, items)
    if not ok then
      if j then j:close() end
      return nil, code
    end
  end
  if resumed then
    ctx.stderr:write("batch ", batch_id, ": continuing campaign '", name, "' recorded in ",
                     jpath, " (", earlier(st), "; --new starts another)\n")
  end
  -- --continue at another destination: send_batch takes this journal as this place's (its
  -- header for this run then records it); nothing is written before a request can leave
  if j then st.dest = dest end
  return j, batch_id
end

-- records(rows, bad, results, why) -> the JSON-lines records in line order, failed lines
local function records(rows, bad, results, why)
  local lines, failed_lines = {}, {}
  for _, b in ipairs(bad) do lines[#lines + 1] = b end
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
      if res.err.maybe_sent then rec.maybe_sent = true end
    else
      local e = res.err or { kind = "transport", message = "no result" }
      rec.error = { kind = e.kind, message = e.message }
    end
    lines[#lines + 1] = rec
  end
  table.sort(lines, function(x, y) return x.line < y.line end)
  for _, rec in ipairs(lines) do
    if rec.error and rec.error.kind ~= "interrupted" then
      failed_lines[#failed_lines + 1] = rec.line
    end
  end
  return lines, failed_lines
end

local function summary_line(batch_id, summary, failed_lines, n, elapsed, stopped, why)
  local list = {}
  for i = 1, math.min(#failed_lines, 10) do list[i] = tostring(failed_lines[i]) end
  if #failed_lines > 10 then list[#list + 1] = "..." end
  return string.format(
    "batch %s: sent %d, replayed %d, skipped %d, failed %d%s, %d rows in %.1f s%s; %d %s"
    .. " already sent by an earlier run\n",
    batch_id, summary.sent, summary.replayed, summary.skipped, #failed_lines,
    #failed_lines > 0 and (" (line" .. (#failed_lines > 1 and "s " or " ")
                          .. table.concat(list, ", ") .. ")") or "",
    n, elapsed,
    stopped and ("; interrupted (" .. why .. "): " .. summary.interrupted
                 .. " rows not sent, run the same command again to continue") or "",
    summary.skipped + summary.replayed,
    summary.skipped + summary.replayed == 1 and "row was" or "rows were")
end

local function shared_limiter(a, ctx)
  if not a.redis then return nil end
  if a.rate == 0 then
    return nil, ctx.usage("--redis shares the rate limit: not with --rate 0")
  end
  local found, redis = pcall(require("chatmaid.options").require_rock, "chatmaid.redis",
                             "chatmaid-redis", "--redis")
  if not found then return nil, ctx.usage(tostring(redis)) end
  -- a 0.5 s command timeout: Ctrl-C is seen within 1 s even while Redis does not answer
  local ok, lim = pcall(redis.rate_limiter, { url = a.redis, per_minute = a.rate or 100,
    key = redis.key_id(a.api_key or os.getenv("CHATMAID_API_KEY") or ""), timeout = 0.5 })
  if not ok then
    return nil, ctx.usage("--redis: " .. tostring(lim):gsub("^[^\n]-:%d+: ", ""))
  end
  return lim
end

-- absolute(path) -> the path from /, without "." segments or doubled slashes. Symbolic
-- links and ".." are not resolved: enough to catch the same file named two ways by a slip.
local function absolute(p)
  if p:sub(1, 1) ~= "/" then p = (os.getenv("PWD") or ".") .. "/" .. p end
  local prev
  repeat prev = p; p = p:gsub("/%./", "/"):gsub("//+", "/") until p == prev
  return (p:gsub("/%.$", ""))
end

-- out_clash(a) -> what --out would overwrite (it is truncated before sending): the CSV file
-- or the campaign's journal; nil when it is neither.
local function out_clash(a)
  if not a.out then return nil end
  local out = absolute(a.out)
  if out == absolute(a.file) then return "the CSV file" end
  local name = _M.campaign_name(a)
  local jp = name and _M.journal_path({ file = a.file, out = a.out, journal = a.journal }, name)
  if jp and out == absolute(jp) then return "the campaign's journal" end
end

local function run(a, ctx)
  local bad_from = a.from and (a.from:sub(1, 1) == "+" and validate.e164(a.from, "--from")
                               or validate.id(a.from, "--from"))
  if bad_from then return ctx.usage(bad_from) end     -- else every row would fail with it
  local clash = out_clash(a)
  if clash then
    return ctx.usage("--out " .. a.out .. " is " .. clash .. ": the results would replace it;"
                     .. " give another file")
  end
  local text, rerr = read_file(a.file)
  if not text then return ctx.usage("cannot read " .. rerr) end
  local herr, rows, bad = _M.rows(text)
  if herr then return ctx.usage(a.file .. ": " .. herr) end
  if #rows + #bad == 0 then return ctx.usage(a.file .. ": no data rows after the header") end
  local items = {}
  for i, r in ipairs(rows) do
    local it = r.item
    it.from = a.from      -- the key of a row without its own comes from the batch id + row
    items[i] = it
  end
  local j, batch_id = identity(a, ctx, items)
  if not j and j ~= false then return batch_id end          -- batch_id: the exit code
  local function bail(code)
    if j then j:close() end
    return code
  end
  local sig = core.signal_pending()     -- Ctrl-C while reading the file or the journal
  if sig then
    ctx.stderr:write("chatmaid batch: interrupted (SIG", sig, ") before sending; nothing was"
                     .. " sent\n")
    return bail(_M.SIGNAL_EXIT[sig])
  end
  local limiter, lcode = shared_limiter(a, ctx)
  if lcode then return bail(lcode) end
  local out = ctx.stdout
  if a.out then
    local f, oerr = io.open(a.out, "wb")
    if not f then return bail(ctx.usage("cannot write " .. oerr)) end
    out = f
  end
  local c, code = ctx.client()
  if not c then return bail(code) end
  if type(c.send_batch) ~= "function" then
    return bail(ctx.fail("chatmaid: this version of the library has no client:send_batch"))
  end
  local now = core.monotime
  local t0 = now()
  local rate = a.rate          -- 0 turns the limiter off: false, not 0 ("x and false or y"
  if rate == 0 then rate = false end   -- would give 0 back)
  -- the ETA follows the limit the batch is paced by (send_batch's default when no --rate)
  local bar = progress.new{ total = #items, tty = ctx.tty_err, stream = ctx.stderr, now = now,
    rate_per_minute = rate ~= false and (rate or require("chatmaid.batch").DEFAULT_RATE_PER_MINUTE)
                      or nil }
  local results, summary, stopped = send(c, items, {
    concurrency = a.concurrency or 8, batch_id = batch_id, journal = j or nil,
    rate_per_minute = rate, rate_limiter = limiter,
    on_progress = function(done, _, result) bar:update(done, result) end,
  })
  bar:finish()
  local jok, jerr = true, nil
  if j then jok, jerr = j:close() end
  if not results then return ctx.fail(summary) end
  local why = stopped and (stopped.reason == "stop" and tostring(stopped.cause) or "an error")
  local lines, failed_lines = records(rows, bad, results, why)
  for _, rec in ipairs(lines) do out:write(output.json(rec), "\n") end
  if out ~= ctx.stdout then out:close() else out:flush() end
  ctx.stderr:write(summary_line(batch_id, summary, failed_lines, #lines, now() - t0, stopped,
                                why))
  if stopped and stopped.reason == "journal" then
    ctx.stderr:write(output.one_line(tostring(stopped)), "\n")
  elseif not jok then
    ctx.stderr:write("chatmaid batch: ", jerr, "\n")
    return 1
  end
  if stopped then
    local caught = stopped.reason == "stop" and tostring(stopped.cause):match("^SIG(%u+)$")
    return _M.SIGNAL_EXIT[caught] or 1
  end
  return #failed_lines == 0 and 0 or 1
end

-- SIGINT and SIGTERM are watched from the start (reading a big file, taking the journal),
-- not only while sending: Lua's own handler would end the run with an "internal error".
function _M.commands.batch(a, ctx)
  core.signal_watch{ "INT", "TERM" }
  local ok, code = pcall(run, a, ctx)
  core.signal_restore()
  if not ok then error(code, 0) end           -- a programmer error: raised again
  return code
end

return _M
