-- SPDX-License-Identifier: MIT
local csv = require "chatmaid.cli.csv"

describe("chatmaid.cli.csv", function()
  describe("parse()", function()
    it("splits simple records and numbers their lines", function()
      assert.are.same({ { line = 1, fields = { "a", "b" } }, { line = 2, fields = { "1", "" } } },
                      csv.parse("a,b\n1,\n"))
    end)

    it("handles quoted commas, doubled quotes and embedded newlines (RFC 4180)", function()
      assert.are.same({
        { line = 1, fields = { "to", "content" } },
        { line = 2, fields = { "+1", 'a, "b"\r\nc' } },   -- CRLF kept inside quotes
        { line = 4, fields = { "+2", "" } },
      }, csv.parse('to,content\r\n+1,"a, ""b""\r\nc"\r\n+2,""\r\n'))
    end)

    it("skips empty lines and a UTF-8 BOM; the last line may lack a newline", function()
      assert.are.same({ { line = 1, fields = { "x" } }, { line = 4, fields = { "y" } } },
                      csv.parse("\239\187\191x\n\n\ny"))
    end)

    it("reports a quote inside an unquoted field and resumes on the next line", function()
      local r = csv.parse('a,b\n1,2"3\n4,5\n')
      assert.are.equal(2, r[2].line)
      assert.are.equal('malformed CSV: quote inside an unquoted field (quote the whole field'
                       .. ' and double the quote: "a ""b""")', r[2].error)
      assert.are.same({ line = 3, fields = { "4", "5" } }, r[3])
    end)

    it("reports text after a closing quote", function()
      local r = csv.parse('"a"b,c\nd,e\n')
      assert.are.equal(1, r[1].line)
      assert.are.equal("malformed CSV: unexpected text after a closing quote (a quote inside"
                       .. ' a quoted field must be doubled: "")', r[1].error)
      assert.are.same({ line = 2, fields = { "d", "e" } }, r[2])
    end)

    it("reports an unterminated quote without swallowing the rest of the file", function()
      assert.are.same({
        { line = 1, fields = { "a" } },
        { line = 2, error = "malformed CSV: unterminated quoted field" },
        { line = 3, fields = { "b" } },
        { line = 4, fields = { "c" } },
      }, csv.parse('a\n"bad\nb\nc\n'))
    end)

    -- a file saved with CR-only line ends (classic Mac spreadsheets): each record on its own
    -- line number, and a bad record does not swallow the rest
    it("numbers lines ended by a lone CR, and resumes after a bad one", function()
      assert.are.same({
        { line = 1, fields = { "to", "content" } },
        { line = 2, fields = { "+1", "a" } },
        { line = 3, error = "malformed CSV: quote inside an unquoted field (quote the whole"
                            .. ' field and double the quote: "a ""b""")' },
        { line = 5, fields = { "+3", "c\rd" } },
        { line = 7, error = "malformed CSV: unterminated quoted field" },
        { line = 8, fields = { "+5", "e" } },
      }, csv.parse('to,content\r+1,a\r+2,b"\r\r+3,"c\rd"\r+4,"f\r+5,e\r'))
    end)
  end)
end)

