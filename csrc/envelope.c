/* SPDX-License-Identifier: MIT */
/* Response body -> data, or the flat fields of an error envelope. Decoding is lua-cjson's
 * (a private instance, under pcall); here we only classify, drop JSON nulls and mark arrays. */
#include <string.h>

#include "lua.h"
#include "lauxlib.h"
#include "compat.h"

#include "envelope.h"

#define MAX_DEPTH 128

/* upvalues of decode_envelope */
#define UV_DECODE lua_upvalueindex(1)
#define UV_ARRAY_MT lua_upvalueindex(2)

static int is_space(char c) {
  return c == ' ' || c == '\t' || c == '\r' || c == '\n';
}

/* Index of the closing quote of the string whose opening quote is at i, or n. Most of a
 * JSON body is inside strings, so this memchr skip is what makes the scans below cheap. */
static size_t skip_string(const char *s, size_t i, size_t n) {
  for (i++; i < n; i++) {
    const char *q = memchr(s + i, '"', n - i);
    size_t j, bs = 0;
    if (q == NULL) return n;
    i = (size_t)(q - s);
    for (j = i; j > 0 && s[j - 1] == '\\'; j--) bs++;
    if (bs % 2 == 0) return i;        /* not escaped */
  }
  return n;
}

/* If an empty array ("[" ws* "]", outside strings) starts at or after *i, returns 1 and sets
 * *i to its "[" and *end to its "]". */
static int next_empty_array(const char *s, size_t n, size_t *i, size_t *end) {
  size_t k;
  for (k = *i; k < n; k++) {
    if (s[k] == '"') {
      k = skip_string(s, k, n);
    } else if (s[k] == '[') {
      size_t j = k + 1;
      while (j < n && is_space(s[j])) j++;
      if (j < n && s[j] == ']') {
        *i = k;
        *end = j;
        return 1;
      }
    }
  }
  return 0;
}

/* cjson turns [] into a plain empty table, indistinguishable from {}; the body is pushed
 * with every empty array written as [null], so the walk below can tell. Returns 0 (and
 * pushes nothing) when there is no empty array. luaL_Buffer is safe here: no C resource is
 * held. */
static int push_rewritten(lua_State *L, const char *s, size_t n) {
  luaL_Buffer b;
  size_t i = 0, start = 0, end;
  if (!next_empty_array(s, n, &i, &end)) return 0;
  luaL_buffinit(L, &b);
  do {
    luaL_addlstring(&b, s + start, i - start);
    luaL_addlstring(&b, "[null]", 6);
    start = i = end + 1;
  } while (next_empty_array(s, n, &i, &end));
  luaL_addlstring(&b, s + start, n - start);
  luaL_pushresult(&b);
  return 1;
}

static int is_null(lua_State *L, int idx) {
  return lua_islightuserdata(L, idx) && lua_touserdata(L, idx) == NULL;
}

/* Drops nulls from the table at idx (object keys removed, array elements compacted) and
 * gives arrays the shared array metatable. cjson gives objects only string keys, so a
 * table with a [1] is an array. */
static void clean(lua_State *L, int idx, int depth) {
  luaL_checkstack(L, 4, "JSON nested too deeply");
  if (depth > MAX_DEPTH) luaL_error(L, "JSON nested too deeply");
  lua_rawgeti(L, idx, 1);
  if (!lua_isnil(L, -1)) {        /* array */
    int i, n = (int)cm_rawlen(L, idx), w = 0;
    lua_pop(L, 1);
    for (i = 1; i <= n; i++) {
      lua_rawgeti(L, idx, i);
      if (is_null(L, -1)) {
        lua_pop(L, 1);
        continue;
      }
      if (lua_type(L, -1) == LUA_TTABLE) clean(L, lua_gettop(L), depth + 1);
      else if (lua_type(L, -1) == LUA_TNUMBER && cm_integralize(L, -1)) lua_remove(L, -2);
      lua_rawseti(L, idx, ++w);
    }
    for (i = w + 1; i <= n; i++) {
      lua_pushnil(L);
      lua_rawseti(L, idx, i);
    }
    lua_pushvalue(L, UV_ARRAY_MT);
    lua_setmetatable(L, idx);
    return;
  }
  lua_pop(L, 1);
  lua_pushnil(L);
  while (lua_next(L, idx)) {      /* key, value */
    if (is_null(L, -1)) {
      lua_pop(L, 1);
      lua_pushvalue(L, -1);
      lua_pushnil(L);
      lua_rawset(L, idx);         /* clearing an existing field is allowed during next */
    } else {
      if (lua_type(L, -1) == LUA_TTABLE) {
        clean(L, lua_gettop(L), depth + 1);
      } else if (lua_type(L, -1) == LUA_TNUMBER && cm_integralize(L, -1)) {
        lua_pushvalue(L, -3);     /* key, value, int, key */
        lua_insert(L, -2);        /* key, value, key, int */
        lua_rawset(L, idx);       /* replacing an existing field is allowed during next */
      }
      lua_pop(L, 1);
    }
  }
}

