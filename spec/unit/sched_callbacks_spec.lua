-- on_done callbacks of tasks that finish in the same step all run, whatever their number:
-- the callback queue must never hold a hole that makes #q a wrong border (Lua 5.1 and LuaJIT
-- lost every third callback of a step that way, and examples/luv_loop.lua waited forever).
local chatmaid = require "chatmaid"

describe("task on_done callbacks #unit", function()
  local client
  before_each(function()
    client = assert(chatmaid.new{ api_key = "sk_test_x1", base_url = "http://127.0.0.1:1" })
  end)
  after_each(function() client:close() end)

  it("runs every callback of 1 to 17 tasks finishing in one step, in order", function()
    for n = 1, 17 do
      local order = {}
      for i = 1, n do
        client:spawn(function() return i end):on_done(function(t)
          order[#order + 1] = t:result()
        end)
      end
      assert.equal(0, client:step(0))
      local want = {}
      for i = 1, n do want[i] = i end
      assert.same(want, order)
    end
  end)

  it("runs a callback added from inside another callback, at the next step", function()
    local ran = {}
    local tasks = {}
    for i = 1, 3 do
      tasks[i] = client:spawn(function() return i end)
      tasks[i]:on_done(function()
        ran[#ran + 1] = "first " .. i
        if i == 2 then tasks[1]:on_done(function() ran[#ran + 1] = "late 1" end) end
      end)
    end
    client:step(0)
    client:step(0)
    assert.same({ "first 1", "first 2", "first 3", "late 1" }, ran)
  end)
end)
