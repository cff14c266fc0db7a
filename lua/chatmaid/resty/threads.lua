-- SPDX-License-Identifier: MIT

--- Transfers side by side for the cosocket transport, one ngx.thread each.
-- Transfers side by side for the cosocket transport (chatmaid.sched's add/poll/cancel):
-- one ngx.thread per transfer. install(class) adds the methods to the transport's class.
-- @module chatmaid.resty.threads
local ngx = ngx   -- luacheck: ignore (nginx global; only used inside nginx)
local co_running = coroutine.running

local _M = {}

-- A client (and so its transport) serves every request and timer of a worker, each with a
-- scheduler of its own (chatmaid.resty.detect) numbering its tokens from 1: the transfers
-- in flight are kept per request (ngx.ctx), as the light threads belong to it anyway.
-- Threads are spawned by poll(), so the coroutine that polls is their parent and reaps them
-- with ngx.thread.wait (a finished thread nobody waits for stays as a zombie until its
-- parent ends: a long batch would pile them up). A semaphore wakes the poller.

local semaphore
local by_request = setmetatable({}, { __mode = "k" })   -- ngx.ctx -> { [transport] = st }

-- The transfers of this transport in the current request: { queue, threads, done, sem }.
local function state(self)
  local ctx = ngx.ctx
  local t = by_request[ctx]
  if not t then
    t = setmetatable({}, { __mode = "k" })
    by_request[ctx] = t
  end
  local st = t[self]
  if not st then
    semaphore = semaphore or require "ngx.semaphore"
    st = { queue = {}, threads = {}, done = {}, sem = semaphore.new() }
    t[self] = st
  end
  return st
end

local function run(self, st, token, req)
  local res, kind, msg = self:request(req)
  if not st.threads[token] then return end   -- cancelled
  local c = res or { kind = kind, message = msg }
  c.token = token
  st.done[#st.done + 1] = c
  if st.sleeping then
    st.sleeping = false
    st.sem:post(1)
  end
end

-- add(token, req) -> true | nil, kind, message
local T = {}

--- Queue a transfer; its thread starts at the next poll.
-- @param token the scheduler's token for this transfer
-- @tparam table req the request (as transport:request)
-- @treturn[1] boolean true
-- @return[2] nil
-- @treturn[2] string "validation"
-- @treturn[2] string message
function T:add(token, req)
  local perr = self.phase_error()
  if perr then return nil, "validation", perr end
  local st = state(self)
  st.queue[#st.queue + 1] = { token, req }
  st.threads[token] = true    -- the thread comes at the next poll
  return true
end

local function start_queued(self, st)
  local q = st.queue
  if q[1] == nil then return end
  st.queue = {}
  local parent = co_running()
  for i = 1, #q do
    local token, req = q[i][1], q[i][2]
    if st.threads[token] == true then
      local entry = { parent = parent }
      st.threads[token] = entry
      local th, err = ngx.thread.spawn(run, self, st, token, req)
      if th then
        entry.th = th
      else
        st.threads[token] = nil
        st.done[#st.done + 1] = { token = token, kind = "transport",
                                  message = "could not start an nginx light thread: "
                                            .. tostring(err) }
      end
    end
  end
end

--- Start queued transfers and collect finished ones, waiting up to wait_ms.
-- poll(wait_ms) -> completions { token, status, body, headers } | { token, kind, message }
-- @tparam number wait_ms how long to wait for one to finish (0: only yield to the event loop)
-- @treturn table completions: { token, status, body, headers } or { token, kind, message }
function T:poll(wait_ms)
  local st = state(self)
  start_queued(self, st)
  if st.done[1] == nil and next(st.threads) ~= nil then
    if wait_ms > 0 then
      st.sleeping = true
      st.sem:wait(wait_ms / 1000)
      st.sleeping = false
    else
      -- a step that must not wait still lets the event loop (and so the threads) run:
      -- a task yielding every step would otherwise spin the worker
      ngx.sleep(0)
    end
  end
  local done = st.done
  if done[1] == nil then return done end
  st.done = {}
  local me, threads = co_running(), st.threads
  for i = 1, #done do
    local e = threads[done[i].token]
    threads[done[i].token] = nil
    -- reaps the finished thread (only its parent may)
    if type(e) == "table" and e.th and e.parent == me then ngx.thread.wait(e.th) end
  end
  return done
end

--- How many transfers of this request are in flight or queued.
-- @treturn number
function T:pending()
  local n = 0
  for _ in pairs(state(self).threads) do n = n + 1 end
  return n
end

--- Cancel a transfer: its thread is killed (its socket closed), or its result dropped.
-- cancel(token): the transfer's thread is killed (its socket closed), or its result dropped.
-- @param token the transfer's token
-- @treturn boolean false when the token is unknown
function T:cancel(token)
  local st = state(self)
  local e = st.threads[token]
  if not e then return false end
  st.threads[token] = nil
  if type(e) == "table" and e.th and e.parent == co_running() then ngx.thread.kill(e.th) end
  return true
end

--- Add add, poll, pending and cancel to a transport class.
-- install(class): class:add/poll/pending/cancel (class.phase_error is used by add).
-- @tparam table class the class (its phase_error is used by add)
function _M.install(class)
  for k, f in pairs(T) do class[k] = f end
end

return _M