/* 1 when the value at idx is a table marked as a JSON array by clean(). */
static int is_array(lua_State *L, int idx) {
  int r;
  if (lua_type(L, idx) != LUA_TTABLE || !lua_getmetatable(L, idx)) return 0;
  r = lua_rawequal(L, -1, UV_ARRAY_MT);
  lua_pop(L, 1);
  return r;
}

static void copy_field(lua_State *L, int from, const char *src, const char *dst, int type) {
  lua_getfield(L, from, src);
  if (lua_type(L, -1) == type) lua_setfield(L, -2, dst);
  else lua_pop(L, 1);
}

/* Error envelope at idx -> flat fields table on top:
 * error, messages (array), message (joined), status_code, retry_after, details, timestamp,
 * path. Both documented shapes and the conversations API's {error, details} shape. */
static void push_error_fields(lua_State *L, int idx) {
  luaL_Buffer b;
  int n, i, msgs, joined = 0;
  lua_createtable(L, 0, 8);
  copy_field(L, idx, "error", "error", LUA_TSTRING);
  copy_field(L, idx, "statusCode", "status_code", LUA_TNUMBER);
  copy_field(L, idx, "retryAfter", "retry_after", LUA_TNUMBER);
  copy_field(L, idx, "details", "details", LUA_TTABLE);
  copy_field(L, idx, "timestamp", "timestamp", LUA_TSTRING);
  copy_field(L, idx, "path", "path", LUA_TSTRING);
  lua_getfield(L, idx, "message");
  if (lua_type(L, -1) == LUA_TSTRING) {     /* a single message: make it a list of one */
    lua_createtable(L, 1, 0);
    lua_pushvalue(L, -2);
    lua_rawseti(L, -2, 1);
    lua_pushvalue(L, UV_ARRAY_MT);
    lua_setmetatable(L, -2);
    lua_replace(L, -2);
  }
  if (!is_array(L, -1)) {                   /* absent, or not a list: no messages */
    lua_pop(L, 1);
    lua_createtable(L, 0, 0);
    lua_pushvalue(L, UV_ARRAY_MT);
    lua_setmetatable(L, -2);
  }
  lua_setfield(L, -2, "messages");          /* fields */
  lua_getfield(L, -1, "messages");
  msgs = lua_gettop(L);     /* absolute: the buffer may push its own box */
  n = (int)cm_rawlen(L, msgs);
  /* Between buffer calls the stack must stay as the buffer left it: the only value ever
   * pushed above it is the one entry luaL_addvalue consumes at once. The type is checked
   * with a get/pop first, and the separator goes in with luaL_addlstring before the entry
   * is pushed (a separator pushed above the entry corrupted the buffer: issue 13). */
  luaL_buffinit(L, &b);
  for (i = 1; i <= n; i++) {
    int t;
    lua_rawgeti(L, msgs, i);
    t = lua_type(L, -1);
    lua_pop(L, 1);
    if (t != LUA_TSTRING && t != LUA_TNUMBER) continue;
    if (joined++ > 0) luaL_addlstring(&b, "; ", 2);
    lua_rawgeti(L, msgs, i);
    luaL_addvalue(&b);
  }
  luaL_pushresult(&b);
  /* fields, messages, joined */
  if (cm_rawlen(L, -1) == 0) {
    lua_pop(L, 1);
    lua_getfield(L, -2, "error");
  }
  lua_setfield(L, -3, "message");
  lua_pop(L, 1);
}

static int fail(lua_State *L, const char *reason) {
  lua_pushnil(L);
  lua_pushstring(L, reason);
  return 2;
}

