-- SPDX-License-Identifier: MIT

--- Checks of named-argument tables (unknown names and wrong types raise).
-- Tables of named arguments: unknown names and wrong types are programmer mistakes and raise,
-- naming the argument and, if one is close, the nearest known name. One check, two wordings:
--   PARAMETERS  the client methods' API parameters (base.check_table):
--               "chatmaid: send: unknown parameter 'too' (did you mean 'to'?)"
--   OPTIONS     the helper objects' option tables (chatmaid.redis's limiter, seen set and
--               campaign: options.check): "chatmaid.redis.seen_set: unknown option 'ttl_s'"
-- No requires: the Redis modules also load in nginx phases, where the C core may not.
-- @module chatmaid.options
local _M = {}

-- "string|boolean" -> { string = true, boolean = true }, parsed once per spec string.
local type_sets = setmetatable({}, { __mode = "k" })
local function type_ok(v, spec)
  local set = type_sets[spec]
  if not set then
    set = {}
    for want in spec:gmatch("[^|]+") do set[want] = true end
    type_sets[spec] = set
  end
  return set[type(v)] == true
end

-- Edit distance (Levenshtein) between two short strings.
local function distance(a, b)
  local prev = {}
  for j = 0, #b do prev[j] = j end
  for i = 1, #a do
    local cur = { [0] = i }
    local ca = a:sub(i, i)
    for j = 1, #b do
      cur[j] = math.min(prev[j] + 1, cur[j - 1] + 1,
                        prev[j - 1] + (ca == b:sub(j, j) and 0 or 1))
    end
    prev = cur
  end
  return prev[#b]
end

--- The known name nearest to an unknown one.
-- The known name nearest to an unknown one, or nil: the same name but for case and
-- underscores (mediaUrls -> media_urls), else the closest within 1 edit (2 from 5 letters).
-- @tparam string name the unknown name
-- @param ... tables whose keys are the known names
-- @treturn ?string the suggestion
function _M.suggest(name, ...)
  if type(name) ~= "string" then return nil end
  local function norm(s) return (s:lower():gsub("[_%-]", "")) end
  local n, lname = norm(name), name:lower()
  local best, best_d = nil, (#name >= 5 and 2 or 1) + 1
  for i = 1, select("#", ...) do
    local set = select(i, ...)
    for k in pairs(set or {}) do
      if type(k) == "string" then
        local d = norm(k) == n and 0 or distance(lname, k:lower())
        if d < best_d or (d == best_d and best and k < best) then best, best_d = k, d end
      end
    end
  end
  return best
end

-- The two wordings: what an entry is called, what heads a message (before "where"), and the
-- message for something that is not a table at all (format: where, type).
_M.PARAMETERS = { noun = "parameter", head = "chatmaid: ",
                  not_table = "chatmaid: %s expects a table of parameters (got %s)" }
_M.OPTIONS = { noun = "option", head = "", not_table = "%s: opts must be a table (got %s)" }

-- "where", or "where[index]" for an item of a list: made only for a message, so checking
-- each item of a long list builds no text.
local function place(where, index)
  if index == nil then return where end
  return where .. "[" .. index .. "]"
end

--- Check a table of named arguments.
-- check_table(words, where, t, allowed, extra, level, index): allowed (and extra, if given)
-- map each name to "type", "type|type" or true (any type). Raises as error(msg, level) would
-- in the function that called check_table. index: t is the item where[index] of a list.
-- @tparam table words PARAMETERS or OPTIONS (the wording)
-- @tparam string where the function, for the message
-- @tparam table t the table
-- @tparam table allowed name -> "type", "type|type" or true
-- @tparam ?table extra more allowed names
-- @tparam number level as error()
-- @tparam ?number index t is where[index] of a list
-- @raise on an unknown name or a wrong type
function _M.check_table(words, where, t, allowed, extra, level, index)
  level = level + 1
  if type(t) ~= "table" then
    error(words.not_table:format(place(where, index), type(t)), level)
  end
  for k, v in pairs(t) do
    local spec = allowed[k] or (extra and extra[k])
    if not spec then
      local near = _M.suggest(k, allowed, extra)
      error(words.head .. place(where, index) .. ": unknown " .. words.noun .. " '"
            .. tostring(k) .. "'" .. (near and (" (did you mean '" .. near .. "'?)") or ""),
            level)
    end
    if spec ~= true and not type_ok(v, spec) then
      error(words.head .. place(where, index) .. ": " .. words.noun .. " '" .. k
            .. "' must be a " .. spec .. " (got " .. type(v) .. ")", level)
    end
  end
end

--- Check an option table.
-- check(where, o, allowed, level): an option table. Raises at `level`, counted from the
-- caller of check (as error() counts from its caller).
-- @tparam string where the function
-- @tparam table o the options
-- @tparam table allowed name -> type
-- @tparam[opt=2] number level as error()
-- @raise on an unknown name or a wrong type
function _M.check(where, o, allowed, level)
  _M.check_table(_M.OPTIONS, where, o, allowed, nil, (level or 2) + 1)
end

--- Require a module that lives in another rock, with an error that names the rock.
-- Redis, the sandbox and the CLI are rocks of their own: when an option needs one that is not
-- installed, the error says which rock to install instead of listing the paths searched. Any
-- other failure to load the module is raised as it is.
-- @tparam string module the module to require (e.g. "chatmaid.redis")
-- @tparam string rock the rock that installs it (e.g. "chatmaid-redis")
-- @tparam string what the option or command that needs it, for the message
-- @tparam[opt] integer level the error level
-- @return the module
-- @raise when the module is not installed, or fails to load
function _M.require_rock(module, rock, what, level)
  local ok, m = pcall(require, module)
  if ok then return m end
  if not tostring(m):find("module '" .. module .. "' not found", 1, true) then error(m, 0) end
  error(what .. " needs " .. module .. ", which is not installed: it is in the " .. rock
        .. " rock (luarocks install " .. rock .. ")", (level or 1) + 1)
end

return _M
