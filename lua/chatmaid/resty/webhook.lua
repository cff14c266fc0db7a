-- SPDX-License-Identifier: MIT

--- The webhook receiver inside nginx (chatmaid.resty.receive_webhook).
-- Webhook receiver for OpenResty: reads the raw body (also when nginx buffered it to a
-- temporary file), verifies it with chatmaid.webhook, drops duplicates across workers in a
-- lua_shared_dict, and answers the sender before the handler does its slow work.
-- @module chatmaid.resty.webhook
local webhook = require "chatmaid.webhook"
local core = require "chatmaid.core"
local errors = require "chatmaid.errors"
local options = require "chatmaid.options"

local ngx = ngx   -- luacheck: ignore (nginx global)

local _M = { DEFAULT_DEDUPE_TTL = 86400, DEFAULT_MAX_BODY = 1024 * 1024 }

local OPTS = { secret = true, shared_dict = "string", redis = true, tolerance = "number",
               dedupe_ttl = "number", max_body = "number", respond = "boolean",
               handler = "function" }

-- redis = "redis://..." -> one chatmaid.redis seen_set per URL and ttl in this worker (its
-- connections are pooled by the cosocket client, not held here).
local seen_sets = {}
local function redis_set(spec, ttl)
  if type(spec) == "table" then
    if type(spec.seen) ~= "function" then
      error("chatmaid.resty.receive_webhook: option 'redis' must be a redis:// URL or a "
            .. "chatmaid.redis.seen_set", 3)
    end
    return spec
  end
  if type(spec) ~= "string" then
    error("chatmaid.resty.receive_webhook: option 'redis' must be a redis:// URL or a "
          .. "chatmaid.redis.seen_set (got " .. type(spec) .. ")", 3)
  end
  local id = spec .. "\0" .. ttl
  local set = seen_sets[id]
  if not set then
    set = options.require_rock("chatmaid.redis", "chatmaid-redis",
      "chatmaid.resty.receive_webhook's redis option", 3).seen_set{ url = spec, ttl = ttl,
                                                                    prefix = "chatmaid:webhook:" }
    seen_sets[id] = set
  end
  return set
end

local function answer(status, body)
  ngx.status = status
  ngx.header["Content-Type"] = "application/json"
  ngx.header["Cache-Control"] = "no-store"
  ngx.say(body)
  ngx.eof()   -- the sender has its answer now; the handler may keep working
end

-- Redis could not be asked: 503, the API delivers again later.
local function unavailable(o, err)
  err.status = 503
  if o.respond then
    ngx.header["Retry-After"] = "30"
    answer(503, '{"received":false,"error":"dedupe_unavailable"}')
  end
  return nil, err
end

local function duplicate(o, event)
  if o.respond then answer(200, '{"received":true,"duplicate":true}') end
  return nil, "duplicate", event
end

local function reject(o, status, kind, message, fields)
  fields = fields or {}
  fields.status = status
  local err = errors.new(kind, message, fields)
  if o.respond then
    answer(status, '{"received":false,"error":"' .. (fields.reason or kind) .. '"}')
  end
  return nil, err
end

-- The exact request bytes, at most max_body of them: in memory, or in nginx's temporary file
-- when the body was larger than client_body_buffer_size (get_body_data() is nil then).
-- -> body | nil, "too_large", size | nil, message
-- A chunked body has no Content-Length to check first, and nginx spools all of it to the
-- file (as much as client_max_body_size allows, which may be 0: no limit). The file's size
-- is checked before anything is read, so max_body bounds the worker's Lua memory whatever
-- the client sends.
local function raw_body(max_body)
  ngx.req.read_body()
  local data = ngx.req.get_body_data()
  if data then
    if #data > max_body then return nil, "too_large", #data end
    return data
  end
  local file = ngx.req.get_body_file()
  if not file then return "" end
  local f, ferr = io.open(file, "rb")
  if not f then return nil, ferr end
  local size = f:seek("end")
  if not size then
    f:close()
    return nil, "cannot seek in the body file"
  end
  if size > max_body then
    f:close()
    return nil, "too_large", size
  end
  f:seek("set", 0)
  local s = f:read(size) or ""
  f:close()
  return s
