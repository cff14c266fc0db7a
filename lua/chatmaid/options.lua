-- SPDX-License-Identifier: MIT
-- Option tables of the helper objects (chatmaid.redis's limiter, seen set and campaign):
-- unknown names and wrong types are programmer mistakes and raise, naming the option.
-- Client methods use base.check_table, which words the same checks for API parameters.
local _M = {}

-- check(where, o, allowed, level): allowed maps each name to "type" or "type|type".
-- Raises at `level`, counted from the caller of check (as error() counts from its caller).
function _M.check(where, o, allowed, level)
  level = (level or 2) + 1
  if type(o) ~= "table" then
    error(where .. ": opts must be a table (got " .. type(o) .. ")", level)
  end
  for k, v in pairs(o) do
    local spec = allowed[k]
    if not spec then
      -- base (and so the C core) only on this path: these modules also load in nginx phases
      local near = require("chatmaid.base").suggest(k, allowed)
      error(where .. ": unknown option '" .. tostring(k) .. "'"
            .. (near and (" (did you mean '" .. near .. "'?)") or ""), level)
    end
    local ok = false
    for want in spec:gmatch("[^|]+") do
      if type(v) == want then ok = true break end
    end
    if not ok then
      error(where .. ": option '" .. k .. "' must be a " .. spec .. " (got " .. type(v) .. ")",
            level)
    end
  end
end

return _M
