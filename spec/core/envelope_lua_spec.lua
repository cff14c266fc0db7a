-- chatmaid.envelope.decode: under LuaJIT a Lua path for success envelopes (the C core's walk
-- over the answer costs ~1 us there, issue 24); it must give exactly what
-- core.decode_envelope gives, the same values and the same array marks, for every body.
-- Under PUC Lua it is the C core's function itself.
local core = require "chatmaid.core"
local envelope = require "chatmaid.envelope"

-- Same value, same shape: tables compared key by key, metatables by identity.
local function same(a, b, path)
  path = path or "root"
  if type(a) ~= type(b) then return false, path .. ": " .. type(a) .. " vs " .. type(b) end
  if type(a) ~= "table" then
    if a == b or (a ~= a and b ~= b) then return true end
    return false, path .. ": " .. tostring(a) .. " vs " .. tostring(b)
  end
  if getmetatable(a) ~= getmetatable(b) then return false, path .. ": metatables differ" end
  for k, v in pairs(a) do
    local ok, why = same(v, b[k], path .. "." .. tostring(k))
    if not ok then return false, why end
  end
  for k in pairs(b) do
    if a[k] == nil then return false, path .. "." .. tostring(k) .. ": missing" end
  end
  return true
end

local function check(status, body)
  local c = { core.decode_envelope(status, body) }
  local l = { envelope.decode(status, body) }
  local ok, why = same(c, l)
  assert(ok, "differs for " .. body .. ": " .. tostring(why))
end

-- A random JSON value, as text, of the shapes that matter to the walk.
local STRINGS = { '"a"', '"{}"', '"[]"', '"{ }"', '"x\\"{}\\"y"', '"\\\\"', '""', '"null"' }
local SCALARS = { "null", "true", "false", "0", "1", "-2.5", "1e3", "12345678901" }
local function value(rnd, depth)
  local r = rnd(10)
  if depth > 4 or r <= 4 then
    if rnd(2) == 1 then return STRINGS[rnd(#STRINGS)] end
    return SCALARS[rnd(#SCALARS)]
  end
  local n = rnd(4) - 1
  local parts = {}
  if r <= 7 then
    for i = 1, n do parts[i] = value(rnd, depth + 1) end
    return "[" .. table.concat(parts, ",") .. "]"
  end
  for i = 1, n do parts[i] = '"k' .. i .. '":' .. value(rnd, depth + 1) end
  return "{" .. table.concat(parts, ",") .. "}"
end

describe("chatmaid.envelope.decode", function()
  if not rawget(_G, "jit") then
    it("is core.decode_envelope under PUC Lua", function()
      assert.equal(core.decode_envelope, envelope.decode)
    end)
    return
  end

  it("answers a success envelope as the C core does: nulls dropped, arrays marked", function()
    local body = '{"success":true,"data":{"id":"m","mediaUrls":[],"failedAt":null,'
                 .. '"list":[1,null,[null],{"a":null}],"n":3}}'
    local ok, d, enveloped = envelope.decode(201, body)
    assert.is_true(ok)
    assert.is_true(enveloped)
    assert.is_nil(d.failedAt)
    assert.equal(core.array_mt, getmetatable(d.mediaUrls))
    assert.equal(core.array_mt, getmetatable(d.list))
    assert.equal(3, #d.list)
    assert.equal(core.array_mt, getmetatable(d.list[2]))   -- [null] -> an empty array
    assert.is_nil(getmetatable(d.list[3]))                 -- {"a":null} -> an empty object
    check(201, body)
  end)

  it("gives the C core's answer for the bench's and the sandbox's bodies", function()
    for _, f in ipairs{ "send.json", "msg.json", "list.json" } do
      local fh = assert(io.open("bench/data/" .. f))
      local body = fh:read("*a")
      fh:close()
      check(200, body)
    end
  end)

  it("hands everything else to the C core: errors, non-JSON, {}, pretty-printed", function()
    for _, body in ipairs{
      '{"success":false,"error":"Bad","message":["a","b"],"statusCode":400}',
      '{"success":true}', '{"success":true,"data":null}', '{"success":"yes","data":1}',
      '{"data":[],"total":0}', '{"success":true,"data":{"o":{},"a":[]}}',
      '{ "success": true, "data": { "a": [ ] } }', '{"success":true,"data":{"s":"{ }"}}',
      '<html>', '', '   ', '[1]', '{"success":true,"data":1', '{"a":1} x', '{"n":NaN}',
      string.rep("[", 200) .. string.rep("]", 200),
      '{"success":true,"data":' .. string.rep("[", 130) .. string.rep("]", 130) .. "}",
    } do
      check(200, body)
      check(500, body)
    end
  end)

  it("matches the C core on 3,000 random bodies", function()
    local seed = os.time()
    math.randomseed(seed)
    local rnd = math.random
    for _ = 1, 3000 do
      local body = '{"success":' .. (rnd(5) == 1 and "false" or "true") .. ',"data":'
                   .. value(rnd, 0) .. "}"
      local ok, err = pcall(check, 200, body)
      assert(ok, tostring(err) .. " (seed " .. seed .. ")")
    end
  end)
end)
