/* SPDX-License-Identifier: MIT */
/* libFuzzer harness over chatmaid.redis.core's reply path (csrc/redis.c compiled in, with the
 * system's libhiredis): the input is what a server answers to one command. Each run opens a
 * real connection over a unix socket of the harness's own, sends GET through conn:send, then
 * the harness accepts, writes the input and closes; conn:pump reads, parses (hiredis's reader
 * with our caps) and turns the reply into Lua values, exactly as the module does. Besides
 * sanitizer findings the harness aborts when a result breaks the documented shape (checked by
 * CHECK below): a reply that is not a string, integer, false or an array of those nested at
 * most 8 deep, or a failure whose kind is not one of the documented ones. */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "lua.h"
#include "lauxlib.h"
#include "lualib.h"

#include "redis.h"

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static lua_State *L;
static int listener = -1;
static char sock_path[108];
static const uint8_t *cur_data;
static size_t cur_size;
static int ref_run;

static const char RUN[] =
  "local rcore, feed, path = ...\n"
  "local KINDS = { redis = true, protocol = true, closed = true, nomem = true,\n"
  "                transport = true }\n"
  "local function walk(v, depth)\n"
  "  if depth > 8 then error('a reply nested deeper than 8') end\n"
  "  local t = type(v)\n"
  "  if t == 'table' then\n"
  "    for i = 1, #v do walk(v[i], depth + 1) end\n"
  "    for k in pairs(v) do\n"
  "      if math.type(k) ~= 'integer' or k < 1 or k > #v then error('a hole or a key') end\n"
  "    end\n"
  "  elseif t ~= 'string' and math.type(v) ~= 'integer' and v ~= false then\n"
  "    error('a reply value of type ' .. t)\n"
  "  end\n"
  "end\n"
  "return function()\n"
  "  local c = assert(rcore.open(path, 0))\n"
  "  local ok = c:pump(1000)\n"
  "  if ok ~= true then error('no connection to the harness socket') end\n"
  "  assert(c:send({ 'GET', 'k' }))\n"
  "  local r0, k0 = c:pump(0)\n"          /* the command goes out before the answer */
  "  if r0 ~= nil or k0 ~= 'again' then error('GET not sent: ' .. tostring(k0)) end\n"
  "  feed()\n"
  "  for _ = 1, 100000 do\n"
  "    local r, kind, msg = c:pump(1000)\n"
  "    if r ~= nil then\n"
  "      if r == true then error('pump answered true with a reply due') end\n"
  "      walk(r, 1)\n"
  "      c:close()\n"
  "      return\n"
  "    end\n"
  "    if kind ~= 'again' then\n"
  "      if not KINDS[kind] or type(msg) ~= 'string' then\n"
  "        error('undocumented failure ' .. tostring(kind) .. ' ' .. tostring(msg))\n"
  "      end\n"
  "      c:close()\n"
  "      return\n"
  "    end\n"
  "  end\n"
  "  error('pump never finished')\n"
  "end\n";

static void die(const char *what) {
  fprintf(stderr, "redis_fuzz: %s\n", what);
  abort();
}

/* feed(): accepts the connection the run opened, writes the input, closes. */
static int feed(lua_State *l) {
  int fd = accept(listener, NULL, NULL);
  size_t off = 0;
  if (fd < 0) return luaL_error(l, "accept: %s", strerror(errno));
  while (off < cur_size) {
    ssize_t n = write(fd, cur_data + off, cur_size - off);
    if (n <= 0) break;
    off += (size_t)n;
  }
  close(fd);
  return 0;
}

int LLVMFuzzerInitialize(int *argc, char ***argv) {
  struct sockaddr_un a;
  char dir[] = "/tmp/chatmaid-redis-fuzz.XXXXXX";
  (void)argc;
  (void)argv;
  if (mkdtemp(dir) == NULL) die("mkdtemp");
  snprintf(sock_path, sizeof sock_path, "%s/s", dir);
  listener = socket(AF_UNIX, SOCK_STREAM, 0);
  if (listener < 0) die("socket");
  memset(&a, 0, sizeof a);
  a.sun_family = AF_UNIX;
  snprintf(a.sun_path, sizeof a.sun_path, "%s", sock_path);
  if (bind(listener, (struct sockaddr *)&a, sizeof a) != 0 || listen(listener, 4) != 0)
    die("bind/listen");
  L = luaL_newstate();
  if (L == NULL) die("lua state");
  luaL_openlibs(L);
  if (luaL_loadbuffer(L, RUN, sizeof RUN - 1, "=redis_fuzz") != LUA_OK) die(lua_tostring(L, -1));
  luaL_requiref(L, "chatmaid.redis.core", luaopen_chatmaid_redis_core, 0);
  lua_pushcfunction(L, feed);
  lua_pushstring(L, sock_path);
  if (lua_pcall(L, 3, 1, 0) != LUA_OK) die(lua_tostring(L, -1));
  ref_run = luaL_ref(L, LUA_REGISTRYINDEX);
  return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  cur_data = data;
  cur_size = size;
  lua_rawgeti(L, LUA_REGISTRYINDEX, ref_run);
  if (lua_pcall(L, 0, 0, 0) != LUA_OK) die(lua_tostring(L, -1));
  lua_gc(L, LUA_GCCOLLECT, 0);
  return 0;
}
