-- The static embed build (`make embed`, mk/embed.mk): libchatmaid.a's symbols, a host that
-- loads every module from the archive with nothing on disk, and the 60 fps frame-loop example
-- (examples/embed/frame_loop.c) against a sandbox that answers each send after 2 s.
-- The archive is built for Lua 5.4 whatever Lua runs busted, so this runs in the 5.4 suite.
local F = require "spec.support.fixtures"

local root = debug.getinfo(1, "S").source:match("^@(.*)spec/embed/embed_spec%.lua$") or ""
if root:sub(1, 1) ~= "/" then   -- absolute: the hosts run in an empty directory
  local p = assert(io.popen("pwd"))
  root = p:read("*l") .. "/" .. root:gsub("^%./", "")
  p:close()
end
local DIR = root .. "build/embed/"
local LIB, HOST, LOOP = DIR .. "libchatmaid.a", DIR .. "spec_host", DIR .. "frame_loop"
local SEND = "/v1/messages/send"

local function exists(path)
  local f = io.open(path, "rb")
  if f then f:close() end
  return f ~= nil
end

local function sh_quote(s) return "'" .. tostring(s):gsub("'", "'\\''") .. "'" end

-- run(cmd) -> output (stdout and stderr), exit code
local function run(cmd)
  local p = assert(io.popen(cmd .. " 2>&1"))
  local out = p:read("*a")
  local ok, how, code = p:close()
  if type(ok) == "number" then code = ok   -- Lua 5.1: close returns the status
  elseif how == "exit" or how == "signal" then code = code or (ok and 0 or 1)
  else code = ok and 0 or 1 end
  return out, code
end

