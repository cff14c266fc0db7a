/* SPDX-License-Identifier: MIT */
/* Idempotency keys and jitter seeds from OpenSSL's CSPRNG, never from math.random. */
#include <stdio.h>

#include "lua.h"
#include "lauxlib.h"
#include "compat.h"

#include <openssl/rand.h>

#include "random.h"

/* RFC 4122 version 4: 122 random bits, version nibble 4, variant bits 10. */
static int random_uuid4(lua_State *L) {
  unsigned char b[16];
  char out[37];
  if (RAND_bytes(b, sizeof b) != 1)
    return luaL_error(L, "chatmaid.core: the system random generator failed");
  b[6] = (unsigned char)((b[6] & 0x0f) | 0x40);
  b[8] = (unsigned char)((b[8] & 0x3f) | 0x80);
  snprintf(out, sizeof out,
           "%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-%02x%02x%02x%02x%02x%02x",
           b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7], b[8], b[9], b[10], b[11], b[12],
           b[13], b[14], b[15]);
  lua_pushlstring(L, out, 36);
  return 1;
}

static int random_bytes(lua_State *L) {
  unsigned char b[256];
  lua_Integer n = luaL_checkinteger(L, 1);
  luaL_argcheck(L, n >= 0 && n <= (lua_Integer)sizeof b, 1, "must be 0..256");
  if (RAND_bytes(b, (int)n) != 1)
    return luaL_error(L, "chatmaid.core: the system random generator failed");
  lua_pushlstring(L, (const char *)b, (size_t)n);
  return 1;
}

void cm_random_open(lua_State *L) {
  static const luaL_Reg funcs[] = {
    {"uuid4", random_uuid4},
    {"random_bytes", random_bytes},
    {NULL, NULL}
  };
  cm_setfuncs(L, funcs, 0);
}
