/* SPDX-License-Identifier: MIT */
/* The embedded Lua state of the HTTP baselines: lua-cjson's encode and decode at fixed stack
 * slots, and the send body encoded the way the SDK encodes it. */
#ifndef BENCH_LUA_H
#define BENCH_LUA_H
#include "lua.h"
#include "lauxlib.h"
#include "lualib.h"

#include "bench_util.h"

enum { ENCODE = 1, DECODE = 2 };   /* stack slots of cjson.encode / cjson.decode */

static inline lua_State *bench_lua_open(void) {
  lua_State *L = luaL_newstate();
  luaL_openlibs(L);
  if (luaL_dostring(L, "local c = require 'cjson' return c.encode, c.decode") != LUA_OK)
    bench_die("require cjson", lua_tostring(L, -1));
  return L;
}

/* Pushes the JSON send body and returns it; it stays valid while it is on the stack. */
static inline const char *bench_encode_send(lua_State *L, size_t *len) {
  lua_pushvalue(L, ENCODE);
  lua_createtable(L, 0, 3);
  lua_pushliteral(L, "507f1f77bcf86cd799439011");
  lua_setfield(L, -2, "fromPhoneId");
  lua_pushliteral(L, "+15557654321");
  lua_setfield(L, -2, "to");
  lua_pushliteral(L, "Hello from the bench");
  lua_setfield(L, -2, "content");
  if (lua_pcall(L, 1, 1, 0) != LUA_OK) bench_die("encode", lua_tostring(L, -1));
  return lua_tolstring(L, -1, len);
}
#endif
