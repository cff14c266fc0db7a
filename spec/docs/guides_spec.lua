-- SPDX-License-Identifier: MIT
-- Every code block of the published documentation runs as written (issue 25). The blocks and
-- their markers: spec/docs/blocks.lua. How a block runs:
--   lua   a script in the page's directory, run by the Lua under test, with the checkout's
--         lua/ and core on its paths and CHATMAID_BASE_URL / CHATMAID_API_KEY /
--         CHATMAID_WEBHOOK_SECRET naming the page's sandbox (test key, default phones), and
--         CHATMAID_CONVERSATIONS_BASE_URL / _API_KEY the same sandbox (live_delay 0.3 s)
--   sh    `bash -e` in the page's directory (one per page, kept between its blocks, holding
--         links to the checkout's bin/, lua/, examples/ and build/ and the page's `file`
--         blocks), with the same environment and bin/ on PATH; background jobs are killed
--         when the block ends. The ports the docs use become free ones: 8787 (the sandbox)
--         this spec's sandbox, or a free port when the block starts its own; 9000 (a
--         receiver) a free port. `lua5.4 ` becomes the Lua under test.
--   json  decodes (one document, or JSON lines)
--   c     only as a `file` block, compiled and run by the sh block after it
-- Each block must exit 0 within 60 s.
local B = require "spec.docs.blocks"
local F = require "spec.support.fixtures"
local cjson = require "cjson"

local LUA = os.getenv("CHATMAID_LUA") or "lua5.4"
local root = B.root

local q, sh, write = B.q, B.sh, B.write
local free_port = require("spec.support.redis_helper").free_port

