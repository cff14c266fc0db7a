-- SPDX-License-Identifier: MIT
-- The rockspec declares what the installed code needs (issue 14): every module the sources
-- require outside chatmaid is provided by a declared dependency (or loaded optionally with
-- pcall, such as lua-resty-http inside nginx), and every source file is installed.
local ROCKSPEC = "rockspec/chatmaid-scm-1.rockspec"

-- module -> the rock that provides it
local PROVIDED_BY = { cjson = "lua-cjson", argparse = "argparse", socket = "luasocket",
                      ["socket.http"] = "luasocket", ltn12 = "luasocket", mime = "luasocket" }

local function load_rockspec()
  local env = {}
  local f = assert(io.open(ROCKSPEC, "rb"))
  local src = f:read("*a")
  f:close()
  local chunk
  if setfenv then   -- Lua 5.1 / LuaJIT
    chunk = assert(loadstring(src, "=" .. ROCKSPEC))
    setfenv(chunk, env)
  else
    chunk = assert(load(src, "=" .. ROCKSPEC, "t", env))
  end
  chunk()
  return env
end

local function files(cmd)
  local t = {}
  local p = assert(io.popen(cmd))
  for l in p:lines() do t[#t + 1] = l end
  p:close()
  return t
end

describe("the rockspec", function()
  local spec = load_rockspec()

  it("declares lua-cjson, argparse and luasocket", function()
    local names = {}
    for _, d in ipairs(spec.dependencies) do names[d:match("^(%S+)")] = true end
    assert.is_true(names["lua-cjson"])
    assert.is_true(names["argparse"])
    assert.is_true(names["luasocket"])
    assert.is_true(names["lua"])
  end)

  it("covers every non-chatmaid module the installed sources require", function()
    local declared = {}
    for _, d in ipairs(spec.dependencies) do declared[d:match("^(%S+)")] = true end
    local srcs = files("find lua bin -type f")
    assert.is_true(#srcs > 10)
    for _, path in ipairs(srcs) do
      local f = assert(io.open(path, "rb"))
      local src = f:read("*a")
      f:close()
      -- plain requires only: pcall(require, ...) is an optional module by design
      for m in src:gmatch('require%s*%(?%s*"([^"]+)"') do
        -- ngx.*: lua-resty-core, part of every lua-nginx-module runtime (loaded only there)
        if not m:find("^chatmaid") and not m:find("^ngx%.") then
          local rock = PROVIDED_BY[m]
          assert.truthy(rock, path .. " requires " .. m .. ", which no dependency provides")
          assert.is_true(declared[rock], path .. " needs " .. rock)
        end
      end
    end
  end)

  it("installs every Lua module and both commands (regenerate: sh scripts/gen-rockspec.sh)",
     function()
    local listed = {}
    for _, v in pairs(spec.build.modules) do
      if type(v) == "string" then listed[v] = true end
    end
    for _, path in ipairs(files("find lua -name '*.lua'")) do
      assert.is_true(listed[path] == true, path .. " is missing from " .. ROCKSPEC)
    end
    assert.equal("bin/chatmaid", spec.build.install.bin.chatmaid)
    assert.equal("bin/chatmaid-sandbox", spec.build.install.bin["chatmaid-sandbox"])
  end)
end)
