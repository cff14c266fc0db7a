-- SPDX-License-Identifier: MIT
-- The published documentation's code blocks, as the doc-test specs see them.
--
-- Published: README.md and every docs/**/*.md except docs/_incoming/ (fragments the lead
-- folds into the guides) and docs/notes/ (work diaries, not user documentation).
--
-- A block may be preceded by a marker, `<!-- doc-test: KIND [NAME] (why, free text) -->`,
-- on the line before its fence (blank lines in between are allowed, text is not):
--   (none)         lua, sh, c: run (see guides_spec.lua); json: decoded; other languages and
--                  plain ``` fences are output or listings and are not run
--   run            the same as no marker, written out
--   continue       lua: run after the last lua block of the page that is not a `continue`
--                  (a page's set-up block, whose `client` the examples use)
--   redis          lua or sh: run with a throwaway redis-server at REDIS_URL
--   file NAME      the block is the file NAME in the sh blocks' directory (not run itself)
--   in-checkout    sh: run in the checkout (a build command such as `make embed`)
--   ci             run by .ci/run itself (`make demo`, `make test`)
--   skip           cannot run in CI: the parenthesis must say why (kept rare; counted)
--   install, install-more, quickstart, quickstart-env, nginx, notify.lua, webhook.lua
--                  special blocks run by spec/docs/readme_spec.lua
local _M = {}

_M.root = debug.getinfo(1, "S").source:match("^@(.*)spec/docs/blocks%.lua$") or "./"
if _M.root == "" then _M.root = "./" end
if _M.root:sub(1, 1) ~= "/" then _M.root = os.getenv("PWD") .. "/" .. _M.root end

_M.SPECIAL = { install = true, ["install-more"] = true, quickstart = true,
               ["quickstart-env"] = true, nginx = true, ["notify.lua"] = true,
               ["webhook.lua"] = true }
_M.KINDS = { run = true, continue = true, redis = true, file = true, ["in-checkout"] = true,
             ci = true, skip = true }

-- file helpers of the CLI specs (spec/cli/run.lua); read raises on a missing file
local R = require "spec.cli.run"
function _M.read(path) return (assert(R.read(path), "cannot read " .. path)) end
_M.write, _M.q = R.write, R.quote

-- sh(cmd) -> output (stdout and stderr), exit code
function _M.sh(cmd)
  local p = io.popen("(" .. cmd .. ") 2>&1; echo \"=$?\"")
  local out = p:read("*a")
  p:close()
  local body, code = out:match("^(.*)=(%d+)%s*$")
  return body, tonumber(code)
end

-- table_names(file, heading) -> { [name] = true }: every `name` in backticks in the first
-- cell of the table rows under "## heading" (up to the next "## "): the reference pages'
-- tables of error kinds, reasons and options, for the specs that hold them to the code.
function _M.table_names(file, heading)
  local names, inside = {}, false
  for line in (_M.read(_M.root .. file) .. "\n"):gmatch("([^\n]*)\n") do
    local h = line:match("^## (.-)%s*$")
    if h then
      inside = h == heading
    elseif inside then
      local cell = line:match("^|%s*([^|]+)|")
      if cell and not cell:match("^%-") then
        for n in cell:gmatch("`([%w_]+)`") do names[n] = true end
      end
    end
  end
  return names
end

-- missing(a, b) -> the keys of set a that set b lacks, sorted; a key whose value in a is a
-- string (where it was found) shows it: "name (where)"
function _M.missing(a, b)
  local out = {}
  for k, where in pairs(a) do
    if not b[k] then out[#out + 1] = k .. (type(where) == "string" and (" (" .. where .. ")")
                                           or "") end
  end
  table.sort(out)
  return out
end

-- files() -> the published markdown files, relative to the root, sorted
function _M.files()
  local p = io.popen("cd '" .. _M.root .. "' && { ls README.md; find docs -name '*.md' "
                     .. "-not -path 'docs/_incoming/*' -not -path 'docs/notes/*'; } | sort")
  local list = {}
  for l in p:lines() do list[#list + 1] = l end
  p:close()
  return list
end

-- parse(file) -> array of { file, line, lang, text, kind, name, why }
-- kind: the marker's kind (nil without a marker); name: its second word (`file NAME`)
function _M.parse(file)
  local list, marker, cur, n = {}, nil, nil, 0
  for line in (_M.read(_M.root .. file) .. "\n"):gmatch("([^\n]*)\n") do
    n = n + 1
    if cur then
      -- a fence closes at its own indentation or less; the text loses that indentation
      if line:match("^%s*```%s*$") then
        cur.text = table.concat(cur.lines, "\n") .. "\n"
        cur.lines = nil
        list[#list + 1] = cur
        cur = nil
      else
        cur.lines[#cur.lines + 1] = line:sub(1, #cur.indent) == cur.indent
                                    and line:sub(#cur.indent + 1) or line
      end
    else
      local m = line:match("^%s*<!%-%- doc%-test: (.-)%s*%-%->")
      if m then
        local kind, rest = m:match("^([%w%.%-]+)%s*(.*)$")
        local name = rest:match("^([^%s(]+)")
        marker = { kind = kind, name = name, why = rest:match("%((.*)%)") }
      else
        local indent, lang = line:match("^(%s*)```(%S*)")
        if lang then
          cur = { file = file, line = n + 1, lang = lang, lines = {}, indent = indent }
          if marker then
            cur.kind, cur.name, cur.why = marker.kind, marker.name, marker.why
          end
        end
        if line:match("%S") then marker = nil end
      end
    end
  end
  assert(not cur, file .. ": a code fence opened at line " .. (cur and cur.line or 0)
                  .. " is never closed")
  return list
end

-- all() -> every block of every published file
function _M.all()
  local list = {}
  for _, f in ipairs(_M.files()) do
    for _, b in ipairs(_M.parse(f)) do list[#list + 1] = b end
  end
  return list
end

-- special(kind) -> the one block marked `doc-test: kind` (raises when not exactly one)
function _M.special(kind)
  local found
  for _, b in ipairs(_M.all()) do
    if b.kind == kind then
      assert(not found, "two blocks are marked doc-test: " .. kind)
      found = b
    end
  end
  return assert(found, "no block is marked doc-test: " .. kind)
end

function _M.where(b) return b.file .. ":" .. b.line end

return _M
