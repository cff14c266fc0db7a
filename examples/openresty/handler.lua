-- SPDX-License-Identifier: MIT
-- POST /notify?to=+15557654321: send a message. The work is in notify.lua, a module, so its
-- client is made once per worker and reused (this chunk itself runs for every request).
require("notify").handle()
