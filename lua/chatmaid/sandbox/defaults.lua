-- SPDX-License-Identifier: MIT
-- The sandbox's default configuration. Other specs rely on these exact values.
local _M = {}

local ALL_SCOPES = {
  "messages:send", "messages:write", "messages:read", "phone_numbers:read", "account:read",
}

-- config() -> a fresh copy of the default configuration table.
function _M.config()
  local scopes = {}
  for i, s in ipairs(ALL_SCOPES) do scopes[i] = s end
  local function all() local t = {}; for i, s in ipairs(scopes) do t[i] = s end; return t end
  return {
    accounts = {
      {
        id = "acc_sandbox",
        name = "Sandbox Inc",
        email = "sandbox@example.com",
        subscriptionStatus = "active",
        keys = {
          { key = "sk_test_sandbox_0000000000000001", scopes = all() },
          { key = "sk_live_sandbox_0000000000000001", scopes = all() },
          { key = "sk_test_sandbox_readonly_000001", scopes = { "messages:read" } },
          { key = "sk_test_sandbox_noscopes_00001", scopes = {} },
        },
        phones = {
          {
            id = "ph_primary", phoneNumber = "+15551230001", displayName = "Primary Sender",
            connectionStatus = "connected",
            lastConnectedAt = "2026-01-01T09:00:00.000Z", lastDisconnectedAt = nil,
            createdAt = "2026-01-01T08:00:00.000Z", updatedAt = "2026-01-01T09:00:00.000Z",
          },
          {
            id = "ph_backup", phoneNumber = "+15551230002", displayName = "Backup Sender",
            connectionStatus = "disconnected",
            lastConnectedAt = "2026-01-01T09:00:00.000Z",
            lastDisconnectedAt = "2026-01-02T09:00:00.000Z",
            createdAt = "2026-01-01T08:00:00.000Z", updatedAt = "2026-01-02T09:00:00.000Z",
          },
          {
            id = "ph_pairing", phoneNumber = "+15551230003", displayName = "Pairing Phone",
            connectionStatus = "connecting",
            lastConnectedAt = nil, lastDisconnectedAt = nil,
            createdAt = "2026-01-03T08:00:00.000Z", updatedAt = "2026-01-03T08:00:00.000Z",
          },
        },
      },
    },
    -- Recipients that fail on live keys (test keys always succeed).
    failing_numbers = {
      ["+15550000666"] = {
        errorCode = "RECIPIENT_UNREACHABLE",
        errorMessage = "The recipient is not reachable on WhatsApp",
      },
    },
    rate_limit = 100,        -- requests per minute per key; false disables
    rate_window = 60,        -- seconds of the sliding window rate_limit counts over
    live_delay = 2,          -- seconds until a live message leaves `pending`
    time_factor = 1,         -- scales live_delay and the webhook retry schedule
    max_body = 1024 * 1024,  -- request body cap in bytes (413 above)
    max_connections = 512,   -- open client connections at most (503 and close above)
    -- order within a page of GET /api/whatsapp/messages: "asc" as the contract's example
    -- shows (each page is still the newest `limit` messages older than the cursor), "desc"
    conversations_page_order = "asc",
    conversations_has_next = true,     -- false: list pages leave hasNext out
    webhook = {
      url = nil,
      secret = "whsec_sandbox_0000000000000000",
      retry_schedule = { 60, 300, 900 }, -- seconds after the initial attempt (x time_factor)
      timeout = 10,                      -- seconds per attempt
    },
  }
end

_M.ALL_SCOPES = ALL_SCOPES

return _M
