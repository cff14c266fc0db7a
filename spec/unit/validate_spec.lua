local validate = require "chatmaid.validate"

describe("chatmaid.validate", function()
  describe("utf16_length()", function()
    it("counts like JavaScript's String.length", function()
      assert.equal(0, validate.utf16_length(""))
      assert.equal(5, validate.utf16_length("hello"))
      assert.equal(1, validate.utf16_length("\195\169"))          -- é
      assert.equal(1, validate.utf16_length("\226\130\172"))      -- €
      assert.equal(2, validate.utf16_length("\240\159\152\128"))  -- 😀 is a surrogate pair
    end)
    it("rejects invalid UTF-8", function()
      for _, s in ipairs{ "\255", "\192\128", "\224\128\128", "\237\160\128", "\244\144\128\128",
                          "\195", "a\128" } do
        local n, why = validate.utf16_length(s)
        assert.is_nil(n)
        assert.truthy(why:find("invalid UTF%-8"))
      end
    end)
  end)

  describe("e164()", function()
    it("accepts E.164 numbers", function()
      for _, v in ipairs{ "+15557654321", "+442071838750", "+123456789012345", "+12" } do
        assert.is_nil(validate.e164(v))
      end
    end)
    it("rejects everything else and never rewrites", function()
      for _, v in ipairs{ "15557654321", "+0155", "+1 555 765", "+1-555", "+1234567890123456",
                          "+", "", "+1555x" } do
        assert.is_string(validate.e164(v))
      end
    end)
  end)

  describe("base_url()", function()
    it("normalises the trailing slash", function()
      assert.equal("https://api.example.com/v", validate.base_url("https://api.example.com/v/"))
    end)
  end)

  describe("send()", function()
    it("returns no problems for a valid message", function()
      assert.same({}, validate.send{ to = "+15557654321", content = "hi" })
      assert.same({}, validate.send{ to = "+15557654321", media_urls = { "https://x.io/a" } })
    end)
  end)
end)
