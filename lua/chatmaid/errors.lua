-- SPDX-License-Identifier: MIT

--- Error objects: every failure is one (docs/reference/errors.md).
-- The only place where error objects are built. Callers branch on err.kind and log with
-- tostring(err); no error ever carries the API key or a webhook secret.
-- @module chatmaid.errors
local _M = {}

-- The stable kinds, and whether a failure of that kind may be retried by default.
_M.kinds = {
  validation = false, auth = false, permission = false, not_found = false,
  invalid_request = false, rate_limited = true, server = true, timeout = true,
  transport = true, decode = false, signature = false,
  -- the API answered an idempotency key with another message (err.message_returned)
  idempotency_conflict = false,
  -- send_batch stopped early: err.results, err.summary, err.cause
  interrupted = false,
  cancelled = false,   -- task:cancel() or client:close() ended the task (chatmaid.sched)
  -- Redis lost a shared campaign's state (chatmaid.redis.campaign): not finished, resume it
  state_lost = false,
}

local mt = {}
mt.__index = mt

function mt.__tostring(e)
  local where = {}
  if e.method and e.path then where[#where + 1] = e.method .. " " .. e.path end
  if e.status then where[#where + 1] = "HTTP " .. tostring(e.status) end
  if e.attempts and e.attempts > 1 then where[#where + 1] = e.attempts .. " attempts" end
  if e.request_id then where[#where + 1] = "request id " .. tostring(e.request_id) end
  local s = "chatmaid " .. e.kind .. ": " .. tostring(e.message)
  if #where > 0 then s = s .. " (" .. table.concat(where, ", ") .. ")" end
  return s
end

--- Make an error object.
-- errors.new(kind, message, fields) -> err
-- fields are copied onto the error (status, messages, error, retry_after, method, path, ...).
-- @tparam string kind one of errors.kinds
-- @tparam string message readable text
-- @tparam[opt] table fields copied onto the error
-- @treturn table the error (tostring gives one line)
-- @raise on an unknown kind
function _M.new(kind, message, fields)
  if _M.kinds[kind] == nil then
    error("chatmaid.errors: unknown error kind '" .. tostring(kind) .. "'", 2)
  end
  local e = { kind = kind, message = message }
  if fields then
    for k, v in pairs(fields) do e[k] = v end
  end
  if e.retryable == nil then e.retryable = _M.kinds[kind] end
  return setmetatable(e, mt)
end

--- Whether v is an error object.
-- @param v any value
-- @treturn boolean
function _M.is(v)
  return getmetatable(v) == mt
end

--- The kind of an HTTP error status.
-- HTTP status -> kind, in the spirit of stripe-python's specific_v1_api_error.
-- @tparam number status an HTTP status
-- @treturn string the kind
function _M.kind_for_status(status)
  if status == 401 then return "auth"
  elseif status == 403 then return "permission"
  elseif status == 404 then return "not_found"
  elseif status == 429 then return "rate_limited"
  elseif status >= 500 then return "server"
  else return "invalid_request" end
end

return _M