end

--- Read, verify, dedupe and answer one webhook delivery.
-- receive_webhook(opts) -> event | nil, err | nil, "duplicate", event
-- opts: secret (string or array, rotation), shared_dict (name of a lua_shared_dict: drop
-- repeated deliveries across workers; without it nothing is deduplicated), redis (a
-- redis:// URL or a chatmaid.redis.seen_set: drop repeated deliveries across machines;
-- while Redis is unreachable the delivery is answered 503 and returned as nil, err of kind
-- "transport", so the API delivers it again later; a seen_set made with fail = "open"
-- hands it over instead), tolerance
-- (seconds, default 300), dedupe_ttl (seconds a delivery is remembered, default 86400),
-- max_body (bytes, default 1 MiB), respond (default true), handler (fn(event), run before
-- the answer: see "Webhook claims" below).
-- With respond, the answer is sent and the response finished (ngx.eof) before returning:
--   event               200 {"received":true}; new, verified delivery; do the work now
--   nil, "duplicate", e 200; already received (any worker) within dedupe_ttl: skip it
--   nil, err            err.kind "signature" (401: bad, missing, stale or replayed
--                       signature; 400 for invalid_payload), or "validation" (405 not POST,
--                       400 repeated X-Chatmaid-Signature header, 413 body over max_body);
--                       err.status is the status answered.
--   nil, "in_progress", e  503 with Retry-After (redis only): a live claim, another worker
--                       is handling it now; the API delivers again later.
-- Webhook claims (redis): the delivery is claimed with a short lease (the seen_set's, 30 s
-- by default), then marked done; a claim whose command timed out on a stalled Redis only
-- holds redeliveries until its lease ends, never marks the event handled. A done that fails
-- after the 200 is tried again while the lease lasts, then logged (ngx.ERR). With handler,
-- handler(event) runs between the claim and the answer: done and 200 when it returns; if
-- it raises, the claim is released, 500 is answered (the API delivers again) and the error
-- raised again. Without handler the delivery is marked done when it is answered 200 (with
-- respond = false: when it is returned) and the work is yours.
-- Runs in rewrite/access/content phases. Raises on programmer errors (bad options, unknown
-- shared_dict).
-- @tparam table opts secret (required), shared_dict or redis, tolerance, dedupe_ttl,
--   max_body, respond, handler
-- @treturn[1] table the event
-- @return[2] nil
-- @treturn[2] string|table "duplicate", "in_progress" or err
-- @treturn[2] ?table the event (duplicate, in_progress)
-- @raise on a bad option or an unknown lua_shared_dict
function _M.receive_webhook(opts)
  options.check("chatmaid.resty.receive_webhook", opts, OPTS)
  local o = {}
  for k, v in pairs(opts) do o[k] = v end
  if o.secret == nil then error("chatmaid.resty.receive_webhook: secret is required", 2) end
  if o.shared_dict and o.redis then
    error("chatmaid.resty.receive_webhook: give shared_dict or redis, not both", 2)
  end
  local dict
  if o.shared_dict then
    dict = ngx.shared[o.shared_dict]
    if not dict then
      error("chatmaid.resty.receive_webhook: no lua_shared_dict named '" .. o.shared_dict
            .. "' (add `lua_shared_dict " .. o.shared_dict .. " 1m;` to the http block)", 2)
    end
  end
  local seen = o.redis and redis_set(o.redis, o.dedupe_ttl or _M.DEFAULT_DEDUPE_TTL)
  if o.respond == nil then o.respond = true end
  local max_body = o.max_body or _M.DEFAULT_MAX_BODY

  if ngx.req.get_method() ~= "POST" then
    if o.respond then ngx.header["Allow"] = "POST" end
    return reject(o, 405, "validation", "webhooks are delivered with POST")
  end
  local headers = ngx.req.get_headers(0)
  local sig = headers["x-chatmaid-signature"]
  if type(sig) == "table" then
    return reject(o, 400, "validation", "the X-Chatmaid-Signature header appears "
                  .. #sig .. " times: a delivery carries exactly one",
                  { reason = "repeated_header" })
  end
  local declared = tonumber(headers["content-length"] or "")
  if declared and declared > max_body then
    return reject(o, 413, "validation", "body of " .. declared .. " bytes is over max_body ("
                  .. max_body .. ")", { reason = "too_large" })
  end
  local body, rerr, size = raw_body(max_body)
  if rerr == "too_large" then
    return reject(o, 413, "validation", "body of " .. size .. " bytes is over max_body ("
                  .. max_body .. ")", { reason = "too_large" })
  end
  if not body then
    return reject(o, 500, "validation", "could not read the buffered request body: "
                  .. tostring(rerr), { reason = "body_unreadable" })
  end

  local event, err = webhook.construct_event(body, sig, o.secret,
    { tolerance = o.tolerance, now = ngx.time(),
      secret_name = "the secret option of chatmaid.resty.receive_webhook" })
  if not event then
    err.status = err.reason == "invalid_payload" and 400 or 401
    if o.respond then
      answer(err.status, '{"received":false,"error":"' .. tostring(err.reason) .. '"}')
    end
    return nil, err
  end

  local dict_key
  if dict then
    local key = "wh:" .. webhook.dedupe_key(event)
    dict_key = key
    -- add() is atomic across workers: exactly one of two concurrent deliveries wins.
    local ok, aerr = dict:add(key, true, o.dedupe_ttl or _M.DEFAULT_DEDUPE_TTL)
    if not ok and aerr == "exists" then
      return duplicate(o, event)
    elseif not ok then
      -- dict full even after evicting: better a rare double than a lost delivery
      ngx.log(ngx.WARN, "chatmaid: webhook dedupe dict '", o.shared_dict, "': ", aerr)
    end
  end
  local claim
  if seen and seen.claim then
    -- two-phase claim in Redis: exactly one of concurrent deliveries on any machine wins
    local key = webhook.dedupe_key(event)
    local claimed_at = core.monotime()
    local token, state = seen:claim(key)
    if token == nil then
      return unavailable(o, state)
    elseif not token and state == "done" then
      return duplicate(o, event)
    elseif not token then
      if o.respond then
        ngx.header["Retry-After"] = "5"
        answer(503, '{"received":false,"error":"in_progress"}')
      end
      return nil, "in_progress", event
    end
    claim = { key = key, token = token, claimed_at = claimed_at }
  elseif seen then
    -- a seen_set-like object without claim(): SET NX EX, one phase
    local dup, serr = seen:seen(webhook.dedupe_key(event))
    if dup == nil then
      return unavailable(o, serr)
    elseif dup then
      return duplicate(o, event)
    end
  end
  if o.handler then
    local ok, herr = pcall(o.handler, event)
    if not ok then
      if claim then seen:release(claim.key, claim.token) end
      if dict_key then dict:delete(dict_key) end   -- let the redelivery through
      if o.respond then answer(500, '{"received":false,"error":"handler_failed"}') end
      error(herr, 0)
    end
  end
  if o.respond then answer(200, '{"received":true}') end
  -- after the answer: tried again while the lease lasts; if the mark still fails, the event
  -- was handled all the same (a redelivery after the lease would run it again): logged
  if claim then
    local marked, merr = webhook._mark_done(seen, claim.key, claim.token, claim.claimed_at)
    if not marked then ngx.log(ngx.ERR, "chatmaid: webhook ", claim.key, ": ", tostring(merr)) end
  end
  return event
end

return _M
