-- SPDX-License-Identifier: MIT
-- The conversations Messages API (/api/whatsapp/...): conversations and contacts made on
-- the first send to a number, typed messages, cursor pagination and its error shapes
-- ({success:false, error, details?}), plus the /__sandbox/conversations/ control routes.
local json = require("chatmaid.sandbox.json")
local util = require("chatmaid.sandbox.util")
local R = require("chatmaid.sandbox.responses")

local _M = {}

-- Recipients that make the (emulated) WhatsApp Cloud API refuse a send with a 502.
-- config.whatsapp_errors = { ["+1555..."] = { code = n, title = "..." } } adds more.
_M.WHATSAPP_ERRORS = {
  ["+15550131047"] = { code = 131047, title = "Re-engagement message" },
  ["+15550131000"] = { code = 131000, title = "Something went wrong" },
  ["+15550131026"] = { code = 131026, title = "Message undeliverable" },
}
-- A recipient that is not on WhatsApp: the API answers 404 "Contact not found".
_M.UNKNOWN_CONTACT = "+15550000404"

local MEDIA = { image = true, document = true, audio = true, video = true }
local SEND_TYPES = { text = true, template = true, image = true, document = true,
  audio = true, video = true, location = true }
local MIME = { jpg = "image/jpeg", jpeg = "image/jpeg", png = "image/png", webp = "image/webp",
  pdf = "application/pdf", ogg = "audio/ogg", mp3 = "audio/mpeg", mp4 = "video/mp4",
  txt = "text/plain" }

local function nn(v) if v == json.null then return nil end return v end

local function fail(status, message, details)
  local body = json.obj("success", false, "error", message)
  if details then
    json.set(body, "details", json.obj("code", details.code, "title", details.title))
  end
  return R.new(status, json.encode(body))
end

-- State lives beside the store and is dropped whenever the store is reset.
local function state(app)
  local s = app.conversations_state
  if not s or s.generation ~= app.store.generation then
    s = { generation = app.store.generation, contacts = {}, conversations = {},
      by_id = {}, messages = {} }
    app.conversations_state = s
  end
  return s
end

local function new_id(prefix, taken)
  local id
  repeat id = prefix .. util.hex(12) until not taken[id]
  return id
end

local function conversation_for(s, phone)
  local contact = s.contacts[phone]
  if not contact then
    contact = { id = new_id("contact_", s.by_id), phone = phone }
    s.by_id[contact.id] = contact
    s.contacts[phone] = contact
  end
  local conv = contact.conversation
  if not conv then
    conv = { id = new_id("conv_", s.by_id), contact = contact, messages = {} }
    s.by_id[conv.id] = conv
    s.conversations[conv.id] = conv
    contact.conversation = conv
  end
  return conv
end

