-- SPDX-License-Identifier: MIT
-- Percent-encoding for path segments and query strings (RFC 3986 unreserved set kept).
local _M = {}

local function encode_char(c)
  return string.format("%%%02X", c:byte())
end

function _M.encode(s)
  return (tostring(s):gsub("[^%w%-%._~]", encode_char))
end

-- One path segment. url.encode keeps ".", and libcurl (like any RFC 3986 client) removes
-- the dot segments "." and ".." from a path, so "/v1/messages/." would go out as
-- "/v1/messages/". Callers reject such ids before building a path (validate.id); this is
-- the second line of defence: a segment that would be a dot segment is sent percent-encoded
-- ("%2E"), which libcurl leaves alone, so the path on the wire is always the path built and
-- reported to hooks and last_response(). Any other encoded value has a character that is
-- not "." and so is never a dot segment; "%" itself is encoded, so a value can never
-- smuggle in a "%2E" either.
function _M.segment(s)
  local e = _M.encode(s)
  if e == "." or e == ".." then return (e:gsub("%.", "%%2E")) end
  return e
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
