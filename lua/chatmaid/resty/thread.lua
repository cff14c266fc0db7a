-- SPDX-License-Identifier: MIT
-- Runs in nginx's thread pool (ngx.run_worker_thread), in a Lua VM of its own, off the event
-- loop: there a blocking libcurl call stalls only that pool thread. Each thread VM keeps its
-- sessions (and so its kept-alive connections) between tasks; nginx hands a VM to one task
-- at a time, so a session is never used by two threads at once.
local core = require "chatmaid.core"

local _M = {}

local sessions = {}   -- option signature -> core.session, per thread VM

local KEYS = { "timeout_ms", "connect_timeout_ms", "ca_file", "proxy", "max_body",
               "http_version" }

local function signature(o)
  local parts = {}
  for i, k in ipairs(KEYS) do parts[i] = tostring(o[k]) end
  return table.concat(parts, "\0")
end

-- request(sopts, method, url, headers, body, timeout_ms, fresh_connect)
-- -> status, body, raw_header_block | nil, kind, message, curlcode
-- Only strings, numbers, booleans, nil and plain tables cross run_worker_thread, so the
-- header block travels as a string and is parsed in the worker VM when read.
function _M.request(sopts, method, url, headers, body, timeout_ms, fresh_connect)
  local key = signature(sopts)
  local s = sessions[key]
  if not s then
    local o = { raw_headers = true }
    for _, k in ipairs(KEYS) do o[k] = sopts[k] end
    s = core.session(o)
    sessions[key] = s
  end
  return s:request(method, url, headers, body, timeout_ms, fresh_connect)
end

-- stats() -> { connects, requests } of this thread VM's sessions (for specs).
function _M.stats()
  local t = { connects = 0, requests = 0, sessions = 0 }
  for _, s in pairs(sessions) do
    local st = s:stats()
    t.connects, t.requests = t.connects + st.connects, t.requests + st.requests
    t.sessions = t.sessions + 1
  end
  return t
end

return _M
