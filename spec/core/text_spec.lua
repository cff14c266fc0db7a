-- The core's byte scans for the validators (csrc/text.c) against the Lua definitions they
-- replaced: the same answer for every edge case and for random bytes.
local core = require "chatmaid.core"

-- The reference: validate.lua's UTF-16 counter before it moved to C.
local function ref_utf16(s)
  local n, i, len = 0, 1, #s
  while i <= len do
    local c = s:byte(i)
    local extra, min
    if c < 0x80 then extra, min = 0, 0
    elseif c >= 0xC2 and c <= 0xDF then extra, min = 1, 0x80
    elseif c >= 0xE0 and c <= 0xEF then extra, min = 2, 0x800
    elseif c >= 0xF0 and c <= 0xF4 then extra, min = 3, 0x10000
    else return nil, i end
    local cp = extra == 0 and c or c % (2 ^ (6 - extra))
    for k = 1, extra do
      local b = s:byte(i + k)
      if not b or b < 0x80 or b > 0xBF then return nil, i end
      cp = cp * 64 + (b - 0x80)
    end
    if cp < min or cp > 0x10FFFF or (cp >= 0xD800 and cp <= 0xDFFF) then return nil, i end
    n = n + (cp >= 0x10000 and 2 or 1)
    i = i + extra + 1
  end
  return n
end

local function ref_control(s) return s:find("%c") ~= nil end
local function ref_e164(s) return s:find("^%+[1-9]%d*$") ~= nil and #s <= 16 and #s >= 3 end

local function same(s)
  local n, bad = core.utf16_length(s)
  local rn, rbad = ref_utf16(s)
  assert.equal(rn, n, ("%q"):format(s))
  assert.equal(rbad, bad, ("%q"):format(s))
  assert.equal(ref_control(s), core.has_control(s), ("%q"):format(s))
  assert.equal(ref_e164(s), core.is_e164(s), ("%q"):format(s))
end

describe("core text scans", function()
  it("count UTF-16 units and find the first invalid byte as the Lua rules did", function()
    assert.equal(0, core.utf16_length(""))
    assert.equal(5, core.utf16_length("hello"))
    assert.equal(1, core.utf16_length("\195\169"))            -- é
    assert.equal(2, core.utf16_length("\240\159\152\128"))    -- U+1F600: a surrogate pair
    assert.same({ nil, 2 }, { core.utf16_length("a\192\128") })   -- overlong
    assert.same({ nil, 1 }, { core.utf16_length("\237\160\128") })   -- U+D800
    assert.same({ nil, 1 }, { core.utf16_length("\244\144\128\128") })   -- past U+10FFFF
    assert.same({ nil, 3 }, { core.utf16_length("ab\226\130") })   -- truncated
    for _, s in ipairs{ "", "a", "\0", "\127", "\128", "\194", "\194\128", "\223\191",
                        "\224\160\128", "\224\159\191", "\239\191\191", "\240\144\128\128",
                        "\240\143\191\191", "\244\143\191\191", "\245\128\128\128", "\255",
                        "x\n", "+1", "+15557654321", "+05557654321", "+1555765432112345",
                        "+155576543211234", "+1 555", "++1", "+1a" } do
      same(s)
    end
  end)

  it("agree with the Lua definitions on 20,000 random strings", function()
    math.randomseed(20261201)
    local alphabet = { 0, 9, 10, 31, 32, 43, 48, 49, 57, 97, 127, 128, 191, 194, 223, 224, 237,
                       239, 240, 244, 245, 255 }
    for _ = 1, 20000 do
      local len = math.random(0, 12)
      local b = {}
      for i = 1, len do
        b[i] = math.random() < 0.5 and alphabet[math.random(#alphabet)] or math.random(0, 255)
      end
      same(string.char((table.unpack or unpack)(b)))
    end
  end)

  it("raise on a non-string", function()
    assert.has_error(function() core.utf16_length({}) end)
    assert.has_error(function() core.has_control(nil) end)
    assert.has_error(function() core.is_e164(false) end)
  end)
end)
