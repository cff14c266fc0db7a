-- SPDX-License-Identifier: MIT
-- Event loop adapters: chatmaid.loop.luv(client[, uv[, opts]]) drives a client's tasks from a
-- libuv loop (luv, Neovim's vim.uv). Each adapter loads on first use, so requiring this module
-- needs none of the loop libraries.
return setmetatable({}, {
  __index = function(t, name)
    if name ~= "luv" then return nil end
    local f = require("chatmaid.loop." .. name)
    rawset(t, name, f)
    return f
  end,
})
