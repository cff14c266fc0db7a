-- SPDX-License-Identifier: MIT
-- The code blocks of the campaign doc fragment run as written: each ```lua block as a child
-- process against a sandbox (CHATMAID_API_KEY, CHATMAID_BASE_URL set), each ```sh block with
-- `chatmaid` on PATH in a directory holding spring.csv. DOC: re-point when the docs move.
local DOC = "docs/_incoming/campaign.md"
local R = require "spec.cli.run"
local F = require "spec.support.fixtures"

local ROOT = R.root:sub(1, 1) == "/" and R.root
             or (os.getenv("PWD") .. "/" .. R.root:gsub("^%./", ""))

local function blocks(text)
  local list = {}
  for lang, body in text:gmatch("\n```(%w+)\n(.-)\n```") do
    list[#list + 1] = { lang = lang, text = body .. "\n" }
  end
  return list
end

describe("the campaign doc's code blocks", function()
  local sb = F.block_sandbox({ rate_limit = false }, { reset = false })
  local dir, env
  setup(function()
    dir = os.tmpname()
    os.remove(dir)
    assert(os.execute("mkdir -p " .. R.quote(dir)))
    env = R.env(sb)
    local bin = dir .. "/bin"
    assert(os.execute("mkdir -p " .. R.quote(bin)))
    R.write(bin .. "/chatmaid", "#!/bin/sh\nexec " .. R.quote(R.LUA) .. " "
            .. R.quote(ROOT .. "bin/chatmaid") .. ' "$@"\n')
    os.execute("chmod +x " .. R.quote(bin .. "/chatmaid"))
    env.PATH = bin .. ":" .. os.getenv("PATH")
    local function absolute(paths)     -- the block runs in dir: the checkout's paths in full
      return (paths:gsub("[^;]+", function(e)
        return e:sub(1, 1) == "/" and e or ROOT .. e:gsub("^%./", "")
      end))
    end
    env.LUA_PATH = absolute(package.path)
    env.LUA_CPATH = absolute(package.cpath)
  end)
  teardown(function() os.execute("rm -rf " .. R.quote(dir)) end)

  local list = blocks(R.read(ROOT .. DOC))
  it("has lua and sh blocks", function()
    assert.is_true(#list >= 3)
  end)
  for i, b in ipairs(list) do
    it("block " .. i .. " (" .. b.lang .. ") runs", function()
      R.write(dir .. "/spring.csv", "to,content\n+15553000001,spring 1\n+15553000002,spring 2\n")
      local file = R.write(dir .. "/block" .. i .. "." .. b.lang, b.text)
      local run = b.lang == "lua" and (R.quote(R.LUA) .. " " .. R.quote(file))
                  or ("sh -e " .. R.quote(file))
      local h = io.popen("cd " .. R.quote(dir) .. " && " .. R.env_prefix(env) .. " " .. run
                         .. " 2>&1; echo \"=$?\"")
      local out = h:read("*a")
      h:close()
      assert.are.equal("0", out:match("=(%d+)%s*$"), out)
    end)
  end
end)
