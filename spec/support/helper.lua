-- SPDX-License-Identifier: MIT
-- Loaded by busted before every spec file (.busted `helper`): makes lua/ and the built core
-- loadable from any working directory and offers shared fixtures through spec.support.fixtures.
local root = debug.getinfo(1, "S").source:match("^@(.*)spec/support/helper%.lua$") or "./"
if root == "" then root = "./" end
package.path = root .. "lua/?.lua;" .. root .. "lua/?/init.lua;" .. root .. "?.lua;"
               .. package.path
