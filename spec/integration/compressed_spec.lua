-- gzip responses: decoded transparently, and the size cap applies to the decoded bytes, so a
-- small compressed body cannot expand past max_body.
local raw_server = require "spec.support.raw_server"
local chatmaid = require "chatmaid"

local function gzip_response(json_body)
  local dir = os.tmpname()
  local f = assert(io.open(dir .. ".json", "wb"))
  f:write(json_body)
  f:close()
  assert(os.execute("gzip -9 -c " .. dir .. ".json > " .. dir .. ".gz"))
  f = assert(io.open(dir .. ".gz", "rb"))
  local gz = f:read("*a")
  f:close()
  local out = dir .. ".resp"
  f = assert(io.open(out, "wb"))
  f:write("HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Encoding: gzip\r\n"
          .. "Content-Length: " .. #gz .. "\r\n\r\n" .. gz)
  f:close()
  os.remove(dir .. ".json")
  os.remove(dir .. ".gz")
  return out, #gz
end

describe("compressed responses #integration", function()
  it("decodes a gzip body", function()
    local file = gzip_response('{"success":true,"data":{"name":"Gzip Inc"}}')
    local srv = raw_server.start(file)
    local c = assert(chatmaid.new{ api_key = "sk_test_gzip_0001", base_url = srv.url,
                                   max_retries = 0 })
    local a, err = c:account()
    c:close()
    srv:stop()
    os.remove(file)
    assert.is_nil(err)
    assert.equal("Gzip Inc", a.name)
  end)

  it("refuses a small gzip body that expands past max_body", function()
    local big = '{"success":true,"data":{"pad":"' .. string.rep("0", 4 * 1024 * 1024) .. '"}}'
    local file, gz_size = gzip_response(big)
    assert.truthy(gz_size < 64 * 1024)
    local srv = raw_server.start(file)
    local c = assert(chatmaid.new{ api_key = "sk_test_gzip_0001", base_url = srv.url,
                                   max_retries = 0, max_body = 1024 * 1024 })
    local _, err = c:account()
    c:close()
    srv:stop()
    os.remove(file)
    assert.equal("transport", err.kind)
    assert.equal("too_large", err.reason)
  end)
end)
