rockspec_format = "3.0"
package = "chatmaid"
version = "scm-1"
source = { url = "git+https://github.com/lua-chatmaid/lua-chatmaid.git" }
description = {
  summary = "Chatmaid WhatsApp API client: a libcurl C core with an idiomatic Lua layer",
  detailed = [[
Send and track WhatsApp messages through the Chatmaid API: kept-alive libcurl transport,
structured errors, safe retries with idempotency keys, pagination, polling, batch sends,
webhook verification in C (OpenSSL HMAC-SHA256), a local sandbox and a CLI.]],
  license = "MIT",
  labels = { "whatsapp", "http", "curl", "api", "openresty" },
}
-- lua-cjson: the library itself. argparse: the `chatmaid` command and luasocket: the sandbox
-- (`chatmaid-sandbox`, `chatmaid sandbox`, chatmaid.sandbox.start), both commands this rock
-- installs, so they are dependencies too rather than a note: `luarocks install chatmaid`
-- gives commands that run. LuaRocks has no optional dependencies; a library-only user who
-- does not want them can pass --deps-mode none and install lua-cjson alone.
-- Where the system provides them (Debian's lua-cjson, lua-argparse, lua-socket, invisible to
-- LuaRocks), install offline with: luarocks make --deps-mode none <this rockspec>.
dependencies = { "lua >= 5.1, < 5.5", "lua-cjson >= 2.1", "argparse >= 0.6", "luasocket >= 3.0" }
external_dependencies = {
  -- Debian keeps curl.h in a multiarch include dir that LuaRocks does not search, while
  -- the compiler does: so look for the libraries.
  CURL = { library = "curl" },
  OPENSSL = { library = "crypto" },
  -- chatmaid.redis outside nginx (Debian: libhiredis-dev)
  HIREDIS = { library = "hiredis" },
}
test = { type = "busted" }
build = {
  type = "builtin",
  modules = {
    ["chatmaid.core"] = {
      sources = {
        "csrc/buf.c",
        "csrc/chatmaid.c",
        "csrc/clock.c",
        "csrc/envelope.c",
        "csrc/random.c",
        "csrc/redis.c",
        "csrc/session.c",
        "csrc/sigwatch.c",
        "csrc/text.c",
        "csrc/webhook.c",
        "csrc/webhook_core.c",
      },
      libraries = { "curl", "crypto", "hiredis" },
      incdirs = { "csrc", "$(CURL_INCDIR)", "$(OPENSSL_INCDIR)", "$(HIREDIS_INCDIR)" },
      libdirs = { "$(CURL_LIBDIR)", "$(OPENSSL_LIBDIR)", "$(HIREDIS_LIBDIR)" },
      defines = { "_POSIX_C_SOURCE=200809L" },
    },
    ["chatmaid.base"] = "lua/chatmaid/base.lua",
    ["chatmaid.batch"] = "lua/chatmaid/batch.lua",
    ["chatmaid.cli.account"] = "lua/chatmaid/cli/account.lua",
    ["chatmaid.cli.batch"] = "lua/chatmaid/cli/batch.lua",
    ["chatmaid.cli.csv"] = "lua/chatmaid/cli/csv.lua",
    ["chatmaid.cli"] = "lua/chatmaid/cli/init.lua",
    ["chatmaid.cli.messages"] = "lua/chatmaid/cli/messages.lua",
    ["chatmaid.cli.output"] = "lua/chatmaid/cli/output.lua",
    ["chatmaid.cli.phones"] = "lua/chatmaid/cli/phones.lua",
    ["chatmaid.cli.progress"] = "lua/chatmaid/cli/progress.lua",
    ["chatmaid.cli.sandbox"] = "lua/chatmaid/cli/sandbox.lua",
    ["chatmaid.cli.send"] = "lua/chatmaid/cli/send.lua",
    ["chatmaid.cli.webhook"] = "lua/chatmaid/cli/webhook.lua",
    ["chatmaid.client"] = "lua/chatmaid/client.lua",
    ["chatmaid.conversations"] = "lua/chatmaid/conversations.lua",
    ["chatmaid.errors"] = "lua/chatmaid/errors.lua",
    ["chatmaid.idempotency"] = "lua/chatmaid/idempotency.lua",
    ["chatmaid"] = "lua/chatmaid/init.lua",
    ["chatmaid.journal"] = "lua/chatmaid/journal.lua",
    ["chatmaid.options"] = "lua/chatmaid/options.lua",
    ["chatmaid.paginate"] = "lua/chatmaid/paginate.lua",
    ["chatmaid.poll"] = "lua/chatmaid/poll.lua",
    ["chatmaid.ratelimit"] = "lua/chatmaid/ratelimit.lua",
    ["chatmaid.redis"] = "lua/chatmaid/redis.lua",
    ["chatmaid.redis.campaign"] = "lua/chatmaid/redis/campaign.lua",
    ["chatmaid.redis.conn"] = "lua/chatmaid/redis/conn.lua",
    ["chatmaid.redis.limiter"] = "lua/chatmaid/redis/limiter.lua",
    ["chatmaid.redis.seen"] = "lua/chatmaid/redis/seen.lua",
    ["chatmaid.resty"] = "lua/chatmaid/resty.lua",
    ["chatmaid.resty.detect"] = "lua/chatmaid/resty/detect.lua",
    ["chatmaid.resty.limiter"] = "lua/chatmaid/resty/limiter.lua",
    ["chatmaid.resty.response"] = "lua/chatmaid/resty/response.lua",
    ["chatmaid.resty.threads"] = "lua/chatmaid/resty/threads.lua",
    ["chatmaid.resty.transport"] = "lua/chatmaid/resty/transport.lua",
    ["chatmaid.resty.webhook"] = "lua/chatmaid/resty/webhook.lua",
    ["chatmaid.retry"] = "lua/chatmaid/retry.lua",
    ["chatmaid.sandbox"] = "lua/chatmaid/sandbox.lua",
    ["chatmaid.sandbox.api"] = "lua/chatmaid/sandbox/api.lua",
    ["chatmaid.sandbox.app"] = "lua/chatmaid/sandbox/app.lua",
    ["chatmaid.sandbox.cli"] = "lua/chatmaid/sandbox/cli.lua",
    ["chatmaid.sandbox.conn"] = "lua/chatmaid/sandbox/conn.lua",
    ["chatmaid.sandbox.control"] = "lua/chatmaid/sandbox/control.lua",
    ["chatmaid.sandbox.conversations"] = "lua/chatmaid/sandbox/conversations.lua",
    ["chatmaid.sandbox.defaults"] = "lua/chatmaid/sandbox/defaults.lua",
    ["chatmaid.sandbox.faults"] = "lua/chatmaid/sandbox/faults.lua",
    ["chatmaid.sandbox.http"] = "lua/chatmaid/sandbox/http.lua",
    ["chatmaid.sandbox.json"] = "lua/chatmaid/sandbox/json.lua",
    ["chatmaid.sandbox.responses"] = "lua/chatmaid/sandbox/responses.lua",
    ["chatmaid.sandbox.rules"] = "lua/chatmaid/sandbox/rules.lua",
    ["chatmaid.sandbox.scheduler"] = "lua/chatmaid/sandbox/scheduler.lua",
    ["chatmaid.sandbox.server"] = "lua/chatmaid/sandbox/server.lua",
    ["chatmaid.sandbox.store"] = "lua/chatmaid/sandbox/store.lua",
    ["chatmaid.sandbox.util"] = "lua/chatmaid/sandbox/util.lua",
    ["chatmaid.sandbox.webhooks"] = "lua/chatmaid/sandbox/webhooks.lua",
    ["chatmaid.sched"] = "lua/chatmaid/sched.lua",
    ["chatmaid.transport"] = "lua/chatmaid/transport.lua",
    ["chatmaid.url"] = "lua/chatmaid/url.lua",
    ["chatmaid.validate"] = "lua/chatmaid/validate.lua",
    ["chatmaid.webhook"] = "lua/chatmaid/webhook.lua",
  },
  install = { bin = {
    ["chatmaid"] = "bin/chatmaid",
    ["chatmaid-sandbox"] = "bin/chatmaid-sandbox",
  } },
}
