-- SPDX-License-Identifier: MIT
-- A plain-Lua Chatmaid webhook receiver on LuaSocket: reads the raw body by Content-Length,
-- verifies it, claims it (a delivery already handled is answered "duplicate"), handles the
-- event (keep that quick, or queue it) and answers 2xx; a handler that fails answers 500 and
-- the API delivers again.
--   CHATMAID_WEBHOOK_SECRET=whsec_... lua5.4 examples/webhook_receiver.lua --port 9000
-- Several receivers (machines) behind a load balancer: add --redis redis://host:6379/0 and
-- they share one memory of handled deliveries (chatmaid.redis.seen_set's two-phase claim:
-- --lease seconds a claim holds a delivery, --redis-timeout seconds per Redis command).
-- Rotation: put several secrets in CHATMAID_WEBHOOK_SECRET, separated by commas.
local socket = require "socket"
local webhook = require "chatmaid.webhook"

local MAX_BODY = 1024 * 1024
local MAX_HEADER_LINES = 100

local function parse_args(argv)
  local port, path, redis_url = 9000, "/webhooks/chatmaid", nil
  local o = { lease = 30, timeout = 1 }
  local i = 1
  while argv[i] do
    if argv[i] == "--lease" or argv[i] == "--redis-timeout" then
      local v = tonumber(argv[i + 1])
      if not v or v <= 0 then io.stderr:write(argv[i], " needs seconds\n"); os.exit(2) end
      o[argv[i] == "--lease" and "lease" or "timeout"] = v; i = i + 2
    elseif argv[i] == "--port" then
      port = tonumber(argv[i + 1]); i = i + 2
    elseif argv[i] == "--path" then
      path = argv[i + 1]; i = i + 2
    elseif argv[i] == "--redis" then
      redis_url = argv[i + 1]; i = i + 2
    else
      io.stderr:write("usage: webhook_receiver.lua [--port N] [--path /webhooks/chatmaid]"
                      .. " [--redis redis://host:6379/0 [--lease S] [--redis-timeout S]]\n")
      os.exit(2)
    end
  end
  if not port then io.stderr:write("--port needs a number\n"); os.exit(2) end
  return port, path, redis_url, o
end

local function load_secrets()
  local env = os.getenv("CHATMAID_WEBHOOK_SECRET")
  if not env or env == "" then
    io.stderr:write("set CHATMAID_WEBHOOK_SECRET to the endpoint's signing secret\n")
    os.exit(2)
  end
  local secrets = {}
  -- strip the newline a secrets file or `export X=$(cat ...)` may leave behind
  for s in env:gmatch("[^,]+") do secrets[#secrets + 1] = s:match("^%s*(.-)%s*$") end
  return secrets
end

-- -> method, path, headers (lowercase names), body | nil, http status, reason
local function read_request(client)
  local line, err = client:receive("*l")
  if not line then return nil, nil, err end
  local method, target = line:match("^(%u+) (%S+) HTTP/1%.[01]$")
  if not method then return nil, 400, "bad request line" end
  local headers = {}
  for _ = 1, MAX_HEADER_LINES do
    local h = client:receive("*l")
    if not h then return nil, 400, "truncated headers" end
    if h == "" then
      local len = tonumber(headers["content-length"] or "")
      if not len or len < 0 or len ~= math.floor(len) then
        return nil, 411, "Content-Length required"
      end
      if len > MAX_BODY then return nil, 413, "body too large" end
      -- The exact bytes: never re-read through a JSON decoder before verifying.
      local body = len > 0 and client:receive(len) or ""
      if not body then return nil, 400, "truncated body" end
      return method, target, headers, body
    end
    local name, value = h:match("^([^:]+):%s*(.-)%s*$")
    if name then headers[name:lower()] = value end
  end
  return nil, 431, "too many header lines"
end

local function respond(client, status, text)
  local reasons = { [200] = "OK", [400] = "Bad Request", [404] = "Not Found",
                    [405] = "Method Not Allowed", [411] = "Length Required",
                    [413] = "Payload Too Large", [431] = "Request Header Fields Too Large",
                    [500] = "Internal Server Error", [503] = "Service Unavailable" }
  client:send(("HTTP/1.1 %d %s\r\nContent-Type: text/plain\r\nContent-Length: %d\r\n%s"
               .. "Connection: close\r\n\r\n%s"):format(status, reasons[status] or "Error",
               #text, status == 503 and "Retry-After: 5\r\n" or "", text))
end

-- Your business logic goes here. It runs before the 2xx is sent: keep it quick (or queue the
-- event); if it raises, the delivery is answered 500 and the API delivers it again.
local function handle(event)
  local d = event.data or {}
  print(("%s %s %s"):format(event.event, tostring(d.messageId or d.phoneNumberId or "-"),
                            tostring(d.status or d.connectionStatus or "-")))
end

local function main(argv)
  local port, hook_path, redis_url, o = parse_args(argv)
  local secrets = load_secrets()
  local seen = redis_url and require("chatmaid.redis").seen_set{ url = redis_url, ttl = 86400,
                                                                 lease = o.lease,
                                                                 timeout = o.timeout }
               or webhook.seen_set{ size = 10000, ttl = 86400 }
  local server = assert(socket.bind("127.0.0.1", port))
  print(("listening on http://127.0.0.1:%d%s"):format(port, hook_path))
  io.stdout:flush()
  while true do
    local client = server:accept()
    if client then
      client:settimeout(5)   -- a slow client must not hold the loop for long
      local method, target, headers, body = read_request(client)
      if not method then
        if target then respond(client, target, tostring(headers) .. "\n") end
      elseif target ~= hook_path then
        respond(client, 404, "not found\n")
      elseif method ~= "POST" then
        respond(client, 405, "POST only\n")
      else
        local event, err = webhook.construct_event(body, headers["x-chatmaid-signature"], secrets,
                                                   { secret_name = "CHATMAID_WEBHOOK_SECRET" })
        if not event then
          io.stderr:write(tostring(err), "\n")     -- never contains the secret
          respond(client, 400, err.reason .. "\n")
        else
          -- two phases: claim (a short lease), handle, then done; a failed handler releases
          local key = webhook.dedupe_key(event)
          local token, state = seen:claim(key, o.lease)
          if token == nil then                       -- Redis unreachable: let the API retry
            io.stderr:write(tostring(state), "\n")
            respond(client, 503, "try again later\n")
          elseif not token then                      -- done: a retry of something handled;
            respond(client, state == "done" and 200 or 503,   -- busy: handled elsewhere now
                    state == "done" and "duplicate\n" or "in progress, try again later\n")
          else
            local ok, herr = pcall(handle, event)
            if ok then
              -- if Redis fails here the event was handled all the same: 200, and say so (a
              -- redelivery after the claim's lease would run the handler again)
              local marked, merr = seen:done(key, token)
              if not marked then io.stderr:write("not marked done: ", tostring(merr), "\n") end
              respond(client, 200, "ok\n")
            else
              io.stderr:write("handler failed: ", tostring(herr), "\n")
              seen:release(key, token)
              respond(client, 500, "handler failed\n")
            end
          end
        end
      end
      client:close()
      io.stdout:flush()
    end
  end
end

main(arg or {})
