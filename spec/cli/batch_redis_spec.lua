-- SPDX-License-Identifier: MIT
-- chatmaid batch --redis URL: the batch's starts are booked in the shared Redis limiter.
local R = require "spec.cli.run"
local F = require "spec.support.fixtures"
local rh = require "spec.support.redis_helper"
local redis = require "chatmaid.redis"

describe("chatmaid batch --redis #redis", function()
  local sb = F.block_sandbox({ rate_limit = false }, { reset = false })
  local srv = rh.serve()
  local env, dir

  setup(function()
    env = R.env(sb)
    dir = os.tmpname()
    os.remove(dir)
    assert(os.execute("mkdir -p " .. R.quote(dir)))
  end)

  teardown(function()
    if dir then os.execute("rm -rf " .. R.quote(dir)) end
  end)

  it("takes every start from the Redis limiter of the API key", function()
    local file = R.write(dir .. "/r.csv", "to,content\n+15557100001,a\n+15557100002,b\n"
                                          .. "+15557100003,c\n")
    local _, err, code = R.run({ "batch", file, "--from", "ph_primary", "--rate", "600",
                                 "--redis", srv.url }, { env = env })
    assert.are.equal(0, code, err)
    local key = redis.key_id("sk_test_sandbox_0000000000000001")
    assert.are.equal("3", srv:cli("LLEN", "chatmaid:rl:{" .. key .. "}:log"))
    assert.are.equal(3, sb:stats().messagesCreated)
  end)

  it("a bad --redis URL is a usage error that does not show the password", function()
    local file = R.write(dir .. "/u.csv", "to,content\n+15557100009,a\n")
    local _, err, code = R.run({ "batch", file, "--redis", "redis://:hunter2@h:0/x" },
                               { env = env })
    assert.are.equal(2, code)
    assert.truthy(err:find("--redis: chatmaid.redis.rate_limiter: bad url "
                           .. "'redis://:***@h:0/***'", 1, true), err)
    assert.falsy(err:find("hunter2", 1, true))
  end)
end)
