-- SPDX-License-Identifier: MIT
-- Shared spec fixtures: the sandbox's default keys and phones, and a client factory.
-- local F = require "spec.support.fixtures"; local sb = F.sandbox(); local c = F.client(sb)
local _M = {}

_M.TEST_KEY = "sk_test_sandbox_0000000000000001"
_M.LIVE_KEY = "sk_live_sandbox_0000000000000001"
_M.READONLY_KEY = "sk_test_sandbox_readonly_000001"
_M.NOSCOPE_KEY = "sk_test_sandbox_noscopes_00001"
_M.PHONE = "ph_primary"                 -- +15551230001, connected
_M.PHONE_E164 = "+15551230001"
_M.PHONE_DISCONNECTED = "ph_backup"     -- +15551230002
_M.PHONE_CONNECTING = "ph_pairing"      -- +15551230003
_M.FAILING_RECIPIENT = "+15550000666"
_M.WEBHOOK_SECRET = "whsec_sandbox_0000000000000000"

-- Starts a sandbox child process; stop it with sb:stop() in teardown.
function _M.sandbox(opts)
  return require("chatmaid.sandbox").start(opts or {})
end

-- A client on the sandbox. Sleeps are recorded, not slept, unless opts.sleep is given.
function _M.client(sb, opts)
  local o = { api_key = _M.TEST_KEY, base_url = sb.url, timeout = 10 }
  for k, v in pairs(opts or {}) do o[k] = v end
  local sleeps = {}
  if o.sleep == nil then o.sleep = function(s) sleeps[#sleeps + 1] = s end end
  local c = assert(require("chatmaid").new(o))
  return c, sleeps
end

return _M
