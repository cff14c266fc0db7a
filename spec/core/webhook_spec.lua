-- SPDX-License-Identifier: MIT
-- chatmaid.core webhook_sign / webhook_verify against vectors from the openssl CLI and
-- RFC 4231, never only round trips through our own sign.
local core = require "chatmaid.core"

local function tohex(s)
  return (s:gsub(".", function(c) return string.format("%02x", c:byte()) end))
end

-- HMAC-SHA256(key, msg) by the openssl CLI, over a temp file (msg may hold NUL bytes).
local function openssl_hmac(key, msg)
  local path = os.tmpname()
  local f = assert(io.open(path, "wb"))
  f:write(msg)
  f:close()
  local p = assert(io.popen("openssl dgst -sha256 -mac HMAC -macopt hexkey:" .. tohex(key)
                            .. " -hex " .. path .. " 2>&1"))
  local out = p:read("*a")
  p:close()
  os.remove(path)
  return assert(out:match("= (%x+)%s*$"), "openssl failed: " .. out)
end

local rep = string.rep
local function bytes(...) return string.char(...) end

-- RFC 4231 section 4: test cases 1-4, 6 and 7 (case 5 is a truncated MAC).
local rfc4231 = {
  { key = rep("\11", 20), data = "Hi There",
    mac = "b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7" },
  { key = "Jefe", data = "what do ya want for nothing?",
    mac = "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843" },
  { key = rep("\170", 20), data = rep("\221", 50),
    mac = "773ea91e36800e46854db8ebd09181a72959098b3ef8c122d9635514ced565fe" },
  { key = bytes(1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20, 21,
                22, 23, 24, 25),
    data = rep("\205", 50),
    mac = "82558a389a443c0ea4cc819899f2083a85f0faa3e578f8077a2e3ff46729665b" },
  { key = rep("\170", 131), data = "Test Using Larger Than Block-Size Key - Hash Key First",
    mac = "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54" },
  { key = rep("\170", 131),
    data = "This is a test using a larger than block-size key and a larger than block-size"
           .. " data. The key needs to be hashed before being used by the HMAC algorithm.",
    mac = "9b09ffa71b942fcb27635fbcd5b0e944bfdc63644f0713938a7f51535c3a35e2" },
}

local T = 1700000000
local SECRET = "whsec_test_0123456789"
local BODY = '{"event":"message.sent","timestamp":"2026-02-06T14:20:00.000Z",'
             .. '"data":{"messageId":"msg_abc123def456","status":"sent"}}'

local function header_for(body, secret, t)
  return "t=" .. t .. ",v1=" .. openssl_hmac(secret, t .. "." .. body)
end

