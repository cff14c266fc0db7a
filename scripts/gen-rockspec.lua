-- SPDX-License-Identifier: MIT
-- Writes every rockspec from one description (below) and the tree: for each package an
-- scm-1 rockspec and one for the version in VERSION, so every Lua module, C source and
-- command is listed (LuaRocks installs only what a rockspec names) and the four packages
-- never disagree on a dependency or a version.
--   lua5.4 scripts/gen-rockspec.lua [OUTDIR]     (default rockspec/; run from the repository)
-- Packages by audience (issue 25): the library alone needs libcurl, libcrypto and lua-cjson;
-- Redis (hiredis), the sandbox (LuaSocket) and the CLI (argparse) are rocks of their own.
local outdir = arg[1] or "rockspec"

local function read(path)
  local f = assert(io.open(path, "rb"))
  local s = f:read("*a")
  f:close()
  return s
end

local function list(cmd)
  local t = {}
  local p = assert(io.popen(cmd))
  for l in p:lines() do t[#t + 1] = l end
  p:close()
  table.sort(t)
  return t
end

local VERSION = assert(read("VERSION"):match("^(%d+%.%d+%.%d+)%s*$"), "VERSION: x.y.z")
local REPO = "git+https://github.com/lua-chatmaid/lua-chatmaid.git"
local HOMEPAGE = "https://github.com/lua-chatmaid/lua-chatmaid"
local LUA = "lua >= 5.1, < 5.5"

-- which package a Lua file belongs to: the first whose pattern matches, else "chatmaid"
local LUA_OWNER = {
  { "^lua/chatmaid/redis%.lua$", "chatmaid-redis" },
  { "^lua/chatmaid/redis/", "chatmaid-redis" },
  { "^lua/chatmaid/sandbox%.lua$", "chatmaid-sandbox" },
  { "^lua/chatmaid/sandbox/", "chatmaid-sandbox" },
  { "^lua/chatmaid/cli/", "chatmaid-cli" },
}

local function owner(path)
  for _, o in ipairs(LUA_OWNER) do
    if path:find(o[1]) then return o[2] end
  end
  return "chatmaid"
end

-- dependencies: "chatmaid" (the library rock) is pinned to the same version
local PACKAGES = {
  { name = "chatmaid",
    summary = "Chatmaid WhatsApp API client: a libcurl C core with an idiomatic Lua layer",
    detailed = [[
Send and track WhatsApp messages through the Chatmaid API: kept-alive libcurl transport,
structured errors, safe retries with idempotency keys, pagination, polling, batch sends,
webhook verification in C (OpenSSL HMAC-SHA256), OpenResty cosockets. Needs libcurl,
OpenSSL's libcrypto and lua-cjson, nothing else: Redis, the sandbox and the CLI are the
chatmaid-redis, chatmaid-sandbox and chatmaid-cli rocks.]],
    labels = { "whatsapp", "http", "curl", "api", "openresty" },
    deps = { "lua-cjson >= 2.1" },
    external = {
      -- Debian keeps curl.h in a multiarch include dir that LuaRocks does not search, while
      -- the compiler does: so look for the libraries.
      CURL = { library = "curl" },
      OPENSSL = { library = "crypto" },
    },
    c = { module = "chatmaid.core", target = "chatmaid-core", vars = { "CURL", "OPENSSL" } },
    test = true },
  { name = "chatmaid-redis",
    summary = "Chatmaid over Redis: a shared rate limiter, webhook de-duplication, campaigns",
    detailed = [[
chatmaid.redis for lua-chatmaid: one account on many machines (a rate limiter shared
through Redis, a webhook seen-set, campaigns that survive restarts). Outside nginx it
talks to Redis through its own C module on hiredis (chatmaid.redis.core); inside nginx
through lua-resty-redis / lua-nginx-redis cosockets.]],
    labels = { "whatsapp", "redis", "hiredis", "openresty" },
    deps = { "chatmaid" },
    external = { HIREDIS = { library = "hiredis" } },   -- Debian: libhiredis-dev
    c = { module = "chatmaid.redis.core", target = "chatmaid-redis-core", vars = { "HIREDIS" } } },
  { name = "chatmaid-sandbox",
    summary = "A local Chatmaid API emulator for tests: chatmaid.sandbox and chatmaid-sandbox",
    detailed = [[
The Chatmaid v1 API on 127.0.0.1 (LuaSocket), with faults, delays, rate limits and signed
webhooks, for testing code that uses lua-chatmaid without an account or a network:
require("chatmaid.sandbox").start{} from a spec, or the chatmaid-sandbox command.]],
    labels = { "whatsapp", "testing", "mock", "emulator" },
    -- chatmaid: chatmaid.webhook signs the deliveries
    deps = { "chatmaid", "lua-cjson >= 2.1", "luasocket >= 3.0" },
    bin = { "chatmaid-sandbox" } },
  { name = "chatmaid-cli",
    summary = "The chatmaid command: send, batch campaigns, phones, webhooks from the shell",
    detailed = [[
The chatmaid command line for the Chatmaid WhatsApp API (argparse): send a message, run a
CSV campaign with a journal and a rate limit, list phones and messages, verify webhooks,
and run the local sandbox (`chatmaid sandbox`, hence the chatmaid-sandbox dependency).
`chatmaid batch --redis` needs the chatmaid-redis rock too.]],
    labels = { "whatsapp", "cli" },
    deps = { "chatmaid", "chatmaid-sandbox", "lua-cjson >= 2.1", "argparse >= 0.6" },
    bin = { "chatmaid" } },
}

local function q(s) return ("%q"):format(s) end

local function strings(t)
  local parts = {}
  for i, s in ipairs(t) do parts[i] = q(s) end
  return "{ " .. table.concat(parts, ", ") .. " }"
end

local function sorted_keys(t)
  local k = {}
  for name in pairs(t) do k[#k + 1] = name end
  table.sort(k)
  return k
end

local lua_files = list("find lua -name '*.lua'")

local function rockspec(p, version)
  local scm = version == "scm-1"
  local out = {}
  local function w(s) out[#out + 1] = s end
  w("-- Generated by scripts/gen-rockspec.lua from VERSION and the tree: do not edit.\n")
  w('rockspec_format = "3.0"\n')
  w("package = " .. q(p.name) .. "\n")
  w("version = " .. q(version) .. "\n")
  if scm then w("source = { url = " .. q(REPO) .. " }\n")
  else w("source = { url = " .. q(REPO) .. ", tag = " .. q("v" .. VERSION) .. " }\n") end
  w("description = {\n  summary = " .. q(p.summary) .. ",\n  detailed = [[\n" .. p.detailed
    .. "]],\n  license = \"MIT\",\n  homepage = " .. q(HOMEPAGE) .. ",\n  labels = "
    .. strings(p.labels) .. ",\n}\n")
  local deps = { LUA }
  for _, d in ipairs(p.deps) do
    -- the rocks of this repository go together: the same version, or any scm build
    if d:find("^chatmaid") and not scm then d = d .. " == " .. VERSION end
    deps[#deps + 1] = d
  end
  w("dependencies = " .. strings(deps) .. "\n")
  if p.external then
    w("external_dependencies = {\n")
    for _, k in ipairs(sorted_keys(p.external)) do
      w("  " .. k .. " = { library = " .. q(p.external[k].library) .. " },\n")
    end
    w("}\n")
  end
  if p.test then w('test = { type = "busted" }\n') end
  -- "make" (rockspec/build.mk) for a C module, "none" for Lua only: never "builtin", which
  -- copies all of lua/ into every rock (rockspec/build.mk says more)
  w("build = {\n")
  if p.c then
    local vars = { 'CFLAGS = "$(CFLAGS)"', 'LIBFLAG = "$(LIBFLAG)"',
                   'LUA_INCDIR = "$(LUA_INCDIR)"' }
    for _, v in ipairs(p.c.vars) do
      vars[#vars + 1] = ('%s_INCDIR = "$(%s_INCDIR)"'):format(v, v)
      vars[#vars + 1] = ('%s_LIBDIR = "$(%s_LIBDIR)"'):format(v, v)
    end
    w('  type = "make",\n  makefile = "rockspec/build.mk",\n  build_target = '
      .. q(p.c.target) .. ",\n  build_variables = {\n")
    for _, v in ipairs(vars) do w("    " .. v .. ",\n") end
    w("  },\n  install_pass = false,\n")
  else
    w('  type = "none",\n')
  end
  w("  install = {\n    lua = {\n")
  for _, f in ipairs(lua_files) do
    if owner(f) == p.name then
      local m = f:gsub("^lua/", ""):gsub("%.lua$", ""):gsub("/init$", ""):gsub("/", ".")
      w("      [" .. q(m) .. "] = " .. q(f) .. ",\n")
    end
  end
  w("    },\n")
  if p.c then
    w("    lib = { [" .. q(p.c.module) .. "] = "
      .. q("build/rock/" .. p.c.module:gsub("%.", "/") .. ".so") .. " },\n")
  end
  if p.bin then
    w("    bin = {\n")
    for _, b in ipairs(p.bin) do w("      [" .. q(b) .. "] = " .. q("bin/" .. b) .. ",\n") end
    w("    },\n")
  end
  w("  },\n")
  w("}\n")
  return table.concat(out)
end

for _, p in ipairs(PACKAGES) do
  for _, version in ipairs({ "scm-1", VERSION .. "-1" }) do
    local path = outdir .. "/" .. p.name .. "-" .. version .. ".rockspec"
    local f = assert(io.open(path, "wb"))
    f:write(rockspec(p, version))
    f:close()
  end
end
