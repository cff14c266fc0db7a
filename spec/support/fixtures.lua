-- SPDX-License-Identifier: MIT
-- Shared spec fixtures: the sandbox's default keys and phones, the sandbox of a describe
-- block, and client factories.
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

-- Inside a describe block: the block's sandbox, started in its setup (after the setups
-- registered before this call), stopped in its teardown, and reset before each test.
--   describe("...", function()
--     local sb = F.block_sandbox{ rate_limit = false }
-- opts: F.sandbox's. o.reset = false: no reset; o.before_each(sb): after the reset.
-- -> the sandbox: a table that becomes the started sandbox in setup (same fields and
-- methods), so tests use it as they would F.sandbox's.
function _M.block_sandbox(opts, o)
  local busted = require "busted"
  o = o or {}
  local sb = {}
  busted.setup(function()
    local started = _M.sandbox(opts)
    for k, v in pairs(started) do sb[k] = v end
    setmetatable(sb, getmetatable(started))
  end)
  busted.teardown(function() if sb.stop then sb:stop() end end)
  if o.reset ~= false or o.before_each then
    busted.before_each(function()
      if o.reset ~= false then assert(sb:reset()) end
      if o.before_each then o.before_each(sb) end
    end)
  end
  return sb
end

local function client(module, sb, opts)
  local o = { api_key = _M.TEST_KEY, base_url = sb.url, timeout = 10 }
  for k, v in pairs(opts or {}) do o[k] = v end
  local sleeps = {}
  if o.sleep == nil then o.sleep = function(s) sleeps[#sleeps + 1] = s end end
  local c = assert(require(module).new(o))
  return c, sleeps
end

-- A client on the sandbox. Sleeps are recorded, not slept, unless opts.sleep is given.
-- -> client, the recorded sleeps
function _M.client(sb, opts) return client("chatmaid", sb, opts) end

-- The same for the conversations API (chatmaid.conversations).
function _M.conversations_client(sb, opts) return client("chatmaid.conversations", sb, opts) end

return _M