/* Decodes the JSON object at stack index idx (a string): pushes the cleaned table and
 * returns 1, or pushes nil, reason and returns 2. */
static int decode_object(lua_State *L, int idx) {
  size_t n, i = 0;
  const char *s = lua_tolstring(L, idx, &n);
  while (i < n && is_space(s[i])) i++;
  if (i == n) return fail(L, "empty body");
  if (s[i] == '<') return fail(L, "an HTML page instead of JSON (a proxy or gateway answered?)");
  if (s[i] != '{') return fail(L, "the body is not a JSON object");
  lua_pushvalue(L, UV_DECODE);
  if (!push_rewritten(L, s, n)) lua_pushvalue(L, idx);
  if (lua_pcall(L, 1, 1, 0) != 0) {
    lua_pushnil(L);
    lua_pushfstring(L, "invalid JSON: %s", lua_tostring(L, -2));
    return 2;
  }
  if (lua_type(L, -1) != LUA_TTABLE) return fail(L, "the body is not a JSON object");
  clean(L, lua_gettop(L), 0);
  return 1;
}

/* core.decode_json(text) -> table | nil, reason: a JSON object, with the envelope decoder's
 * rules (nulls dropped, arrays marked, integers), for bodies that are not envelopes (webhook
 * payloads). */
static int envelope_decode_json(lua_State *L) {
  luaL_checkstring(L, 1);
  lua_settop(L, 1);
  return decode_object(L, 1);
}

/* core.decode_envelope(status, body)
 *   -> true, data, enveloped  | false, fields | nil, reason
 * enveloped is false for a 2xx JSON object without `success` (the conversations API's list
 * shape); data is then the whole object. */
static int envelope_decode(lua_State *L) {
  lua_Integer status = luaL_checkinteger(L, 1);
  int root;
  luaL_checkstring(L, 2);
  lua_settop(L, 2);
  if (decode_object(L, 2) != 1) return 2;
  root = lua_gettop(L);
  lua_getfield(L, root, "success");
  if (lua_type(L, -1) == LUA_TBOOLEAN && lua_toboolean(L, -1)) {
    lua_pushboolean(L, 1);
    lua_getfield(L, root, "data");
    lua_pushboolean(L, 1);
    return 3;
  }
  if (lua_type(L, -1) == LUA_TBOOLEAN || status >= 400) {
    lua_pushboolean(L, 0);
    push_error_fields(L, root);
    return 2;
  }
  if (!lua_isnil(L, -1)) return fail(L, "the envelope's success field is not a boolean");
  lua_pushboolean(L, 1);
  lua_pushvalue(L, root);
  lua_pushboolean(L, 0);
  return 3;
}

void cm_envelope_open(lua_State *L) {
  int mod = lua_gettop(L);
  /* A private cjson instance: our settings never change the user's global cjson. */
  lua_getglobal(L, "require");
  lua_pushliteral(L, "cjson");
  lua_call(L, 1, 1);
  lua_getfield(L, -1, "new");
  lua_call(L, 0, 1);                       /* mod, cjson, inst */
  lua_getfield(L, -1, "decode_max_depth");
  lua_pushinteger(L, MAX_DEPTH);
  lua_call(L, 1, 0);
  lua_getfield(L, -1, "decode_invalid_numbers");   /* NaN, Infinity, hex: not JSON */
  lua_pushboolean(L, 0);
  lua_call(L, 1, 0);
  lua_getfield(L, -1, "decode");           /* mod, cjson, inst, decode */
  lua_pushvalue(L, -1);                    /* the same decode for chatmaid.envelope (Lua) */
  lua_setfield(L, mod, "json_decode");
  lua_newtable(L);                         /* array_mt */
  lua_pushliteral(L, "chatmaid.array");
  lua_setfield(L, -2, "__name");
  lua_pushvalue(L, -1);
  lua_setfield(L, mod, "array_mt");      /* mod, cjson, inst, decode, array_mt */
  lua_pushvalue(L, -2);
  lua_pushvalue(L, -2);
  lua_pushcclosure(L, envelope_decode_json, 2);
  lua_setfield(L, mod, "decode_json");
  lua_pushcclosure(L, envelope_decode, 2);
  lua_setfield(L, mod, "decode_envelope");
  lua_settop(L, mod);
}
