/* SPDX-License-Identifier: MIT */
/* libFuzzer harness over core.decode_envelope and core.decode_json (csrc/envelope.c),
 * compiled into the harness and called through an embedded Lua 5.4 state with the system's
 * lua-cjson, exactly as the module calls them. Input: one selector byte, then the body.
 * Selector bit 7: decode_json instead of decode_envelope; bits 0..6 pick the status.
 * Besides sanitizer findings the harness aborts when a result breaks the documented shape
 * (checked by the Lua function CHECK below): a JSON null reaching Lua, an array without
 * core.array_mt, a joined message that is not the messages joined by "; ". */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include "lua.h"
#include "lauxlib.h"
#include "lualib.h"

#include "envelope.h"

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static lua_State *L;
static unsigned long runs;

static const lua_Integer statuses[] = {
  200, 201, 204, 206, 299, 301, 302, 304, 400, 401, 403, 404, 409, 422, 429, 500, 502, 503
};

/* check(mode, array_mt, r1, r2, r3): raises a string describing the first broken property. */
static const char CHECK[] =
  "local function walk(v, mt, depth)\n"
  "  if depth > 200 then error('result nested deeper than the decoder allows') end\n"
  "  local t = type(v)\n"
  "  if t == 'userdata' then error('a JSON null reached Lua') end\n"
  "  if t ~= 'table' then return end\n"
  "  if rawget(v, 1) ~= nil and getmetatable(v) ~= mt then error('array without array_mt') end\n"
  "  for k, x in next, v do\n"
  "    if type(k) == 'userdata' then error('a null key') end\n"
  "    walk(x, mt, depth + 1)\n"
  "  end\n"
  "end\n"
  "return function(json, mt, a, b, c)\n"
  "  if a == nil then\n"
  "    if type(b) ~= 'string' then error('nil without a reason string') end\n"
  "    return\n"
  "  end\n"
  "  if json then\n"
  "    if type(a) ~= 'table' then error('decode_json returned a non-table') end\n"
  "    return walk(a, mt, 0)\n"
  "  end\n"
  "  if a == true then\n"
  "    if type(c) ~= 'boolean' then error('no enveloped flag') end\n"
  "    return walk(b, mt, 0)\n"
  "  end\n"
  "  if a ~= false or type(b) ~= 'table' then error('unexpected first result') end\n"
  "  walk(b, mt, 0)\n"
  "  local m = b.messages\n"
  "  if type(m) ~= 'table' or getmetatable(m) ~= mt then error('messages not an array') end\n"
  "  local parts = {}\n"
  "  for i = 1, #m do\n"
  "    local x = m[i]\n"
  "    if type(x) == 'string' or type(x) == 'number' then parts[#parts + 1] = tostring(x) end\n"
  "  end\n"
  "  local joined = table.concat(parts, '; ')\n"
  "  if joined == '' then\n"
  "    if b.message ~= b.error then error('message is not the error when no message') end\n"
  "  elseif b.message ~= joined then\n"
  "    error('joined message differs: ' .. tostring(b.message):sub(1, 80))\n"
  "  end\n"
  "end\n";

static int ref_env, ref_json, ref_mt, ref_check;

static void die(const char *what) {
  fprintf(stderr, "envelope_fuzz: %s\n", what);
  abort();
}

int LLVMFuzzerInitialize(int *argc, char ***argv) {
  (void)argc;
  (void)argv;
  if ((L = luaL_newstate()) == NULL) die("luaL_newstate failed");
  luaL_openlibs(L);
  lua_newtable(L);
  cm_envelope_open(L);                     /* requires cjson through package.cpath */
  lua_getfield(L, -1, "decode_envelope");
  ref_env = luaL_ref(L, LUA_REGISTRYINDEX);
  lua_getfield(L, -1, "decode_json");
  ref_json = luaL_ref(L, LUA_REGISTRYINDEX);
  lua_getfield(L, -1, "array_mt");
  ref_mt = luaL_ref(L, LUA_REGISTRYINDEX);
  lua_pop(L, 1);
  if (luaL_loadstring(L, CHECK) != LUA_OK || lua_pcall(L, 0, 1, 0) != LUA_OK)
    die(lua_tostring(L, -1));
  ref_check = luaL_ref(L, LUA_REGISTRYINDEX);
  return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  int json, nres;
  if (size < 1) return 0;
  json = (data[0] & 0x80) != 0;
  lua_settop(L, 0);
  lua_rawgeti(L, LUA_REGISTRYINDEX, ref_check);
  lua_pushboolean(L, json);
  lua_rawgeti(L, LUA_REGISTRYINDEX, ref_mt);
  lua_rawgeti(L, LUA_REGISTRYINDEX, json ? ref_json : ref_env);
  if (!json) lua_pushinteger(L, statuses[(data[0] & 0x7f) % (sizeof statuses / sizeof *statuses)]);
  lua_pushlstring(L, (const char *)data + 1, size - 1);
  /* The decoders raise only for a memory error or a Lua-side bug: both are findings. */
  if (lua_pcall(L, json ? 1 : 2, LUA_MULTRET, 0) != LUA_OK) die(lua_tostring(L, -1));
  nres = lua_gettop(L) - 3;
  if (nres < 1 || nres > 3) die("wrong number of results");
  lua_settop(L, 6);                        /* check, json, mt, r1, r2, r3 */
  if (lua_pcall(L, 5, 0, 0) != LUA_OK) die(lua_tostring(L, -1));
  /* A full collection now and then frees what an input built, so a use after free of a
   * result shows up under ASan close to the input that caused it. */
  if (++runs % 64 == 0) lua_gc(L, LUA_GCCOLLECT, 0);
  return 0;
}
