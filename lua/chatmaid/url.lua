-- SPDX-License-Identifier: MIT
-- Percent-encoding for path segments and query strings (RFC 3986 unreserved set kept).
local _M = {}

local function encode_char(c)
  return string.format("%%%02X", c:byte())
end

function _M.encode(s)
  return (tostring(s):gsub("[^%w%-%._~]", encode_char))
end

-- query{ {"page", 1}, {"status", "sent"} } -> "?page=1&status=sent" (nil values skipped,
-- order kept so URLs are stable).
function _M.query(pairs_list)
  local out = {}
  for _, kv in ipairs(pairs_list) do
    if kv[2] ~= nil then
      local v = kv[2]
      if type(v) == "number" and v == math.floor(v) then v = string.format("%d", v) end
      out[#out + 1] = _M.encode(kv[1]) .. "=" .. _M.encode(v)
    end
  end
  return #out > 0 and ("?" .. table.concat(out, "&")) or ""
end

return _M
