/* SPDX-License-Identifier: MIT */
/* The only place with LUA_VERSION_NUM checks: static, cm_-prefixed shims so that one source
 * builds for Lua 5.1, LuaJIT 2.1, 5.3 and 5.4 without clashing with symbols LuaJIT exports. */
#ifndef CM_COMPAT_H
#define CM_COMPAT_H

#include "lua.h"
#include "lauxlib.h"

#if LUA_VERSION_NUM < 502
#include <string.h>

static inline void cm_setfuncs(lua_State *L, const luaL_Reg *l, int nup) {
  luaL_checkstack(L, nup, "too many upvalues");
  for (; l->name != NULL; l++) {
    int i;
    for (i = 0; i < nup; i++) lua_pushvalue(L, -nup);
    lua_pushcclosure(L, l->func, nup);
    lua_setfield(L, -(nup + 2), l->name);
  }
  lua_pop(L, nup);
}

static inline void *cm_testudata(lua_State *L, int i, const char *tname) {
  void *p = lua_touserdata(L, i);
  if (p == NULL || !lua_getmetatable(L, i)) return NULL;
  luaL_getmetatable(L, tname);
  if (!lua_rawequal(L, -1, -2)) p = NULL;
  lua_pop(L, 2);
  return p;
}

static inline void cm_setmetatable(lua_State *L, const char *tname) {
  luaL_getmetatable(L, tname);
  lua_setmetatable(L, -2);
}

#define cm_rawlen(L, i)               lua_objlen((L), (i))
#define cm_newuserdatauv(L, sz, nuv)  lua_newuserdata((L), (sz))
#define cm_newlib(L, l)               (lua_newtable(L), cm_setfuncs((L), (l), 0))
#define cm_pushfail(L)                lua_pushnil(L)
#else
#define cm_setfuncs(L, l, n)          luaL_setfuncs((L), (l), (n))
#define cm_testudata(L, i, t)         luaL_testudata((L), (i), (t))
#define cm_setmetatable(L, t)         luaL_setmetatable((L), (t))
#define cm_rawlen(L, i)               lua_rawlen((L), (i))
#define cm_newlib(L, l)               luaL_newlib((L), (l))
#define cm_pushfail(L)                lua_pushnil(L)
#if LUA_VERSION_NUM >= 504
#define cm_newuserdatauv(L, sz, nuv)  lua_newuserdatauv((L), (sz), (nuv))
#else
#define cm_newuserdatauv(L, sz, nuv)  lua_newuserdata((L), (sz))
#endif
#endif

/* cjson 2.1 decodes every number as a float; 5.3+ shows 20 as "20.0". Integral floats become
 * integers there. 5.1 and LuaJIT have one number type, so nothing to do. */
#if LUA_VERSION_NUM >= 503
static inline int cm_integralize(lua_State *L, int idx) {
  lua_Number n;
  if (lua_isinteger(L, idx)) return 0;
  n = lua_tonumber(L, idx);
  if (n >= -9007199254740992.0 && n <= 9007199254740992.0 && n == (lua_Number)(lua_Integer)n) {
    lua_pushinteger(L, (lua_Integer)n);
    return 1;
  }
  return 0;
}
#else
#define cm_integralize(L, idx) 0
#endif

/* Lua 5.1 has no lua_Integer-checking variant that rejects floats; timeouts are integer ms. */
#define cm_checkinteger(L, i)         luaL_checkinteger((L), (i))

#if defined(__GNUC__)
#define CM_EXPORT __attribute__((visibility("default")))
#else
#define CM_EXPORT
#endif

#endif
