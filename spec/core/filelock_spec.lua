-- SPDX-License-Identifier: MIT
-- core.lock_file: one holder per file (also within one process), the holder's pid told to a
-- second process, the file created 0600, a symbolic link or a non-regular file refused, I/O
-- through the lock's descriptor, and close/__gc releasing it.
local core = require "chatmaid.core"
local files = require "spec.support.files"
local mode = files.mode

describe("core.lock_file", function()
  local dir
  local get_dir = files.block_dir()
  before_each(function() dir = get_dir() end)

  it("creates the file 0600, holds it once, reads and appends through its descriptor",
     function()
    local path = dir .. "/a"
    local k = assert(core.lock_file(path))
    assert.are.equal("600", mode(path))
    local none, kind, msg = core.lock_file(path)
    assert.is_nil(none)
    assert.are.equal("busy", kind)
    assert.are.equal(path .. " is in use by another writer (pid unknown)", msg)
    assert.is_true(k:append("one\n"))
    assert.is_true(k:append(("x"):rep(20000) .. "\n"))
    assert.are.equal("one\n" .. ("x"):rep(20000) .. "\n", k:read())
    assert.is_true(k:truncate())
    assert.are.equal("", k:read())
    assert.are.equal("chatmaid.filelock (held)", tostring(k))
    assert.is_true(k:close())
    assert.is_true(k:close())
    assert.are.equal("chatmaid.filelock (closed)", tostring(k))
    assert.has_error(function() k:read() end, "attempt to use a closed file lock")
    do
      local again = assert(core.lock_file(path))   -- released by close
      assert.are.equal("chatmaid.filelock (held)", tostring(again))
    end
    collectgarbage()
    collectgarbage()
    assert.is_truthy(core.lock_file(path))          -- released by __gc
  end)

  it("tells another process the holder's pid", function()
    local path = dir .. "/b"
    local k = assert(core.lock_file(path))
    local lua = os.getenv("CHATMAID_LUA") or "lua5.4"
    local p = io.popen(lua .. " -e " .. string.format("%q", "package.cpath = "
      .. string.format("%q", package.cpath) .. " print(select(2, require('chatmaid.core')"
      .. ".lock_file('" .. path .. "')), select(4, require('chatmaid.core').lock_file('"
      .. path .. "')))"))
    local out = p:read("*a")
    p:close()
    local me = require("spec.support.proc").pid()
    assert.are.equal("busy\t" .. me .. "\n", out)
    k:close()
  end)

  it("refuses a symbolic link, a directory, a missing directory; raises on a bad path",
     function()
    local target = dir .. "/target"
    assert(io.open(target, "w")):close()
    os.execute("ln -s " .. target .. " " .. dir .. "/link")
    assert.are.same({ nil, "symlink", dir .. "/link is a symbolic link: give the path of the"
                      .. " file itself" }, { core.lock_file(dir .. "/link") })
    assert.are.same({ nil, "not_regular", dir .. " is not a regular file" },
                    { core.lock_file(dir) })
    assert.are.same({ nil, "open", "cannot open " .. dir .. "/no/such: No such file or"
                      .. " directory" }, { core.lock_file(dir .. "/no/such") })
    assert.has_error(function() core.lock_file("") end)
    assert.has_error(function() core.lock_file("a\0b") end)
    assert.has_error(function() core.lock_file() end)
  end)

  -- issue 22 item 3 as an attacker sees it: a journal planted by another user (who can read
  -- it, and write "confirmed" lines into it) is refused; one of ours left readable by others
  -- (an older version made it 0644) is made 0600 before it is used.
  it("refuses a file owned by another user; lock:private() makes a file of ours 0600",
     function()
    local mine = dir .. "/old"
    assert(io.open(mine, "w")):close()
    os.execute("chmod 0666 '" .. mine .. "'")
    local k = assert(core.lock_file(mine))
    assert.are.equal("666", mode(mine))     -- not before the caller knows what the file is
    assert.is_true(k:private())
    assert.are.equal("600", mode(mine))
    k:close()
    if files.uid() ~= 0 then return end   -- chown needs root (CI runs as root)
    local theirs = dir .. "/planted"
    assert(io.open(theirs, "w")):close()
    os.execute("chmod 0666 '" .. theirs .. "'; chown nobody '" .. theirs .. "'")
    local uid = assert(files.uid_of("nobody"))
    assert.are.same({ nil, "not_owner", theirs .. " belongs to another user (uid " .. uid
      .. "): a journal must be yours alone; remove it or give a path of your own" },
      { core.lock_file(theirs) })
    assert.are.equal("666", mode(theirs))   -- left as it was
  end)

  -- `batch --new` renames the locked journal aside, lets it go and locks a new one at the
  -- same path. A process that opened the path just before the rename and took the lock just
  -- after it held a lock on the moved file, believed itself the journal's one writer, and
  -- ran the old campaign beside the new one. A worker here does that rename-and-release
  -- over and over for 2 s while this process locks the path: whenever it holds the lock,
  -- the file it locked must be the one at the path (without the check after flock, a few
  -- per second were not).
  it("never holds a lock on a file renamed away from the path meanwhile", function()
    local path = dir .. "/moving"
    local mover = require("spec.support.workers").spawn([[
      local core = require "chatmaid.core"
      local path = ...
      local t_end, gen = core.monotime() + 2, 0
      while core.monotime() < t_end do
        local k = core.lock_file(path)
        if k then
          gen = gen + 1
          k:truncate()
          k:append(tostring(gen))
          os.rename(path, path .. ".aside")
          k:close()
        end
      end
      print("moved " .. gen)
    ]], { path })
    local t_end, held, stale = core.monotime() + 2, 0, 0
    while core.monotime() < t_end do
      local k = core.lock_file(path)
      if k then
        held = held + 1
        local mine = k:read()
        local f = io.open(path, "rb")
        local there = f and f:read("*a")
        if f then f:close() end
        if mine ~= there then stale = stale + 1 end
        k:close()
      end
    end
    local out = mover:wait()
    assert.is_true(tonumber(out:match("moved (%d+)") or 0) > 10, out)
    assert.is_true(held > 100, held)
    assert.are.equal(0, stale)
  end)
end)
