-- SPDX-License-Identifier: MIT

--- `require "chatmaid"`: the package (new, errors, webhook, sandbox, conversations).
-- `require "chatmaid"`: the public package. Submodules load on first use.
-- @module chatmaid
local client = require "chatmaid.client"
local core = require "chatmaid.core"

local _M = {
  VERSION = client.VERSION,
  new = client.new,
  errors = require "chatmaid.errors",
  array_mt = core.array_mt,   -- arrays in results carry it, so [] stays distinguishable from {}
}

local lazy = { webhook = "chatmaid.webhook", sandbox = "chatmaid.sandbox",
               conversations = "chatmaid.conversations", loop = "chatmaid.loop" }

return setmetatable(_M, {
  __index = function(t, k)
    local name = lazy[k]
    if name then
      local m = require(name)
      rawset(t, k, m)
      return m
    end
  end,
})
