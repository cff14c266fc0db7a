-- SPDX-License-Identifier: MIT
-- nginx terminating TLS in front of a sandbox, with a fresh self-signed certificate for
-- 127.0.0.1 and kept-alive client connections.
--   local front = assert(require("spec.support.tls_front").start(sb.port))
--   front.url ("https://127.0.0.1:N"), front.cert (the PEM to trust), front.dir; front.stop()
-- start() -> front | nil, why (no nginx, no openssl, did not start)
local socket = require "socket"

local _M = {}

local function sh(cmd)
  local ok = os.execute(cmd)
  return ok == true or ok == 0
end

local CONF = [[
daemon off; master_process off; worker_processes 1;
error_log DIR/error.log; pid DIR/nginx.pid;
events { worker_connections 256; }
http {
  access_log off;
  client_body_temp_path DIR/tmp; proxy_temp_path DIR/tmp; fastcgi_temp_path DIR/tmp;
  uwsgi_temp_path DIR/tmp; scgi_temp_path DIR/tmp;
  upstream sandbox { server 127.0.0.1:SBPORT; keepalive 16; }
  server {
    listen 127.0.0.1:PORT ssl;
    ssl_certificate DIR/cert.pem; ssl_certificate_key DIR/key.pem;
    keepalive_timeout 60s; keepalive_requests 10000;
    location / {
      proxy_pass http://sandbox; proxy_http_version 1.1; proxy_set_header Connection "";
    }
  }
}
]]

function _M.start(sb_port)
  local nginx = sh("test -x /usr/sbin/nginx") and "/usr/sbin/nginx"
                or (sh("command -v nginx >/dev/null 2>&1") and "nginx")
  if not nginx then return nil, "no nginx" end
  local dir = os.tmpname()
  os.remove(dir)
  if not sh("mkdir -p " .. dir .. "/tmp") then return nil, "mkdir failed" end
  if not sh("openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj /CN=127.0.0.1 "
            .. "-addext subjectAltName=IP:127.0.0.1 -keyout " .. dir .. "/key.pem -out "
            .. dir .. "/cert.pem >/dev/null 2>&1") then
    sh("rm -rf " .. dir)
    return nil, "openssl req failed"
  end
  local s = assert(socket.bind("127.0.0.1", 0))
  local port = select(2, s:getsockname())
  s:close()
  local f = assert(io.open(dir .. "/nginx.conf", "w"))
  f:write((CONF:gsub("DIR", dir):gsub("SBPORT", tostring(sb_port))
               :gsub("PORT", tostring(port))))
  f:close()
  -- env -u LD_PRELOAD: under make asan the sanitizer runtimes are preloaded for busted;
  -- nginx is only scenery here.
  local p = assert(io.popen("env -u LD_PRELOAD " .. nginx .. " -p " .. dir .. " -c " .. dir
                            .. "/nginx.conf -e " .. dir .. "/error.log >/dev/null 2>&1 & echo $!"))
  local pid = p:read("*l")
  p:close()
  local front = { url = "https://127.0.0.1:" .. port, cert = dir .. "/cert.pem", dir = dir }
  function front.stop()
    sh("kill " .. pid .. " 2>/dev/null")
    sh("rm -rf " .. dir)
  end
  for _ = 1, 100 do
    local c = socket.connect("127.0.0.1", port)
    if c then
      c:close()
      return front
    end
    socket.sleep(0.05)
  end
  front.stop()
  return nil, "nginx did not start"
end

return _M
