/* SPDX-License-Identifier: MIT */
/* chatmaid_preload: the C modules, lua-cjson and the embedded Lua modules into package.preload
 * (chatmaid_embed.h). Built only into build/embed/libchatmaid.a, never into a module. */
#include "lua.h"
#include "lauxlib.h"

#include "chatmaid_embed.h"
#include "embed_modules.h"

#ifndef LUA_PRELOAD_TABLE
#define LUA_PRELOAD_TABLE "_PRELOAD"
#endif
#ifndef LUA_LOADED_TABLE
#define LUA_LOADED_TABLE "_LOADED"
#endif

#ifndef CHATMAID_EMBED_NO_CJSON
int luaopen_cjson(lua_State *L);   /* lua-cjson, folded into the archive with local symbols */
#endif

/* package.preload loader: compiles the embedded source (text only, never bytecode) and runs
 * it with the arguments require gave the loader, as a file searcher would. */
static int embed_load(lua_State *L) {
  const cm_embed_module *m = (const cm_embed_module *)lua_touserdata(L, lua_upvalueindex(1));
  int nargs = lua_gettop(L);
  if (luaL_loadbufferx(L, (const char *)m->src, m->len, m->chunkname, "t") != LUA_OK)
    return luaL_error(L, "error loading embedded module '%s':\n\t%s", m->name,
                      lua_tostring(L, -1));
  lua_insert(L, 1);
  lua_call(L, nargs, 1);
  return 1;
}

#ifndef CHATMAID_EMBED_NO_CJSON
/* Whether `name` is already in the registry table `tname` (loaded or preloaded). */
static int embed_has(lua_State *L, const char *tname, const char *name) {
  int has;
  luaL_getsubtable(L, LUA_REGISTRYINDEX, tname);
  lua_getfield(L, -1, name);
  has = !lua_isnil(L, -1);
  lua_pop(L, 2);
  return has;
}
#endif

CHATMAID_EMBED_API void chatmaid_preload(lua_State *L) {
  const cm_embed_module *m;
  luaL_checkversion(L);   /* raises if the host's VM is not the Lua the archive was built for */
  luaL_checkstack(L, 4, "chatmaid_preload");
#ifndef CHATMAID_EMBED_NO_CJSON
  {
    int has_cjson = embed_has(L, LUA_LOADED_TABLE, "cjson") ||
                    embed_has(L, LUA_PRELOAD_TABLE, "cjson");
    luaL_getsubtable(L, LUA_REGISTRYINDEX, LUA_PRELOAD_TABLE);
    if (!has_cjson) {
      lua_pushcfunction(L, luaopen_cjson);
      lua_setfield(L, -2, "cjson");
    }
  }
#else
  luaL_getsubtable(L, LUA_REGISTRYINDEX, LUA_PRELOAD_TABLE);
#endif
  lua_pushcfunction(L, luaopen_chatmaid_core);
  lua_setfield(L, -2, "chatmaid.core");
  lua_pushcfunction(L, luaopen_chatmaid_redis_core);
  lua_setfield(L, -2, "chatmaid.redis.core");
  for (m = cm_embed_modules; m->name != NULL; m++) {
    lua_pushlightuserdata(L, (void *)m);
    lua_pushcclosure(L, embed_load, 1);
    lua_setfield(L, -2, m->name);
  }
  lua_pop(L, 1);
}
