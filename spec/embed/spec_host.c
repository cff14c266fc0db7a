/* SPDX-License-Identifier: MIT */
/* The spec host for the static embed build (spec/embed/embed_spec.lua): a Lua 5.4 state with
 * only libchatmaid.a's preloads to find modules by. package.path and package.cpath are empty
 * and every searcher but the preload one is removed, so a module that is not compiled into the
 * archive cannot come from disk.
 *   spec_host 'lua code' [args...]     the code gets the args as ... */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lua.h"
#include "lauxlib.h"
#include "lualib.h"

#include "chatmaid_embed.h"

static const char lockdown[] =
  "package.path = '' package.cpath = ''\n"
  "for i = #package.searchers, 2, -1 do table.remove(package.searchers, i) end\n";

/* SPEC_HOST_OWN_CJSON=1: a host with its own "cjson" preloaded before chatmaid_preload. */
static int own_cjson(lua_State *L) {
  lua_newtable(L);
  lua_pushboolean(L, 1);
  lua_setfield(L, -2, "host_cjson");
  return 1;
}

static int traceback(lua_State *L) {
  luaL_traceback(L, L, lua_tostring(L, 1), 1);
  return 1;
}

static int run(lua_State *L, const char *code, size_t len, const char *name, int nargs,
               char **args) {
  int i, status;
  lua_settop(L, 0);
  lua_pushcfunction(L, traceback);
  status = luaL_loadbufferx(L, code, len, name, "t");
  if (status != LUA_OK) return status;
  for (i = 0; i < nargs; i++) lua_pushstring(L, args[i]);
  return lua_pcall(L, nargs, 0, 1);
}

int main(int argc, char **argv) {
  lua_State *L;
  int status;
  if (argc < 2) {
    fprintf(stderr, "usage: %s 'lua code' [args...]\n", argv[0]);
    return 2;
  }
  L = luaL_newstate();
  if (L == NULL) return 1;
  luaL_openlibs(L);
  if (getenv("SPEC_HOST_OWN_CJSON") != NULL) {
    luaL_getsubtable(L, LUA_REGISTRYINDEX, LUA_PRELOAD_TABLE);
    lua_pushcfunction(L, own_cjson);
    lua_setfield(L, -2, "cjson");
    lua_pop(L, 1);
  }
  chatmaid_preload(L);
  status = run(L, lockdown, sizeof lockdown - 1, "=lockdown", 0, NULL);
  if (status == LUA_OK) status = run(L, argv[1], strlen(argv[1]), "=spec", argc - 2, argv + 2);
  if (status != LUA_OK) fprintf(stderr, "spec_host: %s\n", lua_tostring(L, -1));
  lua_close(L);
  return status == LUA_OK ? 0 : 1;
}
