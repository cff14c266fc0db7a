-- SPDX-License-Identifier: MIT
-- The errors reference is complete: every err.kind (chatmaid.errors.kinds, and every kind
-- the code passes to errors.new) has a row, every err.reason the code can set is listed in
-- its table, and nothing listed is stale. The table lives in DOC under SECTION: re-point
-- these two when the docs move.
local DOC = "docs/_incoming/campaign.md"
local SECTION = "## Errors reference"

local root = debug.getinfo(1, "S").source:match("^@(.*)spec/docs/errors_reference_spec%.lua$")
if root == nil or root == "" then root = "./" end

local function read(path)
  local f = assert(io.open(root .. path, "rb"))
  local s = f:read("*a")
  f:close()
  return s
end

local function list(cmd)
  local t = {}
  local p = io.popen("cd " .. root .. " && " .. cmd)
  for l in p:lines() do t[#t + 1] = l end
  p:close()
  return t
end

-- Where the code sets err.reason: literal values in these shapes (each names the file kinds
-- it is looked for in). A reason set another way must be added here.
local LUA_REASON_PATTERNS = {
  'reason%s*=%s*"([%w_]+)"',          -- { reason = "x" }, f.reason = "x"
  'reason%s*==%s*"([%w_]+)"',         -- a reason compared to (webhook, conversations)
  '[%s%.]fail%("([%w_]+)"',           -- local fail(reason, message) helpers
  'stop%("([%w_]+)"',                 -- send_batch's interrupted reasons
  'return nil, [%w_]+, "([%w_]+)"',   -- journal.acquire's problem kinds
}
-- transports: their kinds become err.reason of transport errors
local TRANSPORT_FILES = { ["lua/chatmaid/transport.lua"] = true,
                          ["lua/chatmaid/resty/transport.lua"] = true }
local TRANSPORT_PATTERNS = { 'return "([%w_]+)"', 'return nil, "([%w_]+)",' }
-- C: the kinds of session (curl), redis, webhook verification and the file lock
local C_FILES = { "csrc/session.c", "csrc/redis.c", "csrc/webhook.c", "csrc/filelock.c" }
local C_PATTERNS = { 'return "([%w_]+)";', 'fail%(L, "([%w_]+)"',
                     'lua_pushliteral%(L, "([%w_]+)"%)' }

local function collect()
  local kinds, reasons = {}, {}
  for k in pairs(require("chatmaid.errors").kinds) do kinds[k] = "chatmaid.errors.kinds" end
  for _, path in ipairs(list("find lua/chatmaid -name '*.lua' -not -path '*/sandbox/*'")) do
    local s = read(path)
    for k in s:gmatch('errors%.new%("([%w_]+)"') do kinds[k] = kinds[k] or path end
    for _, pat in ipairs(LUA_REASON_PATTERNS) do
      for r in s:gmatch(pat) do reasons[r] = reasons[r] or path end
    end
    if TRANSPORT_FILES[path] then
      for _, pat in ipairs(TRANSPORT_PATTERNS) do
        for r in s:gmatch(pat) do reasons[r] = reasons[r] or path end
      end
    end
  end
  for _, path in ipairs(C_FILES) do
    local ok, s = pcall(read, path)
    if ok then
      for _, pat in ipairs(C_PATTERNS) do
        for r in s:gmatch(pat) do reasons[r] = reasons[r] or path end
      end
    end
  end
  return kinds, reasons
end

-- the table: { [kind] = row text (its last column: the reasons) }
local function table_rows()
  local doc = read(DOC)
  local at = doc:find("\n" .. SECTION .. "\n", 1, true)
  assert(at, DOC .. " has no section '" .. SECTION .. "'")
  local body = doc:sub(at + #SECTION + 2):match("^(.-)\n## ") or doc:sub(at + #SECTION + 2)
  local rows = {}
  for line in body:gmatch("[^\n]+") do
    local kind, rest = line:match("^| `([%w_]+)` |(.*)$")
    if kind then
      assert(rows[kind] == nil, "kind " .. kind .. " has two rows")
      rows[kind] = rest:match("([^|]*)|%s*$") or ""
    end
  end
  return rows
end

describe("the errors reference (" .. DOC .. ")", function()
  local kinds, reasons = collect()
  local rows = table_rows()

  it("has one row per error kind, and no row for a kind that does not exist", function()
    local known = require("chatmaid.errors").kinds
    for k, where in pairs(kinds) do
      assert.is_truthy(rows[k], "kind " .. k .. " (" .. where .. ") has no row")
      assert.is_not_nil(known[k], "kind " .. k .. " (" .. where .. ") is not in errors.kinds")
    end
    for k in pairs(rows) do assert.is_truthy(kinds[k], "the row " .. k .. " is stale") end
    assert.is_truthy(rows.cancelled)
    assert.is_truthy(rows.interrupted)
  end)

  it("lists every reason the code sets, and none it does not", function()
    local listed = {}
    for _, col in pairs(rows) do
      for r in col:gmatch("`([%w_]+)`") do listed[r] = true end
    end
    for r, where in pairs(reasons) do
      assert.is_true(listed[r] == true, "reason " .. r .. " (" .. where .. ") is not listed")
    end
    for r in pairs(listed) do
      assert.is_truthy(reasons[r], "the reason " .. r .. " is listed but the code never sets it")
    end
    -- the collection itself finds the known ones (a pattern that stopped matching fails here)
    for _, r in ipairs{ "busy", "symlink", "stop", "closed", "connect", "mismatch", "config" } do
      assert.is_truthy(reasons[r], r)
    end
  end)
end)
