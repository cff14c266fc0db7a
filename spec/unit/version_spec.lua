-- SPDX-License-Identifier: MIT
-- One version (docs/versioning.md): VERSION, the C core's _VERSION (= chatmaid.VERSION), the
-- sandbox's _VERSION, the versioned rockspecs and the CHANGELOG's top section agree.
local read = require("spec.cli.run").read

describe("the version and the license", function()
  local version = read("VERSION"):match("^(%d+%.%d+%.%d+)\n$")

  it("is x.y.z in VERSION, and the library and the sandbox report it", function()
    assert.truthy(version, "VERSION must hold x.y.z and a newline")
    assert.equal(version, require("chatmaid.core")._VERSION)
    assert.equal(version, require("chatmaid").VERSION)
    assert.equal(version, require("chatmaid.client").VERSION)
    assert.equal(version, require("chatmaid.sandbox")._VERSION)
  end)

  it("has a rockspec per rock and the CHANGELOG's newest section", function()
    for _, rock in ipairs{ "chatmaid", "chatmaid-redis", "chatmaid-sandbox", "chatmaid-cli" } do
      local text = read("rockspec/" .. rock .. "-" .. version .. "-1.rockspec")
      assert.truthy(text:find('\nversion = "' .. version .. '-1"\n', 1, true), rock)
    end
    local first = read("CHANGELOG.md"):match("\n## %[([^%]]+)%]")
    assert.equal(version, first)
  end)

  it("comes with the MIT LICENSE that the source headers name", function()
    local license = read("LICENSE")
    assert.truthy(license:find("^MIT License\n\nCopyright %(c%) %d+ the lua%-chatmaid authors\n"))
    assert.truthy(read("csrc/chatmaid.c"):find("SPDX-License-Identifier: MIT", 1, true))
  end)
end)
