-- SPDX-License-Identifier: MIT
-- CSV per RFC 4180: quoted fields with doubled quotes, embedded commas, quotes and newlines;
-- CRLF, LF or CR line ends; a UTF-8 BOM is ignored. A malformed record is reported with the
-- line it starts on and parsing resumes on the next line, so one bad row never hides the rest.
local _M = {}

-- Line ends in s[i..j]: CRLF, LF, or a lone CR (files saved with CR-only line ends).
local function count_newlines(s, i, j)
  local _, n = s:sub(i, j):gsub("\r\n", "\n"):gsub("[\r\n]", "")
  return n
end

-- Position just past the end of the physical line holding `pos` (or #text + 1).
local function next_line(text, pos)
  local e = text:find("[\r\n]", pos)
  if not e then return #text + 1 end
  return (text:sub(e, e + 1) == "\r\n") and e + 2 or e + 1
end

-- Parses one record starting at pos. Returns fields, next_pos | nil, message, error_pos.
local function record(text, pos)
  local fields, n = {}, #text
  while true do
    local c = text:sub(pos, pos)
    if c == '"' then
      local buf, p = {}, pos + 1
      while true do
        local q = text:find('"', p, true)
        if not q then return nil, "unterminated quoted field", pos end
        buf[#buf + 1] = text:sub(p, q - 1)
        if text:sub(q + 1, q + 1) == '"' then
          buf[#buf + 1] = '"'
          p = q + 2
        else
          p = q + 1
          break
        end
      end
      fields[#fields + 1] = table.concat(buf)
      pos = p
      c = text:sub(pos, pos)
      if c ~= "," and c ~= "\r" and c ~= "\n" and c ~= "" then
        return nil, "unexpected text after a closing quote (a quote inside a quoted field"
                    .. " must be doubled: \"\")", pos
      end
    else
      local e = text:find('[,\r\n"]', pos) or n + 1
      if text:sub(e, e) == '"' then
        return nil, "quote inside an unquoted field (quote the whole field and double the"
                    .. " quote: \"a \"\"b\"\"\")", e
      end
      fields[#fields + 1] = text:sub(pos, e - 1)
      pos = e
      c = text:sub(pos, pos)
    end
    if c == "," then
      pos = pos + 1
    elseif c == "\r" then
      if text:sub(pos + 1, pos + 1) == "\n" then pos = pos + 1 end
      return fields, pos + 1
    elseif c == "\n" then
      return fields, pos + 1
    else
      return fields, n + 1
    end
  end
end

-- parse(text) -> array of { line = n, fields = {...} } or { line = n, error = "..." }.
-- `line` is the 1-based line the record starts on. Empty lines are skipped.
function _M.parse(text)
  local out = {}
  if text:sub(1, 3) == "\239\187\191" then text = text:sub(4) end
  local pos, line, n = 1, 1, #text
  while pos <= n do
    local c = text:sub(pos, pos)
    if c == "\n" or c == "\r" then
      -- an empty line is not a record
      local nxt = (c == "\r" and text:sub(pos + 1, pos + 1) == "\n") and pos + 2 or pos + 1
      line = line + count_newlines(text, pos, nxt - 1)
      pos = nxt
    else
      local fields, nxt, epos = record(text, pos)
      if fields then
        out[#out + 1] = { line = line, fields = fields }
      else
        out[#out + 1] = { line = line, error = "malformed CSV: " .. nxt }
        -- An unterminated quote would swallow the rest of the file: resume on the line after
        -- the record's start instead; other errors resume after the offending line.
        epos = (nxt == "unterminated quoted field") and pos or epos
        nxt = next_line(text, epos)
      end
      line = line + count_newlines(text, pos, nxt - 1)
      pos = nxt
    end
  end
  return out
end

return _M
