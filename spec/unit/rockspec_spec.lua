-- SPDX-License-Identifier: MIT
-- The rockspecs declare what the installed code needs (issue 14), one rock per audience
-- (issue 25): the library needs lua-cjson alone; Redis, the sandbox and the CLI are rocks of
-- their own. Every module the sources require is provided by the rock itself, a declared
-- dependency, or is optional by design (pcall, or options.require_rock, which names the rock
-- to install). The rockspecs are generated (scripts/gen-rockspec.lua) and up to date.
-- scripts/check-rocks.sh (CI, `make check-rocks`) installs each rock into an empty tree.
local options = require "chatmaid.options"
local read = require("spec.cli.run").read

local function load_rockspec(path)
  local env = {}
  local src = read(path)
  local chunk
  if setfenv then   -- Lua 5.1 / LuaJIT
    chunk = assert(loadstring(src, "=" .. path))
    setfenv(chunk, env)
  else
    chunk = assert(load(src, "=" .. path, "t", env))
  end
  chunk()
  return env
end

local function lines(cmd)
  local t = {}
  local p = assert(io.popen(cmd))
  for l in p:lines() do t[#t + 1] = l end
  p:close()
  return t
end

local VERSION = read("VERSION"):match("^(%S+)")
local ROCKS = { "chatmaid", "chatmaid-redis", "chatmaid-sandbox", "chatmaid-cli" }

-- module (outside this repository) -> the rock that provides it
local PROVIDED_BY = { cjson = "lua-cjson", argparse = "argparse", socket = "luasocket",
                      ["socket.http"] = "luasocket", ltn12 = "luasocket", mime = "luasocket" }

-- rock -> { [module] = true } for every module it installs (Lua and C)
local function modules_of(spec)
  local t = {}
  for m in pairs(spec.build.install.lua or {}) do t[m] = true end
  for m in pairs(spec.build.install.lib or {}) do t[m] = true end
  return t
end

describe("the rockspecs", function()
  local specs = {}
  for _, rock in ipairs(ROCKS) do
    specs[rock] = load_rockspec("rockspec/" .. rock .. "-scm-1.rockspec")
  end

  local function deps_of(rock)
    local t = {}
    for _, d in ipairs(specs[rock].dependencies) do t[d:match("^(%S+)")] = true end
    return t
  end

  it("are generated from one description and up to date (lua scripts/gen-rockspec.lua)",
     function()
    local dir = os.tmpname()
    os.remove(dir)
    assert(os.execute("mkdir " .. dir))
    finally(function() os.execute("rm -rf " .. dir) end)
    local lua = os.getenv("CHATMAID_LUA") or "lua5.4"
    assert.truthy(os.execute(lua .. " scripts/gen-rockspec.lua " .. dir))
    local made = lines("ls " .. dir)
    assert.equal(8, #made)
    for _, name in ipairs(made) do
      assert.equal(read(dir .. "/" .. name), read("rockspec/" .. name),
                   "rockspec/" .. name .. " is stale: run lua5.4 scripts/gen-rockspec.lua")
    end
    for _, rock in ipairs(ROCKS) do
      local v = load_rockspec("rockspec/" .. rock .. "-" .. VERSION .. "-1.rockspec")
      assert.equal(VERSION .. "-1", v.version)
      assert.equal("v" .. VERSION, v.source.tag)
    end
  end)

  it("give the library lua and lua-cjson as its only dependencies, and no hiredis", function()
    assert.same({ lua = true, ["lua-cjson"] = true }, deps_of("chatmaid"))
    assert.same({ "CURL", "OPENSSL" }, (function()
      local k = {}
      for name in pairs(specs.chatmaid.external_dependencies) do k[#k + 1] = name end
      table.sort(k)
      return k
    end)())
    assert.same({ ["chatmaid.core"] = "build/rock/chatmaid/core.so" },
                specs.chatmaid.build.install.lib)
    assert.same({ lua = true, chatmaid = true }, deps_of("chatmaid-redis"))
    assert.equal("hiredis", specs["chatmaid-redis"].external_dependencies.HIREDIS.library)
    assert.same({ lua = true, chatmaid = true, ["lua-cjson"] = true, luasocket = true },
                deps_of("chatmaid-sandbox"))
    -- `chatmaid sandbox` is a command of the CLI: it needs the sandbox rock
    assert.same({ lua = true, chatmaid = true, ["chatmaid-sandbox"] = true, ["lua-cjson"] = true,
                  argparse = true },
                deps_of("chatmaid-cli"))
  end)

  it("pin the rocks of this repository to one version", function()
    for _, rock in ipairs(ROCKS) do
      local v = load_rockspec("rockspec/" .. rock .. "-" .. VERSION .. "-1.rockspec")
      for _, d in ipairs(v.dependencies) do
        if d:find("^chatmaid") then assert.truthy(d:find(" == " .. VERSION .. "$"), d) end
      end
    end
  end)

  it("install every Lua module exactly once, and each command from its rock", function()
    local owner = {}
    for _, rock in ipairs(ROCKS) do
      for _, path in pairs(specs[rock].build.install.lua) do
        assert.is_nil(owner[path], path .. " is in " .. tostring(owner[path]) .. " and " .. rock)
        owner[path] = rock
      end
    end
    for _, path in ipairs(lines("find lua -name '*.lua'")) do
      assert.truthy(owner[path], path .. " is in no rockspec")
    end
    assert.equal("chatmaid", owner["lua/chatmaid/init.lua"])
    assert.equal("chatmaid", owner["lua/chatmaid/resty.lua"])
    assert.equal("chatmaid-redis", owner["lua/chatmaid/redis/conn.lua"])
    assert.equal("chatmaid-sandbox", owner["lua/chatmaid/sandbox/cli.lua"])
    assert.equal("chatmaid-cli", owner["lua/chatmaid/cli/init.lua"])
    assert.same({ chatmaid = "bin/chatmaid" }, specs["chatmaid-cli"].build.install.bin)
    assert.same({ ["chatmaid-sandbox"] = "bin/chatmaid-sandbox" },
                specs["chatmaid-sandbox"].build.install.bin)
    assert.is_nil(specs.chatmaid.build.install.bin)
    -- never the builtin type: it copies all of lua/ into every rock
    for _, rock in ipairs(ROCKS) do assert.are_not.equal("builtin", specs[rock].build.type) end
  end)

  it("cover every module each rock's sources require: its own, a dependency's, or optional",
     function()
    local provides = {}
    for _, rock in ipairs(ROCKS) do provides[rock] = modules_of(specs[rock]) end
    for _, rock in ipairs(ROCKS) do
      local deps = deps_of(rock)
      local files = {}
      for _, path in pairs(specs[rock].build.install.lua) do files[#files + 1] = path end
      for _, path in pairs(specs[rock].build.install.bin or {}) do files[#files + 1] = path end
      for _, path in ipairs(files) do
        -- plain requires only: pcall(require, ...) and options.require_rock are optional
        for m in read(path):gmatch('[^_%.]require%s*%(?%s*"([^"]+)"') do
          local from
          if m:sub(-1) == "." then      -- require("chatmaid.cli." .. name): a rock's own
            from = rock
          elseif provides[rock][m] then
            from = rock
          elseif m:find("^chatmaid") then
            for other, mods in pairs(provides) do if mods[m] then from = other end end
          elseif m:find("^ngx%.") then  -- lua-resty-core: part of every nginx lua runtime
            from = rock
          else
            from = PROVIDED_BY[m]
          end
          assert.truthy(from, path .. " requires " .. m .. ", which no rock provides")
          assert.truthy(from == rock or deps[from],
                        path .. " (" .. rock .. ") requires " .. m .. " from " .. from
                        .. ", not a dependency of " .. rock)
        end
      end
    end
  end)
end)

describe("options.require_rock", function()
  it("names the rock to install when the module is not installed", function()
    local ok, err = pcall(options.require_rock, "chatmaid.nosuch", "chatmaid-nosuch",
                          "the frobnicate option")
    assert.is_false(ok)
    assert.equal("the frobnicate option needs chatmaid.nosuch, which is not installed: it is "
                 .. "in the chatmaid-nosuch rock (luarocks install chatmaid-nosuch)", err)
  end)

  it("returns the module when it is there, and raises a broken module's own error", function()
    assert.equal(options, options.require_rock("chatmaid.options", "chatmaid", "x"))
    package.preload["chatmaid.spec_broken"] = function() error("broken inside", 0) end
    finally(function() package.preload["chatmaid.spec_broken"] = nil end)
    local ok, err = pcall(options.require_rock, "chatmaid.spec_broken", "chatmaid", "x")
    assert.is_false(ok)
    assert.equal("broken inside", err)
  end)
end)
