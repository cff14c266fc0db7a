-- SPDX-License-Identifier: MIT
-- core.fdwatch (Linux): the epoll set chatmaid.loop.luv watches instead of each socket. Real
-- TCP sockets on 127.0.0.1 (LuaSocket); drain() says how many sockets were ready.
local core = require "chatmaid.core"
local socket = require "socket"

if not core.fdwatch then
  describe("core.fdwatch", function()
    pending("core.fdwatch is Linux only (epoll); chatmaid.loop.luv watches each socket here")
  end)
  return
end

-- A connected pair: a (ours, watched) and b (the peer that writes to it).
local function pair()
  local srv = assert(socket.bind("127.0.0.1", 0))
  local ip, port = srv:getsockname()
  local a = assert(socket.connect(ip, port))
  local b = assert(srv:accept())
  srv:close()
  return a, b
end

describe("core.fdwatch", function()
  local w
  before_each(function() w = assert(core.fdwatch()) end)
  after_each(function() w:close() end)

  it("is an epoll descriptor that reports each ready socket once until set() re-arms it",
     function()
    local a, b = pair()
    assert.is_true(w:fd() >= 0)
    assert.is_true(w:set(a:getfd(), "r"))
    assert.equal(0, w:drain())                 -- nothing to read yet
    b:send("x")
    socket.sleep(0.01)
    assert.equal(1, w:drain())
    assert.equal(0, w:drain())                 -- one-shot: disarmed until set() again
    assert.is_true(w:set(a:getfd(), "r"))
    assert.equal(1, w:drain())                 -- still unread: level-triggered again
    assert.equal("x", a:receive(1))
    assert.is_true(w:set(a:getfd(), "r"))
    assert.equal(0, w:drain())
    assert.is_true(w:set(a:getfd(), "w"))      -- a connected socket is writable
    assert.equal(1, w:drain())
    assert.is_true(w:set(a:getfd(), "rw"))
    assert.equal(1, w:drain())
    a:close(); b:close()
  end)

  it("removes with set(fd, nil), also for a descriptor already closed", function()
    local a, b = pair()
    local fd = a:getfd()
    assert.is_true(w:set(fd, "w"))
    assert.is_true(w:set(fd, nil))
    assert.equal(0, w:drain())
    a:close()
    assert.is_true(w:set(fd, nil))             -- closed: the kernel dropped it already
    b:close()
  end)

  it("returns false for a descriptor that is not open", function()
    local a, b = pair()
    local fd = a:getfd()
    a:close(); b:close()
    assert.is_false(w:set(fd, "r"))
  end)

  it("watches the new socket when a closed descriptor's number is reused", function()
    local a, b = pair()
    local fd = a:getfd()
    assert.is_true(w:set(fd, "r"))
    local srv = assert(socket.bind("127.0.0.1", 0))   -- takes the lowest free number first
    a:close(); b:close()                       -- the registration left with the socket
    local ip, port = srv:getsockname()
    local c = assert(socket.connect(ip, port)) -- the lowest free number: a's
    local reused = c:getfd() == fd
    local d = assert(srv:accept())
    srv:close()
    if reused then
      assert.is_true(w:set(fd, "r"))           -- a new registration, not an error
      assert.equal(0, w:drain())
      d:send("y")
      socket.sleep(0.01)
      assert.equal(1, w:drain())
    end
    c:close(); d:close()
    assert.is_true(reused, "descriptor " .. math.floor(fd) .. " was not reused by the next socket")
  end)

  it("raises on bad arguments and after close(); close() is idempotent", function()
    assert.has_error(function() w:set(-1, "r") end)
    assert.has_error(function() w:set(0, "x") end)
    assert.has_error(function() w:set("a", "r") end)
    assert.equal("chatmaid.fdwatch (open)", tostring(w))
    assert.is_true(w:close())
    assert.is_true(w:close())
    assert.equal("chatmaid.fdwatch (closed)", tostring(w))
    assert.has_error(function() w:fd() end, "chatmaid.core: fdwatch used after close()")
    assert.has_error(function() w:set(1, "r") end, "chatmaid.core: fdwatch used after close()")
    assert.has_error(function() w:drain() end, "chatmaid.core: fdwatch used after close()")
  end)
end)