-- the checkout's core for the Lua under test (the relative entries busted's --cpath added),
-- made absolute, then the interpreter's default path (;;): never this interpreter's system
-- directories, which a `lua5.4` started by a block (bin/chatmaid) would load from otherwise
local function cpath()
  local own = {}
  for e in package.cpath:gmatch("[^;]+") do
    if e:sub(1, 1) ~= "/" then own[#own + 1] = root .. e:gsub("^%./", "") end
  end
  return table.concat(own, ";") .. ";;"
end

local CODE = { lua = true, sh = true, c = true, json = true }
local WRONG = { bash = "sh", shell = "sh", console = "sh", lua54 = "lua", C = "c" }

describe("documentation blocks #docs", function()
  it("markers are known, skips are rare and justified, languages are the runnable ones",
     function()
    local skips, specials = {}, {}
    for _, b in ipairs(B.all()) do
      local where = B.where(b)
      assert.is_nil(WRONG[b.lang], where .. ": write ```" .. tostring(WRONG[b.lang])
                                   .. " (the spec runs those)")
      if b.kind then
        assert.truthy(B.KINDS[b.kind] or B.SPECIAL[b.kind], where .. ": unknown doc-test "
                                                             .. b.kind)
      end
      if b.kind == "skip" then
        assert.truthy(b.why and #b.why > 20, where .. ": a skip must say why")
        skips[#skips + 1] = where
      end
      if b.kind == "file" then assert.truthy(b.name, where .. ": file NAME") end
      if B.SPECIAL[b.kind] then specials[b.kind] = (specials[b.kind] or 0) + 1 end
      if b.lang == "c" then assert.equal("file", b.kind, where .. ": a C block is a file") end
      if b.lang == "nginx" then
        assert.truthy(b.kind == "nginx" or b.kind == "skip", where .. ": an nginx block is the "
                      .. "doc-tested nginx.conf or a justified skip")
      end
    end
    assert.is_true(#skips <= 3, "too many skipped blocks: " .. table.concat(skips, ", "))
    for k in pairs(B.SPECIAL) do assert.equal(1, specials[k], "doc-test: " .. k) end
  end)

  it("every relative link names a file of the repository, and its #anchor a heading there",
     function()
    -- GitHub's heading ids: lowercase, punctuation dropped (not - and _), spaces to hyphens
    local function slug(h)
      return (h:lower():gsub("[^%w%s%-_]", ""):gsub("%s", "-"))
    end
    local function anchors(path)
      local set = {}
      for line in (B.read(root .. path) .. "\n"):gmatch("([^\n]*)\n") do
        local h = line:match("^#+%s+(.-)%s*$")
        if h then set[slug(h)] = true end
      end
      return set
    end
    local bad = {}
    for _, file in ipairs(B.files()) do
      local dir = file:match("^(.*/)") or ""
      for target in B.read(root .. file):gmatch("%]%(([^)%s]+)%)") do
        if not target:match("^%a+:") then
          local path, frag = target:match("^([^#]*)#?(.*)$")
          local full = path == "" and file or dir .. path
          while full:find("[^/]+/%.%./") do full = full:gsub("[^/]+/%.%./", "", 1) end
          local fh = io.open(root .. full, "rb")
          if not fh then
            bad[#bad + 1] = file .. ": " .. target .. " (no such file)"
          else
            fh:close()
            if frag ~= "" and full:match("%.md$") and not anchors(full)[frag] then
              bad[#bad + 1] = file .. ": " .. target .. " (no such heading)"
            end
          end
        end
      end
    end
    assert.same({}, bad)
  end)

  for _, file in ipairs(B.files()) do
    local blocks = B.parse(file)
    local runnable = false
    for _, b in ipairs(blocks) do
      if CODE[b.lang] and not B.SPECIAL[b.kind] and b.kind ~= "skip" and b.kind ~= "ci" then
        runnable = true
      end
    end
    if runnable then
      describe(file, function()
        local sb = F.block_sandbox{ rate_limit = false, live_delay = 0.3 }
        local dir
        setup(function()
          dir = sh("mktemp -d /tmp/chatmaid-docs.XXXXXX"):match("([^\n]+)")
          for _, d in ipairs{ "bin", "lua", "examples", "build" } do
            assert(os.execute("ln -s " .. q(root .. d) .. " " .. q(dir .. "/" .. d)))
          end
          for _, b in ipairs(blocks) do
            if b.kind == "file" then
              local sub = b.name:match("^(.*)/[^/]*$")
              if sub then assert(os.execute("mkdir -p " .. q(dir .. "/" .. sub))) end
              write(dir .. "/" .. b.name, b.text)
            end
          end
        end)
        teardown(function() if dir then os.execute("rm -rf " .. q(dir)) end end)

        local function env(extra)
          local e = {
            LUA_PATH = root .. "lua/?.lua;" .. root .. "lua/?/init.lua;;",
            LUA_CPATH = cpath(), PATH = root .. "bin:" .. os.getenv("PATH"),
            CHATMAID_BASE_URL = sb.url, CHATMAID_API_KEY = F.TEST_KEY,
            CHATMAID_WEBHOOK_SECRET = F.WEBHOOK_SECRET, CHATMAID_LUA = LUA,
            CHATMAID_CONVERSATIONS_BASE_URL = sb.url,
            CHATMAID_CONVERSATIONS_API_KEY = F.TEST_KEY,
          }
          for k, v in pairs(extra or {}) do e[k] = v end
          local parts = {}
          for k, v in pairs(e) do parts[#parts + 1] = k .. "=" .. q(v) end
          table.sort(parts)
          return "env " .. table.concat(parts, " ")
        end

        local chain, chain_redis = nil, false
        for _, b in ipairs(blocks) do
          local where = B.where(b)
          if b.lang == "json" and b.kind ~= "file" then
            it(where .. " (json) decodes", function()
              local ok = pcall(cjson.decode, b.text)
              if not ok then
                for l in b.text:gmatch("[^\n]+") do assert.truthy(pcall(cjson.decode, l), l) end
              end
            end)
          elseif (b.lang == "lua" or b.lang == "sh") and (b.kind == nil or b.kind == "run"
                  or b.kind == "continue" or b.kind == "redis" or b.kind == "in-checkout") then
            local text = b.text
            if b.lang == "lua" then
              if b.kind == "continue" then
                assert(chain, where .. ": continue without a `run` lua block before it")
                text = chain .. text
              else
                chain, chain_redis = text, b.kind == "redis"
              end
            end
            local needs_redis = b.kind == "redis" or (b.kind == "continue" and chain_redis)
            it(where .. " (" .. b.lang .. ") runs", function()
              local extra = {}
              if needs_redis then
                local r = require("spec.support.redis_helper").start()
                finally(function() r:stop() end)
                extra.REDIS_URL = r.url
              end
              local cwd = b.kind == "in-checkout" and root or dir
              local out, code
              if b.lang == "lua" then
                write(dir .. "/block.lua", text)
                out, code = sh("cd " .. q(cwd) .. " && " .. env(extra) .. " timeout 60 " .. LUA
                               .. " " .. q(dir .. "/block.lua"))
              else
                -- the docs' sandbox port: this spec's sandbox, or a free one for a block
                -- that starts its own
                local own = text:find("chatmaid%-sandbox") or text:find("chatmaid sandbox")
                local port = own and free_port() or sb.port
                text = text:gsub("8787", tostring(port)):gsub("9000", tostring(free_port()))
                           :gsub("%f[%w]lua5%.4 ", LUA .. " ")
                write(dir .. "/block.sh", "trap 'rc=$?; kill $(jobs -p) 2>/dev/null || true; "
                                          .. "exit $rc' EXIT\n" .. text)
                out, code = sh("cd " .. q(cwd) .. " && " .. env(extra) .. " timeout 60 bash -e "
                               .. q(dir .. "/block.sh"))
              end
              assert.equal(0, code, where .. " failed:\n" .. text .. "\n--- output:\n" .. out)
            end)
          end
        end
      end)
    end
  end
end)
