/* SPDX-License-Identifier: MIT */
/* Byte scans for the request validators (lua/chatmaid/validate.lua), which run for every
 * message sent and every batch item: in C one pass costs a few instructions a byte where a
 * Lua pattern costs ~200 (bench/batch-cost.md). These only measure; the rules' wording and
 * limits stay in validate.lua. */
#include <stddef.h>

#include "lua.h"
#include "lauxlib.h"
#include "compat.h"

#include "text.h"

/* UTF-16 length of UTF-8 text, or 0 with *bad = 1-based index of the first byte of the first
 * invalid sequence (overlong forms, surrogates, code points past U+10FFFF, truncated or bad
 * continuation bytes). */
static size_t utf16_length(const unsigned char *s, size_t len, size_t *bad) {
  size_t i = 0, n = 0;
  while (i < len) {
    unsigned c = s[i], cp, min;
    size_t extra, k;
    if (c < 0x80) { n++; i++; continue; }
    if (c >= 0xC2 && c <= 0xDF) { extra = 1; min = 0x80; cp = c & 0x1F; }
    else if (c >= 0xE0 && c <= 0xEF) { extra = 2; min = 0x800; cp = c & 0x0F; }
    else if (c >= 0xF0 && c <= 0xF4) { extra = 3; min = 0x10000; cp = c & 0x07; }
    else { *bad = i + 1; return 0; }
    for (k = 1; k <= extra; k++) {
      unsigned b;
      if (i + k >= len) { *bad = i + 1; return 0; }
      b = s[i + k];
      if (b < 0x80 || b > 0xBF) { *bad = i + 1; return 0; }
      cp = (cp << 6) | (b - 0x80);
    }
    if (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) { *bad = i + 1; return 0; }
    n += cp >= 0x10000 ? 2 : 1;
    i += extra + 1;
  }
  *bad = 0;
  return n;
}

/* core.utf16_length(s) -> n | nil, byte_index */
static int text_utf16_length(lua_State *L) {
  size_t len, bad, n;
  const char *s = luaL_checklstring(L, 1, &len);
  n = utf16_length((const unsigned char *)s, len, &bad);
  if (bad) {
    lua_pushnil(L);
    lua_pushinteger(L, (lua_Integer)bad);
    return 2;
  }
  lua_pushinteger(L, (lua_Integer)n);
  return 1;
}

/* core.has_control(s) -> true when s has a byte 0-31 or 127 (Lua's %c in the C locale). */
static int text_has_control(lua_State *L) {
  size_t len, i;
  const unsigned char *s = (const unsigned char *)luaL_checklstring(L, 1, &len);
  for (i = 0; i < len; i++)
    if (s[i] < 32 || s[i] == 127) break;
  lua_pushboolean(L, i < len);
  return 1;
}

/* core.is_e164(s) -> true for '+', a digit 1-9, then only digits, 3 to 16 bytes in all. */
static int text_is_e164(lua_State *L) {
  size_t len, i;
  const char *s = luaL_checklstring(L, 1, &len);
  int ok = len >= 3 && len <= 16 && s[0] == '+' && s[1] >= '1' && s[1] <= '9';
  for (i = 2; ok && i < len; i++) ok = s[i] >= '0' && s[i] <= '9';
  lua_pushboolean(L, ok);
  return 1;
}

void cm_text_open(lua_State *L) {
  static const luaL_Reg funcs[] = {
    {"utf16_length", text_utf16_length},
    {"has_control", text_has_control},
    {"is_e164", text_is_e164},
    {NULL, NULL}
  };
  cm_setfuncs(L, funcs, 0);
}