-- The modules the archive must carry: lua/chatmaid/**.lua but the sandbox and the CLI.
local function expected_modules()
  local out = run("cd " .. sh_quote(root) .. " && find lua/chatmaid -name '*.lua'")
  local want = {}
  for path in out:gmatch("[^\n]+") do
    if not (path:match("^lua/chatmaid/sandbox") or path:match("^lua/chatmaid/cli/")) then
      local name = path:match("^lua/(.+)%.lua$"):gsub("/", "."):gsub("%.init$", "")
      want[#want + 1] = name
    end
  end
  table.sort(want)
  return want
end

-- host(code, args, env) -> output, code: spec_host in an empty directory, LUA_PATH* unset.
local empty_dir
local function host(code, args, env)
  local parts = { "cd", sh_quote(empty_dir), "&&", "env", "-u LUA_PATH -u LUA_CPATH",
                  "-u LUA_PATH_5_4 -u LUA_CPATH_5_4", env or "", sh_quote(HOST), sh_quote(code) }
  for _, a in ipairs(args or {}) do parts[#parts + 1] = sh_quote(a) end
  return run(table.concat(parts, " "))
end

local function result_of(out)
  local line = out:match("RESULT ([^\n]+)")
  if not line then return nil end
  local r = {}
  for k, v in line:gmatch("([%w_]+)=(%S+)") do r[k] = tonumber(v) or v end
  return r
end

local lua = os.getenv("CHATMAID_LUA") or "lua5.4"
local why
if not lua:match("5%.4$") then
  why = "the embed build is Lua 5.4: it runs in the 5.4 suite (CHATMAID_LUA=" .. lua .. ")"
elseif not (exists(LIB) and exists(HOST) and exists(LOOP)) then
  why = "build/embed is not built: run `make embed` (make test builds it under Lua 5.4)"
end
if why then
  describe("static embed build #embed", function() pending(why) end)
  return
end

describe("static embed build #embed", function()
  setup(function()
    empty_dir = os.tmpname()
    os.remove(empty_dir)
    assert(os.execute("mkdir " .. sh_quote(empty_dir)))
  end)
  teardown(function() os.execute("rm -rf " .. sh_quote(empty_dir)) end)

  it("libchatmaid.a defines only chatmaid_preload and the two modules' openers globally",
     function()
    local out, code = run("nm -g --defined-only " .. sh_quote(LIB))
    assert.equal(0, code, out)
    local names = {}
    for name in out:gmatch("%x+ %u ([%w_]+)") do names[#names + 1] = name end
    table.sort(names)
    assert.same({ "chatmaid_preload", "luaopen_chatmaid_core", "luaopen_chatmaid_redis_core" },
                names)
    -- lua-cjson is inside, with local symbols: a host's own cjson cannot clash with it
    local all = run("nm " .. sh_quote(LIB))
    assert.truthy(all:find(" t luaopen_cjson\n", 1, true), "bundled lua-cjson")
    -- the spec host links only the archive, a static liblua5.4, libcurl, libcrypto and libc:
    -- no shared Lua, cjson or hiredis
    local deps = run("ldd " .. sh_quote(HOST))
    assert.truthy(deps:find("libcurl", 1, true), deps)
    assert.falsy(deps:find("lua", 1, true), deps)
    assert.falsy(deps:find("hiredis", 1, true), deps)
    -- the header declares the entry point
    local h = assert(io.open(DIR .. "chatmaid_embed.h")):read("*a")
    assert.truthy(h:find("void chatmaid_preload(struct lua_State *L);", 1, true))
    assert.truthy(h:find("int luaopen_chatmaid_redis_core(struct lua_State *L);", 1, true))
  end)

  it("preloads every library module, both C modules and cjson, and loads them with nothing on disk",
     function()
    local want = expected_modules()
    assert.truthy(#want >= 15, "found the sources")
    local out, code = host([[
      assert(package.path == "" and package.cpath == "" and #package.searchers == 1)
      local names = {}
      for k in pairs(package.preload) do names[#names + 1] = k end
      table.sort(names)
      for _, k in ipairs(names) do
        local ok, m = pcall(require, k)
        if not ok then error("require " .. k .. ": " .. tostring(m), 0) end
        assert(type(m) == "table", k)
      end
      print("NAMES " .. table.concat(names, " "))
      assert(require("cjson").encode({ 1, 2 }) == "[1,2]")
      local ok, err = pcall(require, "chatmaid.sandbox")
      assert(not ok and err:find("no field package.preload['chatmaid.sandbox']", 1, true), err)
      ok = pcall(require, "chatmaid.cli")
      assert(not ok)
      print("VERSION " .. require("chatmaid").VERSION)
    ]])
    assert.equal(0, code, out)
    local names = {}
    for n in out:match("NAMES ([^\n]+)"):gmatch("%S+") do
      if n ~= "cjson" and n ~= "chatmaid.core" and n ~= "chatmaid.redis.core" then
        names[#names + 1] = n
      end
    end
    assert.same(want, names)
    assert.truthy(out:find("NAMES [^\n]*cjson"))
    assert.truthy(out:find("NAMES [^\n]*chatmaid%.core"))
    assert.truthy(out:find("NAMES [^\n]*chatmaid%.redis%.core"))
    assert.equal(require("chatmaid").VERSION, out:match("VERSION (%S+)"))
  end)

  it("embedded chunks carry their source path, as when loaded from disk", function()
    local out, code = host([[
      print("SOURCE " .. debug.getinfo(require("chatmaid.client").new, "S").source)
      local ok, err = pcall(require("chatmaid").new, { api_key = "sk_test_x1", nope = 1 })
      print("RAISED " .. tostring(not ok))
    ]])
    assert.equal(0, code, out)
    assert.truthy(out:find("SOURCE @lua/chatmaid/client.lua\n", 1, true), out)
    assert.truthy(out:find("RAISED true", 1, true), out)
  end)

  it("keeps a cjson the host preloaded itself", function()
    local out, code = host([[
      local m = package.preload.cjson("cjson")
      assert(m.host_cjson == true, "the host's cjson was replaced")
    ]], nil, "SPEC_HOST_OWN_CJSON=1")
    assert.equal(0, code, out)
  end)

  describe("against the sandbox", function()
    local sb = F.block_sandbox{ rate_limit = false }

    local function sends() return sb:stats().byPath["POST " .. SEND] or 0 end

    it("does blocking requests through the embedded client: a send and a not_found", function()
      local out, code = host([[
        local url, key, phone = ...
        local client = assert(require("chatmaid").new{ api_key = key, base_url = url })
        local msg, err = client:send{ from = phone, to = "+15557654321", content = "embedded" }
        assert(msg, tostring(err))
        print("SENT " .. msg.id .. " " .. msg.status)
        local none, nerr = client:message("msg_does_not_exist")
        assert(none == nil and nerr.kind == "not_found", tostring(nerr))
        print("KIND " .. nerr.kind)
        client:close()
      ]], { sb.url, F.TEST_KEY, F.PHONE })
      assert.equal(0, code, out)
      assert.truthy(out:match("SENT msg_%S+ %a+"), out)
      assert.truthy(out:find("KIND not_found", 1, true))
      assert.equal(1, sends())
    end)

    local function frame_loop(args)
      return run(table.concat({ "cd", sh_quote(empty_dir), "&&", "env -u LUA_PATH -u LUA_CPATH",
        "CHATMAID_BASE_URL=" .. sh_quote(sb.url), "CHATMAID_API_KEY=" .. F.TEST_KEY,
        "CHATMAID_FROM=" .. F.PHONE, sh_quote(LOOP), args }, " "))
    end

    it("--blocking: every send freezes the 60 fps loop for the sandbox's 2 s", function()
      local n = 3   -- 10 would take 20 s; each one freezes the same way
      assert(sb:fault{ path = SEND, method = "POST", type = "delay", seconds = 2, count = n })
      local out, code = frame_loop("--blocking --messages " .. n .. " --max-seconds 60")
      assert.equal(0, code, out)
      local r = assert(result_of(out), out)
      assert.equal(n, r.sent)
      assert.equal(0, r.failed)
      assert.is_true(r.worst_ms >= 1950, out)
      local _, freezes = out:gsub("freeze: frame %d+ took 2%d%d%d%.%d+ ms", "")
      assert.equal(n, freezes, out)
      assert.truthy(out:find("the blocking send froze the loop for 2%d%d%d ms at worst"), out)
      assert.is_true(r.blocked >= n, out)   -- each send waited in the kernel
      assert.equal(n, sends())
    end)

    -- Task mode: client:spawn + client:step(0) per frame. Each run must send all 10 with the
    -- sends overlapping, no frame may block (no voluntary context switch inside a frame's
    -- work) and the loop's own work stays under 4 ms a frame (its CPU time, and the wall time
    -- of every frame the OS did not preempt). The wall time of every frame, preempted or not,
    -- must be at most 4 ms in one of up to 5 runs: on a loaded machine a preemption alone
    -- can cost a frame 5 to 15 ms (measured with two busy loops on this 2-core machine).
    it("task mode: 10 sends delayed 2 s each, every frame at most 4 ms", function()
      local probe = host([[print("SPAWN " .. type(require("chatmaid").new{
        api_key = "sk_test_x1" }.spawn))]])
      if not probe:find("SPAWN function", 1, true) then
        return pending("client:spawn is not in this lua-chatmaid yet")
      end
      local walls = {}
      for _ = 1, 5 do
        sb:reset()
        assert(sb:fault{ path = SEND, method = "POST", type = "delay", seconds = 2, count = 10 })
        local out, code = frame_loop("--messages 10 --press-every 6 --max-seconds 60")
        assert.equal(0, code, out)
        local r = assert(result_of(out), out)
        assert.equal("task", r.mode)
        assert.equal(10, r.sent, out)
        assert.equal(0, r.failed, out)
        assert.equal(10, sends())
        -- 10 presses 0.1 s apart, each answered 2 s later: about 3 s, never 10 x 2 s
        assert.is_true(r.frames < 600, out)
        assert.equal(0, r.blocked, out)
        assert.is_true(r.worst_cpu_ms <= 4, out)
        assert.is_true(r.worst_unpreempted_ms <= 4, out)
        assert.is_true(r.worst_ms < 100, out)
        walls[#walls + 1] = r.worst_ms
        if r.worst_ms <= 4 then break end
      end
      assert.is_true(walls[#walls] <= 4,
        "worst frame over 4 ms in 5 runs (ms): " .. table.concat(walls, ", "))
    end)
  end)
end)
