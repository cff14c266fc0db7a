-- SPDX-License-Identifier: MIT

--- Webhook signatures, events and duplicates (docs/webhooks.md).
-- Webhook signatures (parsed, MAC'd and compared in C by chatmaid.core), events, and a
-- bounded memory of handled deliveries. This file only shapes arguments and messages.
-- @module chatmaid.webhook
local core = require "chatmaid.core"
local errors = require "chatmaid.errors"


local _M = {
  DEFAULT_TOLERANCE = 300,   -- seconds, both ways; never 0 (see STYLE.md, webhooks)
  MAX_HEADER = 8192,         -- same cap as csrc/webhook_core.h
  MAX_SECRETS = 16,
  DEFAULT_LEASE = 30,        -- seconds a claim holds a delivery (both seen sets)
  DONE_TRIES = 3,            -- attempts to mark a handled delivery done (handle_once)
  DONE_BACKOFF = 0.1,        -- seconds before the second attempt, doubled for each next
}

local type, tostring, pairs, floor = type, tostring, pairs, math.floor

local function fail(reason, message, fields)
  fields = fields or {}
  fields.reason = reason
  return nil, errors.new("signature", message, fields)
end

-- secret -> array copy of non-empty strings; raises at `level` on misuse.
-- The one-element list for the last string secret is reused: the C core only reads it,
-- and it saves a table per delivery on the hot path.
local last_secret, last_list

local function check_secrets(fname, secret, level)
  if type(secret) == "string" then
    if secret == last_secret then return last_list end
    if secret == "" then error(fname .. ": secret must not be empty", level) end
    last_secret, last_list = secret, { secret }
    return last_list
  end
  local list = {}
  if type(secret) ~= "table" or #secret == 0 then
    error(fname .. ": secret must be a non-empty string or a non-empty array of non-empty"
          .. " strings (got " .. (type(secret) == "table" and "empty table" or type(secret))
          .. ")", level)
  end
  if #secret > _M.MAX_SECRETS then
    error(fname .. ": at most " .. _M.MAX_SECRETS .. " secrets (got " .. #secret .. ")", level)
  end
  for i = 1, #secret do
    local s = secret[i]
    if type(s) ~= "string" or s == "" then
      error(fname .. ": secret[" .. i .. "] must be a non-empty string (got "
            .. (s == "" and "empty string" or type(s)) .. ")", level)
    end
    list[i] = s
  end
  return list
end

local function check_body(fname, raw_body, level)
  if type(raw_body) ~= "string" then
    local msg = fname .. ": raw_body must be the exact request body string (got "
                .. type(raw_body) .. ")"
    if type(raw_body) == "table" then
      msg = msg .. ": do not decode the JSON before verifying"
    end
    error(msg, level)
  end
end

-- opts -> tolerance, now (copied, never mutated); raises at `level` on misuse.
local function check_opts(fname, opts, level)
  if opts == nil then return _M.DEFAULT_TOLERANCE, os.time(), nil end
  if type(opts) ~= "table" then
    error(fname .. ": opts must be a table (got " .. type(opts) .. ")", level)
  end
  for k in pairs(opts) do
    if k ~= "tolerance" and k ~= "now" and k ~= "secret_name" then
      error(fname .. ": unknown option '" .. tostring(k) .. "'", level)
    end
  end
  local tolerance, now = opts.tolerance, opts.now
  if tolerance == nil then
    tolerance = _M.DEFAULT_TOLERANCE
  elseif type(tolerance) ~= "number" or tolerance ~= tolerance or tolerance <= 0 then
    error(fname .. ": opts.tolerance must be a positive number of seconds (got "
          .. tostring(tolerance) .. ")", level)
  end
  if now == nil then
    now = os.time()
  elseif type(now) ~= "number" or now ~= now then
    error(fname .. ": opts.now must be a unix time in seconds (got " .. tostring(now) .. ")", level)
  end
  if opts.secret_name ~= nil and type(opts.secret_name) ~= "string" then
    error(fname .. ": opts.secret_name must be a string (got " .. type(opts.secret_name) .. ")",
          level)
  end
  return tolerance, now, opts.secret_name
end

local function has_edge_space(s)
  return s:find("^%s") ~= nil or s:find("%s$") ~= nil
end

-- Why the C parser said malformed_header, for the message only (the verdict is C's).
local function malformed_detail(header)
  if header == nil or header == "" then
    return "the X-Chatmaid-Signature header is missing or empty"
  end
  if #header > _M.MAX_HEADER then
    return "the header is " .. #header .. " bytes, over the " .. _M.MAX_HEADER .. "-byte limit"
  end
  local n, t_seen, i = 0, false, 1
  while true do
    local comma = header:find(",", i, true)
    local part = header:sub(i, (comma or #header + 1) - 1)
    n = n + 1
    part = part:gsub("^[ \t\r\n]+", ""):gsub("[ \t\r\n]+$", "")
    local k, v = part:match("^([^=]+)=(.*)$")
    if not k then return "part " .. n .. " is not key=value" end
    if k == "t" then
      if t_seen then return "t appears more than once" end
      t_seen = true
      if not v:find("^%d+$") or #v > 15 then
        return "t is not a unix time in seconds (1 to 15 digits)"
      end
    end
    if not comma then break end
    i = comma + 1
  end
  if not t_seen then return "t is missing" end
  return "it does not parse"
end

local function trimmed(list)
  local out = {}
  for i = 1, #list do out[i] = list[i]:gsub("^%s+", ""):gsub("%s+$", "") end
  return out
end

-- secret_name: where the secret came from, for the message (never the secret itself)
local function mismatch_message(raw_body, header, secrets, tolerance, now, secret_name)
  local spaced = {}
  for i = 1, #secrets do
    if has_edge_space(secrets[i]) then spaced[#spaced + 1] = "#" .. i end
  end
  -- the two causes, the likelier first: another secret than the sender's, or altered bytes
  local msg = "no signature matches the payload: "
              .. (#secrets == 1 and "the secret (" .. secret_name .. ") may not be the one"
                  or "the " .. #secrets .. " secrets (" .. secret_name .. ") may all differ from"
                  .. " the one")
              .. " the sender signs with, or the body is not the exact raw request body (pass"
              .. " the bytes received, not a parsed or re-encoded table)"
  if #spaced > 0 then
    msg = msg .. "; secret " .. table.concat(spaced, ", ") .. " has leading or trailing"
          .. " whitespace (a newline from a file or an environment variable?)"
    local clean = trimmed(secrets)
    local ok_clean = true
    for i = 1, #clean do if clean[i] == "" then ok_clean = false end end
    if ok_clean and core.webhook_verify(raw_body, header, clean, tolerance, now) then
      msg = msg .. ", and the signature matches once it is stripped"
    end
  else
    msg = msg .. ", and check the secret has no surrounding whitespace"
  end
  if header:find("v1=[ \t]*%x*[A-F]") then
    msg = msg .. "; a v1 value has uppercase hex, but signatures are lowercase hex"
  end
  if raw_body == "" then
    msg = msg .. "; the body is empty: read it in full (Content-Length bytes)"
  end
  return msg
end

-- webhook.verify(raw_body, signature_header, secret, opts) -> true | nil, err
-- raw_body: the exact request bytes; secret: string or array (rotation); opts.tolerance
-- (seconds, default 300, both ways), opts.now (unix time), opts.secret_name (where the
-- secret comes from, named in a mismatch message: "CHATMAID_WEBHOOK_SECRET"; never the secret
-- itself; default "the secret argument of webhook.verify"). err.kind == "signature",
-- err.reason: malformed_header | no_signature | timestamp_out_of_tolerance | mismatch.
local function verify(fname, raw_body, header, secret, opts)
  -- levels: 4 = the caller of webhook.verify/construct_event (no tail calls below)
  check_body(fname, raw_body, 4)
  if header ~= nil and type(header) ~= "string" then
    error(fname .. ": signature_header must be a string or nil (got " .. type(header)
          .. "): pass the X-Chatmaid-Signature header value", 3)
  end
  local secrets = check_secrets(fname, secret, 4)
  local tolerance, now, secret_name = check_opts(fname, opts, 4)
  local ok, reason, t = core.webhook_verify(raw_body, header or "", secrets, tolerance, now)
  if ok then return true end
  if reason == "malformed_header" then
    return fail(reason, "malformed signature header: " .. malformed_detail(header)
                .. " (expected \"t=<unix seconds>,v1=<hex>\")")
  elseif reason == "no_signature" then
    return fail(reason, "header has no v1 signature (other schemes such as v0 are ignored)",
                { timestamp = t })
  elseif reason == "timestamp_out_of_tolerance" then
    local skew = now - t
    local secs = skew < 0 and -skew or skew
    secs = secs == floor(secs) and string.format("%d", secs) or string.format("%.3f", secs)
    return fail(reason, "timestamp is " .. secs .. " s in the "
                .. (skew >= 0 and "past" or "future") .. " (tolerance " .. tolerance
                .. " s): check the server clock or a replayed delivery",
                { timestamp = t, skew = skew, tolerance = tolerance })
  end
  return fail(reason, mismatch_message(raw_body, header, secrets, tolerance, now,
                                       secret_name or ("the secret argument of " .. fname)),
              { timestamp = t })
end

--- Verify a delivery's signature.
-- @tparam string raw_body the exact request bytes
-- @tparam ?string signature_header the X-Chatmaid-Signature value
-- @tparam string|table secret the secret, or an array of secrets while rotating
-- @tparam[opt] table opts tolerance (300 s, both ways), now (unix time, for tests)
-- @treturn ?boolean true, or nil
-- @treturn ?table err of kind "signature" (err.reason) when nil
-- @raise when raw_body is not a string (a decoded table), or on a bad secret or option
function _M.verify(raw_body, signature_header, secret, opts)
  local ok, err = verify("webhook.verify", raw_body, signature_header, secret, opts)
  return ok, err
end

--- Verify a delivery, then decode its event.
-- webhook.construct_event(raw_body, signature_header, secret, opts) -> event | nil, err
-- verify(), then decode the JSON object (nulls dropped): event.event, event.timestamp,
-- event.data.messageId, ... Adds err.reason "invalid_payload" (verified, not an object).
-- @tparam string raw_body the exact request bytes
-- @tparam ?string signature_header the X-Chatmaid-Signature value
-- @tparam string|table secret the secret, or an array of secrets
-- @tparam[opt] table opts as for verify
-- @treturn ?table the event (event, timestamp, data), or nil
-- @treturn ?table err of kind "signature" when nil
-- @raise as verify
function _M.construct_event(raw_body, signature_header, secret, opts)
  local ok, err = verify("webhook.construct_event", raw_body, signature_header, secret, opts)
  if not ok then return nil, err end
  -- decoded like API responses: nulls dropped, arrays marked, integral numbers as integers
  local event, why = core.decode_json(raw_body)
  if not event then
    local detail = why:match("^invalid JSON: (.*)$")
    return fail("invalid_payload", detail
                and ("the signature is valid, but the payload is not valid JSON: " .. detail)
                or "the signature is valid, but the payload is not a JSON object")
  end
  return event
end

--- Make a signature header (for tests and tools).
-- webhook.sign(raw_body, secret, timestamp) -> "t=<timestamp>,v1=<hex>" (one v1 per secret)
-- For tests and local tools; timestamp defaults to os.time().
-- @tparam string raw_body the body
-- @tparam string|table secret the secret(s)
-- @tparam[opt] number timestamp unix seconds (now)
-- @treturn string "t=<timestamp>,v1=<hex>"
-- @raise on arguments of the wrong type
function _M.sign(raw_body, secret, timestamp)
  check_body("webhook.sign", raw_body, 3)
  local secrets = check_secrets("webhook.sign", secret, 3)
  if timestamp == nil then timestamp = os.time() end
  if type(timestamp) ~= "number" or timestamp ~= floor(timestamp) or timestamp < 0
     or timestamp > 999999999999999 then
    error("webhook.sign: timestamp must be a non-negative integer unix time (got "
          .. tostring(timestamp) .. ")", 2)
  end
  local t = string.format("%d", timestamp)
  local parts = { "t=" .. t }
  for i = 1, #secrets do
    parts[i + 1] = "v1=" .. core.webhook_sign(raw_body, secrets[i], timestamp)
  end
  return table.concat(parts, ",")
end

local function key_part(v)
  if type(v) ~= "string" and type(v) ~= "number" and type(v) ~= "boolean" then return "" end
  return (tostring(v):gsub("[%%|]", function(c) return string.format("%%%02X", c:byte()) end))
end

--- The key that identifies a delivery across retries.
-- webhook.dedupe_key(event) -> "<event>|<id>|<status>|<timestamp>"
-- The payload has no event id. id is data.messageId (message.*) or the phone's id
-- (data.phoneNumberId, data.phoneId, data.id, data.phoneNumber); status is data.status or
-- data.connectionStatus. Retried deliveries resend the same payload, so they share a key;
-- message.sent and a later message.failed for one message do not. '|' and '%' in a field
-- are %-escaped, so distinct events cannot collide by embedding the separator.
-- @tparam table event a decoded event
-- @treturn string "<event>|<id>|<status>|<timestamp>"
-- @raise when event is not a table
function _M.dedupe_key(event)
  if type(event) ~= "table" then
    error("webhook.dedupe_key: event must be the table from construct_event (got "
          .. type(event) .. ")", 2)
  end
  local data = type(event.data) == "table" and event.data or {}
  local id = data.messageId or data.phoneNumberId or data.phoneId or data.id
             or data.phoneNumber
  local status = data.status or data.connectionStatus
  return key_part(event.event) .. "|" .. key_part(id) .. "|" .. key_part(status) .. "|"
         .. key_part(event.timestamp)
end

-- Seen set: at most `size` keys, each forgotten `ttl` seconds after it was added. A doubly
-- linked list in insertion order gives O(1) eviction of the oldest key.
local Seen = {}
local seen_mt = { __index = Seen }

local function check_key(fname, key)
  if type(key) ~= "string" and type(key) ~= "number" then
    error(fname .. ": key must be a string or a number (got " .. type(key) .. ")", 3)
  end
end

local function unlink(s, node)
  if node.prev then node.prev.next = node.next else s.head = node.next end
  if node.next then node.next.prev = node.prev else s.tail = node.prev end
  node.prev, node.next = nil, nil
end

local function append(s, node)
  node.prev = s.tail
  if s.tail then s.tail.next = node else s.head = node end
  s.tail = node
end

local function drop(s, node)
  unlink(s, node)
  s.map[node.key] = nil
  s.n = s.n - 1
end

--- A bounded in-process set of seen delivery keys.
-- webhook.seen_set{ size = 10000, ttl = 86400, now = os.time } -> set
-- @tparam[opt] table opts size (10000), ttl (86400 s), now (os.time)
-- @treturn table the set (has, add, seen, count)
-- @raise on a bad option
function _M.seen_set(opts)
  if opts == nil then opts = {} end
  if type(opts) ~= "table" then
    error("webhook.seen_set: opts must be a table (got " .. type(opts) .. ")", 2)
  end
  for k in pairs(opts) do
    if k ~= "size" and k ~= "ttl" and k ~= "now" then
      error("webhook.seen_set: unknown option '" .. tostring(k) .. "'", 2)
    end
  end
  local size, ttl, now = opts.size or 10000, opts.ttl or 86400, opts.now or os.time
  if type(size) ~= "number" or size < 1 or size ~= floor(size) then
    error("webhook.seen_set: size must be a positive integer (got " .. tostring(size) .. ")", 2)
  end
  if type(ttl) ~= "number" or ttl ~= ttl or ttl <= 0 then
    error("webhook.seen_set: ttl must be a positive number of seconds (got "
          .. tostring(ttl) .. ")", 2)
  end
  if type(now) ~= "function" then
    error("webhook.seen_set: now must be a function (got " .. type(now) .. ")", 2)
  end
  return setmetatable({ size = size, ttl = ttl, now = now, map = {}, n = 0 }, seen_mt)
end

--- Whether key was added less than ttl seconds ago.
-- set:has(key) -> true if key was added less than ttl seconds ago (and not evicted)
-- @tparam string key a dedupe key
-- @treturn boolean
function Seen:has(key)
  check_key("seen_set:has", key)
  local node = self.map[key]
  return node ~= nil and node.expires > self.now()
end

--- Record key (re-adding refreshes its age).
-- set:add(key) -> set. Re-adding refreshes the key's age.
-- @tparam string key a dedupe key
-- @treturn table the set
function Seen:add(key)
  check_key("seen_set:add", key)
  local t = self.now()
  while self.head and self.head.expires <= t do drop(self, self.head) end
  local node = self.map[key]
  if node then
    unlink(self, node)
  else
    node = { key = key }
    self.map[key] = node
    self.n = self.n + 1
  end
  node.expires = t + self.ttl
  append(self, node)
  while self.n > self.size do drop(self, self.head) end
  return self
end

--- Check and record in one step.
-- set:seen(key) -> true if already seen; otherwise records it and returns false.
-- @tparam string key a dedupe key
-- @treturn boolean true if already seen; otherwise records it and returns false
function Seen:seen(key)
  check_key("seen_set:seen", key)
  if self:has(key) then return true end
  self:add(key)
  return false
end

-- set.held counts the entries of set.claims, live or expired (a sweep leaves live ones).
-- A claim whose handler never came back (a handler stuck forever, a done and a release
-- both lost) would stay in the table for good: once the claims outnumber `size`, expired
-- ones are dropped. The next sweep waits until twice the live ones, so a set holding more
-- than `size` live claims sweeps in amortised O(1) per claim, not O(n).
local function sweep_claims(self, now)
  local live = 0
  for k, c in pairs(self.claims) do
    if c.expires <= now then self.claims[k] = nil else live = live + 1 end
  end
  self.held = live
  self.sweep_at = math.max(self.size, 2 * live)
end

local function forget_claim(self, key)
  if self.claims and self.claims[key] then
    self.claims[key] = nil
    self.held = self.held - 1
  end
end

--- Claim a delivery while its handler runs (phase one of two).
-- The two-phase claim, as chatmaid.redis.seen_set's (DESIGN.md, "Webhook claims"): a
-- delivery is claimed for `lease` seconds while its handler runs and remembered only once
-- the handler returned, so a handler that fails lets the redelivery through.
-- set:claim(key [, lease = 30]) -> token | false, "done" | false, "busy"
-- @tparam string key a dedupe key
-- @tparam[opt=30] number lease seconds the claim holds the delivery
-- @treturn string|boolean a token (yours: run the handler), or false
-- @treturn[opt] string with false: "done" (answer 200, duplicate) or "busy" (answer 503)
function Seen:claim(key, lease)
  check_key("seen_set:claim", key)
  if self:has(key) then return false, "done" end
  local now = self.now()
  self.claims = self.claims or {}
  local c = self.claims[key]
  if c and c.expires > now then return false, "busy" end
  if not c then
    self.held = (self.held or 0) + 1
    if self.held > (self.sweep_at or self.size) then sweep_claims(self, now) end
  end
  self.n_claims = (self.n_claims or 0) + 1
  local token = tostring(self.n_claims)
  self.claims[key] = { token = token, expires = now + (lease or _M.DEFAULT_LEASE) }
  return token
end


--- Mark a claimed delivery handled (phase two).
-- set:done(key, token) -> true: the handler returned; the key is remembered (add).
-- @tparam string key a dedupe key
-- @tparam string token what claim returned
-- @treturn boolean true
function Seen:done(key, token)
  check_key("seen_set:done", key)
  forget_claim(self, key)
  self:add(key)
  return token ~= nil
end

--- Drop a claim: the handler failed, let a redelivery through now.
-- set:release(key, token) -> true | false (no longer ours)
-- @tparam string key a dedupe key
-- @tparam string token what claim returned
-- @treturn boolean true if the claim was this token's and is gone
function Seen:release(key, token)
  check_key("seen_set:release", key)
  local c = self.claims and self.claims[key]
  if not c or c.token ~= token then return false end
  forget_claim(self, key)
  return true
end

-- mark_done(set, key, token, claimed_at) -> true | nil, err: set:done(key, token) after the
-- handler ran; a failure (a stalled or restarting Redis) is tried again, DONE_TRIES times in
-- all with a doubling backoff, while the claim's lease lasts (the set's lease from
-- claimed_at, core.monotime() taken before the claim):
-- until then the claim itself keeps redeliveries out. err (kind of the last failure, its
-- reason, err.handled = true, err.cause) says the event was handled but not marked.
-- Never raises for a failed mark. (handle_once, and chatmaid.resty's receive_webhook.)
function _M._mark_done(set, key, token, claimed_at)
  local lease_end = claimed_at + (set.lease or _M.DEFAULT_LEASE)
  local wait, cause = _M.DONE_BACKOFF, nil
  for try = 1, _M.DONE_TRIES do
    local ok, err = set:done(key, token)
    if ok then return true end
    cause = err
    if try == _M.DONE_TRIES or core.monotime() + wait >= lease_end then break end
    local sleep = set.sleep or core.sleep   -- the Redis set's: through the scheduler in a task
    sleep(wait)
    wait = wait * 2
  end
  local kind = errors.is(cause) and cause.kind or "transport"
  return nil, errors.new(kind, "the handler ran, but marking the delivery done failed ("
    .. (cause and tostring(cause.message or cause) or "done() returned false")
    .. "): a redelivery after the claim's lease would run the handler again; log it, and "
    .. "answer 2xx all the same (the event was handled)",
    { reason = errors.is(cause) and cause.reason or nil, cause = cause, handled = true,
      key = key })
end

--- Run a handler at most once per delivery: claim, fn(...), done.
-- webhook.handle_once(set, key, fn, ...) -> "handled" | "handled", err | "duplicate" | "busy"
-- | nil, err
-- If fn raises, the claim is released and the error raised again. When fn returned but the
-- set fails to mark the delivery done (Redis stalled or down), done is tried again while the
-- claim's lease lasts (DONE_TRIES attempts); if it still fails the result is "handled", err:
-- the event was handled, so answer 2xx (never 5xx: the API would deliver it again and the
-- handler run twice), and log err (err.handled is true, err.reason says why). Until the mark
-- lands, a redelivery after the lease runs the handler again. Never raises for a failed mark.
-- @tparam table set a webhook.seen_set or a chatmaid.redis.seen_set (its `handle`)
-- @tparam string key a dedupe key (webhook.dedupe_key(event))
-- @tparam function fn the handler, called with the remaining arguments
-- @param ... arguments for fn
-- @treturn string "handled", "duplicate" (done before) or "busy" (claimed elsewhere)
-- @treturn ?table with "handled": err when the delivery could not be marked done (log it)
-- @return[2] nil
-- @treturn[2] table err (a Redis set that failed to claim: answer 503)
function _M.handle_once(set, key, fn, ...)
  if type(fn) ~= "function" then
    error("seen_set:handle: fn must be a function (got " .. type(fn) .. ")", 3)
  end
  local claimed_at = core.monotime()
  local token, why = set:claim(key)
  if token == nil then return nil, why end
  if not token then return why == "done" and "duplicate" or "busy" end
  local ok, e = pcall(fn, ...)
  if not ok then
    set:release(key, token)
    error(e, 0)
  end
  local marked, merr = _M._mark_done(set, key, token, claimed_at)
  if not marked then return "handled", merr end
  return "handled"
end

--- Claim, run fn(...), mark done: webhook.handle_once(set, key, fn, ...).
-- @tparam string key a dedupe key
-- @tparam function fn the handler
-- @param ... arguments for fn
-- @treturn string "handled", "duplicate" or "busy"
-- @treturn ?table with "handled": err when the delivery could not be marked done (log it)
function Seen:handle(key, fn, ...)
  local r, err = _M.handle_once(self, key, fn, ...)
  return r, err
end

--- The number of keys held.
-- set:count() -> number of keys held (expired ones are dropped lazily, on add)
-- @treturn number
function Seen:count()
  return self.n
end

return _M
