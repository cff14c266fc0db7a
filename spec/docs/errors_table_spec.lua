-- SPDX-License-Identifier: MIT
-- docs/reference/errors.md lists exactly the error kinds and reasons the code produces
-- (issue 25). The code's are collected from the sources (lua/, without the sandbox's server
-- side, and csrc/):
--   kinds    the keys of chatmaid.errors.kinds (errors.new refuses any other kind), and every
--            errors.new("kind", ...) literal
--   reasons  Lua: `reason = "x"`, the first argument's string literals of fail(...) /
--            conn.fail(...) (webhook, Redis) and stop(...) (send_batch's interrupts), and
--            `return nil, "x"` of the transports, `return nil, kind, "x"`; C: the kind
--            strings of the core's transport, Redis, webhook and file-lock results
--            (`return "x";`, `fail(L, "x"`, `lua_pushliteral(L, "x")` after the nil it
--            goes with), which the Lua layer passes on as err.reason
-- The doc's tables: the rows of the table under "## Kinds" and under "## Reasons", each
-- starting with the name in backticks.
local B = require "spec.docs.blocks"

local function strip_lua_comments(s)
  s = s:gsub("%-%-%[(=*)%[.-%]%1%]", "")
  return (s:gsub("%-%-[^\n]*", ""))
end

local function strip_c_comments(s)
  return (s:gsub("/%*.-%*/", ""):gsub("//[^\n]*", ""))
end

local function files(cmd)
  local p = io.popen("cd '" .. B.root .. "' && " .. cmd)
  local t = {}
  for l in p:lines() do t[#t + 1] = l end
  p:close()
  return t
end

local function add(set, name, where)
  set[name] = set[name] or where
end

local function from_code()
  local kinds, reasons = {}, {}
  for k in pairs(require("chatmaid.errors").kinds) do add(kinds, k, "errors.kinds") end
  for _, f in ipairs(files("find lua -name '*.lua' -not -path '*/chatmaid/sandbox/*' | sort")) do
    local s = strip_lua_comments(B.read(B.root .. f))
    for k in s:gmatch('errors%.new%(%s*"([%w_]+)"') do add(kinds, k, f) end
    for r in s:gmatch('[^%w_]reason%s*=%s*"([%w_]+)"') do add(reasons, r, f) end
    for arg in s:gmatch('[^%w_]fail%(([^,\n]-),') do
      for r in arg:gmatch('"([%w_]+)"') do add(reasons, r, f) end
    end
    -- a helper's problem kind passed on as the reason: return nil, kind, "reason"
    for r in s:gmatch('return nil, [%w_]+, "([%w_]+)"') do add(reasons, r, f) end
    if f:match("/batch[%./]") then
      for r in s:gmatch('[^%w_]stop%(%s*"([%w_]+)"') do add(reasons, r, f) end
    end
    if f:match("transport%.lua$") then
      -- a transport's "validation" (a phase without I/O in nginx) becomes the kind
      -- validation (resty/detect.lua), not a reason
      for r in s:gmatch('return nil, "([%w_]+)"') do
        if r ~= "validation" then add(reasons, r, f) end
      end
    end
  end
  -- the C files whose results carry an error kind (a file not in this tree is skipped)
  for _, f in ipairs{ "csrc/session.c", "csrc/redis.c", "csrc/webhook.c", "csrc/filelock.c" } do
    local fh = io.open(B.root .. f, "rb")
    local s = fh and strip_c_comments(fh:read("*a")) or ""
    if fh then fh:close() end
    for r in s:gmatch('return "([%w_]+)";') do add(reasons, r, f) end
    for r in s:gmatch('fail%(L, "([%w_]+)"') do add(reasons, r, f) end
    -- a literal pushed as the kind of a `nil, kind` (or fail) result, not any literal
    for r in s:gmatch('push[%w_]-%(L%);%s*lua_pushliteral%(L, "([%w_]+)"%)') do
      add(reasons, r, f)
    end
  end
  -- the Redis core's pump answers nil, "again", "r"|"w" while a reply is on its way: a wait
  -- signal conn.lua consumes (it parks the task on the socket), never an err.reason
  reasons.again = nil
  return kinds, reasons
end

local function from_doc()
  local page = "docs/reference/errors.md"
  return B.table_names(page, "Kinds"), B.table_names(page, "Reasons")
end

describe("docs/reference/errors.md #docs", function()
  local code_kinds, code_reasons = from_code()
  local doc_kinds, doc_reasons = from_doc()

  it("the collection finds what the code is known to produce", function()
    -- guards the patterns: one of each source
    for _, k in ipairs{ "validation", "cancelled", "interrupted", "idempotency_conflict" } do
      assert.truthy(code_kinds[k], k)
    end
    for _, r in ipairs{ "timeout", "connect", "tls", "mismatch", "invalid_payload", "stop",
                        "reengagement_required", "redis", "phase", "config" } do
      assert.truthy(code_reasons[r], r)
    end
  end)

  it("lists every kind the code produces, and no other", function()
    assert.same({}, B.missing(code_kinds, doc_kinds))
    assert.same({}, B.missing(doc_kinds, code_kinds))
  end)

  it("lists every reason the code produces, and no other", function()
    assert.same({}, B.missing(code_reasons, doc_reasons))
    assert.same({}, B.missing(doc_reasons, code_reasons))
  end)
end)
