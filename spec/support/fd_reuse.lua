-- SPDX-License-Identifier: MIT
-- Counts descriptor numbers reused for a new socket while an event loop drives a client:
-- wraps client:fds() (which chatmaid.loop.luv calls after every step) and remembers the
-- socket inode behind each number. -> a function returning the count so far.
return function(client, uv)
  local seen, reused = {}, 0
  local fds = client.fds
  client.fds = function(self)
    local want = fds(self)
    for fd in pairs(want) do
      local st = uv.fs_fstat(fd)
      if st then
        if seen[fd] and seen[fd] ~= st.ino then reused = reused + 1 end
        seen[fd] = st.ino
      end
    end
    return want
  end
  return function() return reused end
end
