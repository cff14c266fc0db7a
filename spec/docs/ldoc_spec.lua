-- SPDX-License-Identifier: MIT
-- The API reference (`make docs`, LDoc) covers every public function of the files config.ld
-- lists (issue 25): each file declares its @module, and each `function M.name(...)` /
-- `function M:name(...)` whose name does not start with `_` has an LDoc comment (a block
-- starting with `--- `) that names every formal argument in a @tparam or @param tag. LDoc
-- itself does not warn about a missing or misnamed argument, so this spec does; `make docs`
-- (CI) checks that LDoc runs cleanly.
local B = require "spec.docs.blocks"

local function config_files()
  local env = {}
  local chunk = assert((loadfile or load)(B.root .. "config.ld", "t", env))
  if setfenv then setfenv(chunk, env) end   -- luacheck: ignore (Lua 5.1)
  chunk()
  return env.file
end

-- the comment block right above line k (contiguous `--` lines), as an array of lines
local function block_above(lines, k)
  local j = k - 1
  while j >= 1 and lines[j]:match("^%-%-") do j = j - 1 end
  local b = {}
  for i = j + 1, k - 1 do b[#b + 1] = lines[i] end
  return b
end

local function problems_of(file)
  local text = B.read(B.root .. file)
  local lines = {}
  for l in (text .. "\n"):gmatch("([^\n]*)\n") do lines[#lines + 1] = l end
  local problems, public = {}, 0
  if not text:find("\n%-%- @module [%w%.]+\n") then
    problems[#problems + 1] = file .. ": no @module tag"
  end
  for k, line in ipairs(lines) do
    local name, args = line:match("^function [%w_]+[%.:]([%a][%w_]*)%((.-)%)")
    if name then
      public = public + 1
      local blk = block_above(lines, k)
      local is_doc = blk[1] and blk[1]:match("^%-%-%- ")
      if not is_doc then
        problems[#problems + 1] = file .. ":" .. k .. ": " .. name .. " has no LDoc comment"
      else
        local named = {}
        for _, l in ipairs(blk) do
          local n = l:match("^%-%- @tparam%S*%s+%S+%s+([%w_%.]+)")
                    or l:match("^%-%- @param%S*%s+([%w_%.]+)")
          if n then named[n] = true end
        end
        for a in args:gmatch("[^,%s]+") do
          if not named[a] then
            problems[#problems + 1] = file .. ":" .. k .. ": " .. name .. ": argument '" .. a
                                      .. "' has no @tparam/@param"
          end
        end
      end
    end
  end
  return problems, public
end

describe("API reference coverage #docs", function()
  local files = config_files()

  it("config.ld lists the public modules", function()
    assert.is_true(#files >= 10)
    for _, m in ipairs{ "init", "client", "webhook", "errors", "sandbox", "conversations" } do
      local found = false
      for _, f in ipairs(files) do
        if f == "lua/chatmaid/" .. m .. ".lua" then found = true end
      end
      assert.is_true(found, m)
    end
  end)

  it("every public function has an LDoc comment naming each argument", function()
    local all, total = {}, 0
    for _, f in ipairs(files) do
      local p, n = problems_of(f)
      total = total + n
      for _, x in ipairs(p) do all[#all + 1] = x end
    end
    assert.same({}, all)
    assert.is_true(total >= 50, total .. " public functions")
  end)

  it("the check finds a function without a comment and an unnamed argument", function()
    local tmp = os.tmpname()
    local f = assert(io.open(tmp, "w"))
    f:write("-- x\n--- M.\n-- @module m\nlocal M = {}\n\nfunction M.a(x) end\n\n"
            .. "--- B.\n-- @tparam string y\nfunction M.b(x) end\n\n"
            .. "local function c(z) end\nfunction M._d(w) end\nreturn M\n")
    f:close()
    local saved = B.root
    B.root = ""
    local ok, p = pcall(problems_of, tmp)
    B.root = saved
    os.remove(tmp)
    assert(ok, p)
    assert.same({ tmp .. ":6: a has no LDoc comment",
                  tmp .. ":10: b: argument 'x' has no @tparam/@param" }, p)
  end)
end)
