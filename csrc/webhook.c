/* SPDX-License-Identifier: MIT */
/* core.webhook_sign / core.webhook_verify: Lua bindings over webhook_core.c, which holds
 * the parser and the crypto with no Lua in it so that fuzz/ can reach it. */
#include <stdio.h>
#include <string.h>

#include "lua.h"
#include "lauxlib.h"
#include "compat.h"

#include "webhook.h"
#include "webhook_core.h"

#define CACHE_MT "chatmaid.webhook_cache"
#define T_MAX 999999999999999LL   /* CM_WH_MAX_TDIGITS digits */

/* The keyed-HMAC cache is an upvalue of both functions: one per Lua state, freed by
 * __gc, holding only C memory (no Lua references), so no raise can leak it. */
static cm_wh_cache *get_cache(lua_State *L) {
  return (cm_wh_cache *)lua_touserdata(L, lua_upvalueindex(1));
}

static int cache_gc(lua_State *L) {
  cm_wh_cache_clear((cm_wh_cache *)luaL_checkudata(L, 1, CACHE_MT));
  return 0;
}

static const char *reason_name(int r) {
  switch (r) {
    case CM_WH_MALFORMED: return "malformed_header";
    case CM_WH_NO_SIGNATURE: return "no_signature";
    case CM_WH_TOLERANCE: return "timestamp_out_of_tolerance";
    default: return "mismatch";
  }
}

/* t never exceeds T_MAX, which fits lua_Integer on 64-bit builds and a double always. */
static void push_t(lua_State *L, long long t) {
  if ((long long)(lua_Integer)t == t) lua_pushinteger(L, (lua_Integer)t);
  else lua_pushnumber(L, (lua_Number)t);
}

/* webhook_sign(body, secret, t) -> lowercase hex HMAC-SHA256(secret, t .. "." .. body) */
static int webhook_sign(lua_State *L) {
  size_t blen, klen;
  const char *body = luaL_checklstring(L, 1, &blen);
  const char *key = luaL_checklstring(L, 2, &klen);
  lua_Integer t = luaL_checkinteger(L, 3);
  char tstr[32], hex[64];
  int tlen;
  luaL_argcheck(L, klen > 0, 2, "secret must not be empty");
  luaL_argcheck(L, t >= 0 && (long long)t <= T_MAX, 3, "must be an integer in 0..10^15-1");
  tlen = snprintf(tstr, sizeof tstr, "%lld", (long long)t);
  if (cm_wh_sign(get_cache(L), key, klen, tstr, (size_t)tlen, body, blen, hex) != CM_WH_OK)
    return luaL_error(L, "chatmaid.core: HMAC-SHA256 failed (out of memory?)");
  lua_pushlstring(L, hex, sizeof hex);
  return 1;
}

/* webhook_verify(body, header, secrets, tolerance, now)
 *   -> true, t | false, reason, t_or_nil     (see docs/DESIGN.md) */
static int webhook_verify(lua_State *L) {
  cm_wh_secret secrets[CM_WH_MAX_SECRETS];
  size_t blen, hlen, n, i;
  const char *body = luaL_checklstring(L, 1, &blen);
  const char *header = luaL_optlstring(L, 2, "", &hlen);
  lua_Number tolerance = luaL_checknumber(L, 4);
  lua_Number now = luaL_checknumber(L, 5);
  long long t = 0;
  int has_t = 0, r;
  luaL_checktype(L, 3, LUA_TTABLE);
  n = cm_rawlen(L, 3);
  luaL_argcheck(L, n >= 1 && n <= CM_WH_MAX_SECRETS, 3, "must hold 1 to 16 secrets");
  luaL_argcheck(L, tolerance > 0, 4, "must be a positive number of seconds");
  luaL_argcheck(L, now == now, 5, "must be a number, not NaN");
  /* The secret strings stay on the stack, so their bytes outlive the call below. */
  luaL_checkstack(L, (int)n, "too many secrets");
  for (i = 0; i < n; i++) {
    lua_rawgeti(L, 3, (int)i + 1);
    if (lua_type(L, -1) != LUA_TSTRING)
      return luaL_argerror(L, 3, "secrets must be non-empty strings");
    secrets[i].key = lua_tolstring(L, -1, &secrets[i].len);
    luaL_argcheck(L, secrets[i].len > 0, 3, "secrets must be non-empty strings");
  }
  /* No Lua calls from here until the results: cm_wh_verify frees what it acquires. */
  r = cm_wh_verify(get_cache(L), body, blen, header, hlen, secrets, n, (double)tolerance,
                   (double)now, &t, &has_t);
  if (r == CM_WH_EFAIL)
    return luaL_error(L, "chatmaid.core: HMAC-SHA256 failed (out of memory?)");
  if (r == CM_WH_OK) {
    lua_pushboolean(L, 1);
    push_t(L, t);
    return 2;
  }
  lua_pushboolean(L, 0);
  lua_pushstring(L, reason_name(r));
  if (has_t) push_t(L, t);
  else lua_pushnil(L);
  return 3;
}

void cm_webhook_open(lua_State *L) {
  static const luaL_Reg funcs[] = {
    {"webhook_sign", webhook_sign},
    {"webhook_verify", webhook_verify},
    {NULL, NULL}
  };
  cm_wh_cache *c;
  if (luaL_newmetatable(L, CACHE_MT)) {
    lua_pushcfunction(L, cache_gc);
    lua_setfield(L, -2, "__gc");
  }
  lua_pop(L, 1);
  c = (cm_wh_cache *)cm_newuserdatauv(L, sizeof *c, 0);
  memset(c, 0, sizeof *c);      /* empty cache: __gc-safe */
  cm_setmetatable(L, CACHE_MT);
  cm_setfuncs(L, funcs, 1);     /* module table; the cache is the shared upvalue */
}
