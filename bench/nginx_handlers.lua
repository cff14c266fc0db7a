-- SPDX-License-Identifier: MIT
-- The two handlers of the nginx row (bench/nginx_front.conf.in), each answering one incoming
-- request with one send to the stub:
--   sdk():  the default client, one per worker, made on first use and reused (the pattern
--           of examples/openresty/notify.lua, without its rate limiter)
--   base(): the plain cosocket baseline: the same POST over ngx.socket.tcp with a keepalive
--           pool of the same size, the answer decoded with cjson
local chatmaid = require "chatmaid"
local cjson = require "cjson"

local ngx = ngx   -- luacheck: ignore (nginx global)

local _M = {}
local KEY = "sk_test_bench_0000000000000001"
local STUB = os.getenv("BENCH_STUB")           -- http://127.0.0.1:port
local POOL = 256                               -- the client's default keepalive_pool

local client
function _M.sdk()
  if not client then
    client = assert(chatmaid.new{ api_key = KEY, base_url = STUB })
  end
  local msg, err = client:send{ from = "ph_primary", to = "+15557654321",
                                content = "Hello from the bench" }
  if not msg then
    ngx.status = 502
    ngx.say(err.kind)
    return
  end
  ngx.say("sent ", msg.id)
end

-- tr(): the transport alone (no client layer), to split the cost when profiling
local tr, treq
function _M.tr()
  if not tr then
    tr = require("chatmaid.resty.transport").new{}
    treq = { method = "POST", url = STUB .. "/v1/messages/send",
             headers = { "Authorization: Bearer " .. KEY, "Accept: application/json",
                         "Content-Type: application/json" },
             body = cjson.encode{ from = "ph_primary", to = "+15557654321",
                                  content = "Hello from the bench" } }
  end
  local res, kind = tr:request(treq)
  if not res then ngx.status = 502 ngx.say(kind) return end
  ngx.say("sent ", cjson.decode(res.body).data.id)
end

local host, port = STUB:match("^http://([^:/]+):(%d+)")
port = tonumber(port)
local body = cjson.encode{ from = "ph_primary", to = "+15557654321",
                           content = "Hello from the bench" }
local request = "POST /v1/messages/send HTTP/1.1\r\nHost: " .. host .. ":" .. port
  .. "\r\nAuthorization: Bearer " .. KEY .. "\r\nAccept: application/json\r\n"
  .. "Content-Type: application/json\r\nContent-Length: " .. #body .. "\r\n\r\n" .. body

local function fail(sock, why)
  sock:close()
  ngx.status = 502
  ngx.say(why)
end

function _M.base()
  local sock = ngx.socket.tcp()
  sock:settimeouts(10000, 30000, 30000)
  local ok, err = sock:connect(host, port, { pool_size = POOL })
  if not ok then return fail(sock, err) end
  ok, err = sock:send(request)
  if not ok then return fail(sock, err) end
  local line
  line, err = sock:receive("*l")
  if not line then return fail(sock, err) end
  local len
  while true do
    local h
    h, err = sock:receive("*l")
    if not h then return fail(sock, err) end
    if h == "" then break end
    local v = h:match("^[Cc]ontent%-[Ll]ength:%s*(%d+)")
    if v then len = tonumber(v) end
  end
  local data
  data, err = sock:receive(len)
  if not data then return fail(sock, err) end
  local msg = cjson.decode(data)
  sock:setkeepalive(60000, POOL)
  ngx.say("sent ", msg.data.id)
end

return _M