-- timestamp: nil for "now" (strictly increasing), false for none (the field is left out),
-- or a string used as given (the seed route makes ties with it).
local function add_message(app, s, conv, direction, mtype, content, status, timestamp)
  if timestamp == nil then timestamp = util.iso(app.store:next_ms()) end
  local m = {
    id = new_id("msg_", s.messages), waMessageId = "wamid." .. util.hex(24),
    conversation = conv, direction = direction, type = mtype, content = content,
    status = status, timestamp = timestamp or nil,
    senderId = direction == "inbound" and conv.contact.id or nil,
  }
  s.messages[m.id] = m
  conv.messages[#conv.messages + 1] = m
  m.pos = #conv.messages          -- list order is insertion order, whatever the timestamps
  return m
end

local function public(m)
  return json.obj("id", m.id, "waMessageId", m.waMessageId, "conversationId", m.conversation.id,
    "direction", m.direction, "type", m.type, "content", m.content, "status", m.status,
    "timestamp", m.timestamp, "senderId", m.senderId or json.null)
end

local function authenticate(app, req)
  local h = req.headers["authorization"]
  if not h or h:match("^%s*$") then return nil, "Missing API key" end
  local token = util.bearer(h)
  if not token or not app.store:key(token) then return nil, "Invalid API key" end
  return token
end

local function mime_of(u)
  local ext = (u:match("%.(%w+)$") or ""):lower()
  return MIME[ext] or "application/octet-stream"
end

-- Returns the stored content for a send body, or nil, "problem".
local function content_of(b)
  local t = b.type
  if t == "text" then
    if type(b.text) ~= "string" or b.text == "" then return nil, "Missing required field: text" end
    return json.obj("text", b.text)
  elseif t == "template" then
    local tp = nn(b.template)
    if type(tp) ~= "table" then return nil, "Missing required field: template" end
    if type(tp.name) ~= "string" or tp.name == "" then
      return nil, "Missing required field: template.name"
    end
    if type(tp.language) ~= "string" or tp.language == "" then
      return nil, "Missing required field: template.language"
    end
    return json.obj("name", tp.name, "language", tp.language, "components", nn(tp.components))
  elseif MEDIA[t] then
    local m = nn(b[t])
    if type(m) ~= "table" then return nil, "Missing required field: " .. t end
    if type(m.url) ~= "string" or m.url == "" then
      return nil, "Missing required field: " .. t .. ".url"
    end
    if not m.url:match("^https://") then return nil, t .. ".url must be an https URL" end
    return json.obj("url", m.url, "mimeType", mime_of(m.url), "caption", nn(m.caption),
      "filename", nn(m.filename))
  elseif t == "location" then
    local l = nn(b.location)
    if type(l) ~= "table" then return nil, "Missing required field: location" end
    for _, k in ipairs{ "latitude", "longitude" } do
      if type(l[k]) ~= "number" then return nil, "Missing required field: location." .. k end
    end
    if l.latitude < -90 or l.latitude > 90 or l.longitude < -180 or l.longitude > 180 then
      return nil, "location coordinates out of range"
    end
    return json.obj("latitude", l.latitude, "longitude", l.longitude, "name", nn(l.name),
      "address", nn(l.address))
  end
  return nil, "Unsupported message type: " .. tostring(t)
end

local function send(app, req)
  -- a JSON body is read only under Content-Type application/json (as on the /v1 API)
  local b = {}
  if util.media_type(req.headers["content-type"]) == "application/json" then
    b = json.decode(req.body or "")
  end
  if type(b) ~= "table" then return fail(400, "Request body must be a JSON object") end
  local to = nn(b.to)
  if to == nil or to == "" then return fail(400, "Missing required field: to") end
  if type(to) ~= "string" or not to:match("^%+[1-9]%d%d+$") or #to > 16 then
    return fail(400, "Invalid phone number: to must be in E.164 format")
  end
  if nn(b.type) == nil then return fail(400, "Missing required field: type") end
  if not SEND_TYPES[b.type] then
    return fail(400, "Unsupported message type: " .. tostring(b.type))
  end
  local content, problem = content_of(b)
  if not content then return fail(400, problem) end
  if to == _M.UNKNOWN_CONTACT then
    return fail(404, "Contact not found for the given phone number")
  end
  local extra = app.config.whatsapp_errors
  local wa = (type(extra) == "table" and nn(extra[to])) or _M.WHATSAPP_ERRORS[to]
  -- a template is the one message that may reopen a closed customer service window
  if wa and not (b.type == "template" and tonumber(wa.code) == 131047) then
    return fail(502, "WhatsApp API error: Message failed to send",
      { code = wa.code, title = wa.title })
  end
  local s = state(app)
  local conv = conversation_for(s, to)
  local m = add_message(app, s, conv, "outbound", b.type, content, "sent")
  return R.ok(200, json.obj("vendorMessageId", m.waMessageId, "waMessageId", m.id,
    "status", m.status, "conversationId", conv.id, "contactId", conv.contact.id))
end

-- GET /api/whatsapp/messages?conversationId=&limit=&before=  Each page holds the newest
-- `limit` messages older than `before` (a message id of that conversation; none: the newest
-- messages), in ascending time order within the page as the contract's example shows, or
-- newest first when config.conversations_page_order is "desc". "Older" is insertion order,
-- so ties and missing timestamps page the same way. config.conversations_has_next = false
-- leaves hasNext out (a client must then stop on a short or an empty page).
local function list(app, req)
  local q = req.query
  local cid = q.conversationId
  if cid == nil or cid == "" then
    return fail(400, "Missing required query parameter: conversationId")
  end
  local limit = 50
  if q.limit ~= nil then
    limit = tonumber(q.limit)
    if not limit or limit ~= math.floor(limit) or limit < 1 or limit > 100 then
      return fail(400, "limit must be an integer between 1 and 100")
    end
  end
  local s = state(app)
  local conv = s.conversations[cid]
  if not conv then return fail(404, "Conversation not found") end
  local msgs = conv.messages
  local newest = #msgs                  -- index of the newest message of the page
  if q.before ~= nil and q.before ~= "" then
    local m = s.messages[q.before]
    if not m or m.conversation ~= conv then
      return fail(400, "Invalid cursor: message " .. q.before .. " is not in this conversation")
    end
    newest = m.pos - 1
  end
  local oldest = math.max(1, newest - limit + 1)
  local out = {}
  if app.config.conversations_page_order == "desc" then
    for i = newest, oldest, -1 do out[#out + 1] = public(msgs[i]) end
  else
    for i = oldest, newest do out[#out + 1] = public(msgs[i]) end
  end
  local seen = #msgs - newest
  local has_next = newest - #out > 0
  if app.config.conversations_has_next == false then has_next = nil end
  return R.new(200, json.encode(json.obj("data", json.arr(out), "total", #msgs,
    "page", math.floor(seen / limit) + 1, "hasNext", has_next)))
end

-- handle(app, req) -> response for /api/whatsapp/...
function _M.handle(app, req)
  local route
  local method = req.method == "HEAD" and "GET" or req.method   -- HEAD: the GET route
  if method == "GET" and req.path == "/api/whatsapp/messages" then route = list
  elseif req.method == "POST" and req.path == "/api/whatsapp/messages/send" then route = send
  else return fail(404, "Cannot " .. req.method .. " " .. req.path) end
  local key, why = authenticate(app, req)
  if not key then return fail(401, why) end
  local wait = app.store:rate_check(key)
  if wait then
    return fail(429, string.format("Rate limit exceeded. Try again in %d seconds.", wait))
  end
  return route(app, req)
end

-- Inbound content per type (an unknown type such as "sticker" gets a plausible shape).
local function sample(t, i)
  local n = string.format("%03d", i)
  if t == "text" then return json.obj("text", "Inbound message " .. i) end
  if t == "image" then
    return json.obj("url", "https://cdn.example.com/media/img_" .. n .. ".jpg",
      "mimeType", "image/jpeg", "caption", "Photo " .. i)
  elseif t == "document" then
    return json.obj("url", "https://cdn.example.com/media/doc_" .. n .. ".pdf",
      "mimeType", "application/pdf", "filename", "invoice_" .. n .. ".pdf")
  elseif t == "audio" then
    return json.obj("url", "https://cdn.example.com/media/audio_" .. n .. ".ogg",
      "mimeType", "audio/ogg")
  elseif t == "video" then
    return json.obj("url", "https://cdn.example.com/media/video_" .. n .. ".mp4",
      "mimeType", "video/mp4", "caption", "Video " .. i)
  elseif t == "location" then
    return json.obj("latitude", 25.2048, "longitude", 55.2708, "name", "Dubai Mall",
      "address", "Financial Centre Rd, Dubai")
  end
  return json.obj("url", "https://cdn.example.com/media/" .. t .. "_" .. n .. ".webp",
    "mimeType", "image/webp", "animated", false)
end

-- POST /__sandbox/conversations/seed {conversationId?, to?, count?, types?, direction?,
-- tie?, timestamps?} -> {conversationId, contactId, ids}: count messages cycling through
-- types (default text). tie = k: each run of k messages shares one timestamp; timestamps =
-- false: the messages carry no timestamp field. The list order stays insertion order.
local function seed(app, req)
  local b = json.decode(req.body ~= "" and req.body or "{}")
  if type(b) ~= "table" then return R.error(400, "body must be a JSON object", req.path) end
  local s = state(app)
  local conv
  if nn(b.conversationId) then
    conv = s.conversations[b.conversationId]
    if not conv then return R.error(404, "Conversation not found", req.path) end
  else
    conv = conversation_for(s, nn(b.to) or "+15550000001")
  end
  local types = type(nn(b.types)) == "table" and #b.types > 0 and b.types or { "text" }
  local direction = nn(b.direction) or "inbound"
  local tie = tonumber(nn(b.tie)) or 1
  if tie < 1 or tie ~= math.floor(tie) then
    return R.error(400, "tie must be a positive integer", req.path)
  end
  local ids, ts = {}, nil
  local count, bad = require("chatmaid.sandbox.control").seed_count(b.count, req.path)
  if not count then return bad end
  for i = 1, count do
    local t = types[(i - 1) % #types + 1]
    if b.timestamps == false then ts = false
    elseif (i - 1) % tie == 0 then ts = util.iso(app.store:next_ms()) end
    local m = add_message(app, s, conv, direction, t, sample(t, i),
      direction == "inbound" and "delivered" or "sent", ts)
    ids[i] = m.id
  end
  return R.ok(201, json.obj("conversationId", conv.id, "contactId", conv.contact.id,
    "ids", json.arr(ids)))
end

-- control(app, req, p) -> response for /__sandbox/conversations/... (p: path after /__sandbox)
function _M.control(app, req, p)
  if req.method == "POST" and p == "/conversations/seed" then return seed(app, req) end
  return R.error(404, "Cannot " .. req.method .. " " .. req.path, req.path)
end

return _M