describe("chatmaid.core webhook", function()
  describe("the openssl CLI reference", function()
    for i, case in ipairs(rfc4231) do
      it("reproduces RFC 4231 HMAC-SHA256 vector #" .. i, function()
        assert.are.equal(case.mac, openssl_hmac(case.key, case.data))
      end)
    end
  end)

  describe("webhook_sign()", function()
    for i, case in ipairs(rfc4231) do
      it("matches the CLI with RFC 4231 key and data #" .. i, function()
        assert.are.equal(openssl_hmac(case.key, T .. "." .. case.data),
                         core.webhook_sign(case.data, case.key, T))
      end)
    end

    it("matches the CLI for a JSON payload", function()
      assert.are.equal(openssl_hmac(SECRET, T .. "." .. BODY), core.webhook_sign(BODY, SECRET, T))
    end)

    it("matches the CLI for an empty body", function()
      assert.are.equal(openssl_hmac(SECRET, T .. "."), core.webhook_sign("", SECRET, T))
    end)

    it("covers a trailing newline (it changes the MAC)", function()
      local with = core.webhook_sign(BODY .. "\n", SECRET, T)
      assert.are.equal(openssl_hmac(SECRET, T .. "." .. BODY .. "\n"), with)
      assert.are_not.equal(core.webhook_sign(BODY, SECRET, T), with)
    end)

    it("matches the CLI for a 1 MiB body with NUL bytes", function()
      local body = rep("a\0b\0\0", 209716) .. "xyzw"   -- 1048584 bytes
      assert.is_true(#body >= 1048576)
      assert.are.equal(openssl_hmac(SECRET, T .. "." .. body), core.webhook_sign(body, SECRET, T))
    end)

    it("returns 64 lowercase hex digits", function()
      assert.matches("^[0-9a-f]+$", core.webhook_sign(BODY, SECRET, 0))
      assert.are.equal(64, #core.webhook_sign(BODY, SECRET, 0))
    end)

    it("raises on an empty secret", function()
      assert.has_error(function() core.webhook_sign(BODY, "", T) end,
                       "bad argument #2 to 'webhook_sign' (secret must not be empty)")
    end)

    it("raises on a negative timestamp", function()
      assert.has_error(function() core.webhook_sign(BODY, SECRET, -1) end,
                       "bad argument #3 to 'webhook_sign' (must be an integer in 0..10^15-1)")
    end)
  end)

  describe("webhook_verify()", function()
    local H = header_for(BODY, SECRET, T)
    local function verify(body, header, secrets, now)
      return core.webhook_verify(body, header, secrets or { SECRET }, 300, now or T)
    end

    it("accepts a valid header and returns t", function()
      local ok, t = verify(BODY, H)
      assert.is_true(ok)
      assert.are.equal(T, t)
    end)

    it("reports mismatch for a tampered body", function()
      assert.are.same({ false, "mismatch", T }, { verify((BODY:gsub("abc", "abd")), H) })
    end)

    it("reports mismatch for a wrong secret", function()
      assert.are.same({ false, "mismatch", T }, { verify(BODY, H, { "whsec_other" }) })
    end)

    it("accepts rotation: the second secret matches", function()
      assert.is_true((verify(BODY, H, { "whsec_old", SECRET })))
    end)

    it("accepts any of several v1 entries", function()
      local h = "t=" .. T .. ",v1=" .. rep("0", 64) .. ",v1=" .. H:match("v1=(%x+)")
                .. ",v1=" .. rep("f", 64)
      assert.is_true((verify(BODY, h)))
    end)

    it("ignores v0 and reports no_signature when only v0 is present", function()
      local h = "t=" .. T .. ",v0=" .. H:match("v1=(%x+)")
      assert.are.same({ false, "no_signature", T }, { verify(BODY, h) })
    end)

    it("ignores a valid v0 next to a valid v1", function()
      assert.is_true((verify(BODY, H .. ",v0=abc")))
    end)

    it("reports malformed_header when t is missing", function()
      assert.are.same({ false, "malformed_header", nil }, { verify(BODY, (H:gsub("^t=%d+,", ""))) })
    end)

    it("reports malformed_header when t is repeated", function()
      assert.are.same({ false, "malformed_header", nil }, { verify(BODY, "t=" .. T .. "," .. H) })
    end)

    for _, bad in ipairs({ "abc", "-1700000000", "+1700000000", "17000 00000", "1.5", "",
                           "0x10", rep("1", 16) }) do
      it("reports malformed_header for t=" .. string.format("%q", bad), function()
        local h = "t=" .. bad .. ",v1=" .. H:match("v1=(%x+)")
        assert.are.same({ false, "malformed_header", nil }, { verify(BODY, h) })
      end)
    end

    it("reports malformed_header for a part that is not k=v", function()
      assert.are.same({ false, "malformed_header", nil }, { verify(BODY, H .. ",garbage") })
      assert.are.same({ false, "malformed_header", nil }, { verify(BODY, H .. ",,") })
      assert.are.same({ false, "malformed_header", nil }, { verify(BODY, "=1," .. H) })
    end)

    it("reports malformed_header for an empty or missing header", function()
      assert.are.same({ false, "malformed_header", nil }, { verify(BODY, "") })
      assert.are.same({ false, "malformed_header", nil }, { verify(BODY, nil) })
    end)

    it("reports malformed_header for a 10 KiB garbage header", function()
      local h = H .. "," .. rep("x=y,", 2600):sub(1, 10240 - #H - 1)
      assert.are.equal(10240, #h)
      assert.are.same({ false, "malformed_header", nil }, { verify(BODY, h) })
    end)

    it("accepts a header of exactly 8 KiB", function()
      local pad = ",x=" .. rep("y", 8192 - #H - 3)
      assert.are.equal(8192, #(H .. pad))
      assert.is_true((verify(BODY, H .. pad)))
      assert.are.same({ false, "malformed_header", nil }, { verify(BODY, H .. pad .. "y") })
    end)

    it("reports timestamp_out_of_tolerance for an old timestamp", function()
      assert.are.same({ false, "timestamp_out_of_tolerance", T }, { verify(BODY, H, nil, T + 301) })
      assert.is_true((verify(BODY, H, nil, T + 300)))
    end)

    it("reports timestamp_out_of_tolerance for a timestamp too far in the future", function()
      assert.are.same({ false, "timestamp_out_of_tolerance", T }, { verify(BODY, H, nil, T - 301) })
      assert.is_true((verify(BODY, H, nil, T - 300)))
    end)

    it("tolerates blanks around parts", function()
      local h = "  t=" .. T .. " ,\tv1=" .. H:match("v1=(%x+)") .. "  "
      assert.is_true((verify(BODY, h)))
    end)

    it("signs the t digits as sent (leading zeros included)", function()
      local h = "t=0" .. T .. ",v1=" .. openssl_hmac(SECRET, "0" .. T .. "." .. BODY)
      assert.is_true((verify(BODY, h)))
      assert.are.same({ false, "mismatch", T }, { verify(BODY, "t=0" .. H:sub(3)) })
    end)

    it("treats uppercase hex as a mismatch", function()
      local upper = "t=" .. T .. ",v1=" .. H:match("v1=(%x+)"):upper()
      assert.are.same({ false, "mismatch", T }, { verify(BODY, upper) })
    end)

    it("treats short, long and non-hex v1 values as non-matching candidates", function()
      local mac = H:match("v1=(%x+)")
      for _, v in ipairs({ "", mac:sub(1, 63), mac .. "0", mac:sub(1, 63) .. "g" }) do
        assert.are.same({ false, "mismatch", T }, { verify(BODY, "t=" .. T .. ",v1=" .. v) })
      end
    end)

    it("verifies an empty body", function()
      assert.is_true((verify("", header_for("", SECRET, T))))
    end)

    it("verifies a 1 MiB body with NUL bytes, and rejects it with one byte changed", function()
      local body = rep("\0{\"a\":1}\0", 116509) .. "end"
      assert.is_true(#body >= 1048576)
      local h = header_for(body, SECRET, T)
      assert.is_true((verify(body, h)))
      assert.are.same({ false, "mismatch", T }, { verify(body:sub(1, -2) .. "E", h) })
    end)

    it("distinguishes bodies with and without a trailing newline", function()
      local h = header_for(BODY .. "\n", SECRET, T)
      assert.is_true((verify(BODY .. "\n", h)))
      assert.are.same({ false, "mismatch", T }, { verify(BODY, h) })
    end)

    it("keeps working past the keyed-state cache size (more than 8 secrets)", function()
      local secrets = {}
      for i = 1, 16 do secrets[i] = "whsec_rot_" .. i end
      secrets[16] = SECRET
      for _ = 1, 3 do assert.is_true((verify(BODY, H, secrets))) end
      secrets[16] = "whsec_rot_x"
      assert.are.same({ false, "mismatch", T }, { verify(BODY, H, secrets) })
    end)

    describe("raises on programmer errors", function()
      it("secrets not a table", function()
        assert.has_error(function() core.webhook_verify(BODY, H, SECRET, 300, T) end,
                         "bad argument #3 to 'webhook_verify' (table expected, got string)")
      end)
      it("empty secrets", function()
        assert.has_error(function() core.webhook_verify(BODY, H, {}, 300, T) end,
                         "bad argument #3 to 'webhook_verify' (must hold 1 to 16 secrets)")
      end)
      it("more than 16 secrets", function()
        local s = {}
        for i = 1, 17 do s[i] = "k" .. i end
        assert.has_error(function() core.webhook_verify(BODY, H, s, 300, T) end,
                         "bad argument #3 to 'webhook_verify' (must hold 1 to 16 secrets)")
      end)
      it("a secret that is not a string", function()
        assert.has_error(function() core.webhook_verify(BODY, H, { SECRET, 42 }, 300, T) end,
                         "bad argument #3 to 'webhook_verify' (secrets must be non-empty strings)")
      end)
      it("an empty secret", function()
        assert.has_error(function() core.webhook_verify(BODY, H, { "" }, 300, T) end,
                         "bad argument #3 to 'webhook_verify' (secrets must be non-empty strings)")
      end)
      it("a tolerance of 0", function()
        assert.has_error(function() core.webhook_verify(BODY, H, { SECRET }, 0, T) end,
          "bad argument #4 to 'webhook_verify' (must be a positive number of seconds)")
      end)
      it("a NaN now", function()
        assert.has_error(function() core.webhook_verify(BODY, H, { SECRET }, 300, 0 / 0) end,
                         "bad argument #5 to 'webhook_verify' (must be a number, not NaN)")
      end)
      it("a body that is not a string", function()
        assert.has_error(function() core.webhook_verify({}, H, { SECRET }, 300, T) end,
                         "bad argument #1 to 'webhook_verify' (string expected, got table)")
      end)
    end)
  end)
end)
