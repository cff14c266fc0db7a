-- SPDX-License-Identifier: MIT
-- A one-file HTTP responder for specs that need bytes the sandbox does not produce (gzip
-- bodies): a child process that answers every request on a connection with the same raw
-- response read from a file. local srv = raw_server.start(path_to_response); srv:stop()
-- With a second argument (a file name) it appends each request line it receives to that
-- file, exactly as it came off the wire: srv:requests() reads them back.
-- It is a raw_script server (spec.support.raw_script) with a fixed script: same child
-- process, start and stop.
local raw_script = require "spec.support.raw_script"

local _M = setmetatable({}, { __index = raw_script })
local mt = { __index = _M }

-- Every request on the connection gets the response file's bytes, until the peer closes.
local SCRIPT = [=[
local f = assert(io.open(%q, "rb")) local resp = f:read("*a") f:close()
local log = %s
while true do
  local line = read()
  if not line then break end
  if log then
    local lf = assert(io.open(log, "ab")) lf:write(line, "\n") lf:close()
  end
  c:send(resp)
end
]=]

function _M.start(response_file, log_file)
  local srv = raw_script.start(SCRIPT:format(response_file,
                                             log_file and ("%q"):format(log_file) or "nil"))
  srv.log_file = log_file
  return setmetatable(srv, mt)
end

-- The request lines received so far (needs a log file given to start).
function _M:requests()
  local out = {}
  local f = io.open(self.log_file, "rb")
  if not f then return out end
  for line in f:lines() do out[#out + 1] = line end
  f:close()
  return out
end

return _M
