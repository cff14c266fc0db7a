/* SPDX-License-Identifier: MIT */
/* chatmaid.redis.core: one blocking libhiredis connection (RESP2) with a connect timeout and a
 * per-command timeout, for chatmaid.redis outside nginx. Policy (URLs, AUTH, SELECT, scripts,
 * reconnecting) is in lua/chatmaid/redis.lua. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <sys/types.h>
#include <unistd.h>

#include "lua.h"
#include "lauxlib.h"
#include "compat.h"

#include <hiredis/hiredis.h>

#include "redis.h"

#define REDIS_MT "chatmaid.redis"
#define MAX_ARGS 1024
#define MAX_DEPTH 8

typedef struct Redis {
  redisContext *ctx;   /* NULL once closed or broken */
  redisReply *reply;   /* the last reply: owned here while it is turned into Lua values */
  pid_t pid;           /* the process that connected: a forked child must not share it */
  long timeout_ms;     /* the socket timeout currently set */
  int closed;          /* close() was called: further use is a programmer error */
} Redis;

static struct timeval tv_of(long ms) {
  struct timeval tv;
  tv.tv_sec = ms / 1000;
  tv.tv_usec = (ms % 1000) * 1000;
  return tv;
}

/* kind for a failed context; err_no is errno right after the failing call. */
static const char *kind_of(const redisContext *c, int err_no) {
  if (c->err == REDIS_ERR_OOM) return "nomem";
  if (c->err == REDIS_ERR_IO && (err_no == EAGAIN || err_no == EWOULDBLOCK
                                 || err_no == ETIMEDOUT || err_no == EINPROGRESS))
    return "timeout";
  if (c->err == REDIS_ERR_EOF) return "closed";
  if (c->err == REDIS_ERR_PROTOCOL) return "protocol";
  return "transport";
}

static void release_reply(Redis *r) {
  if (r->reply) freeReplyObject(r->reply);
  r->reply = NULL;
}

static void redis_release(Redis *r) {
  release_reply(r);
  /* In a forked child redisFree only closes the child's copy of the socket: the parent's
   * connection is untouched (hiredis sends nothing on free). */
  if (r->ctx) redisFree(r->ctx);
  r->ctx = NULL;
}

/* Replies deeper than MAX_DEPTH are refused before anything is pushed. */
static int depth_ok(const redisReply *rep, int depth) {
  size_t i;
  if (depth > MAX_DEPTH) return 0;
  if (rep->type != REDIS_REPLY_ARRAY) return 1;
  for (i = 0; i < rep->elements; i++)
    if (!depth_ok(rep->element[i], depth + 1)) return 0;
  return 1;
}

/* May raise (memory): the reply is owned by the userdata meanwhile. */
static void push_reply(lua_State *L, const redisReply *rep) {
  size_t i;
  switch (rep->type) {
    case REDIS_REPLY_STRING: case REDIS_REPLY_STATUS: case REDIS_REPLY_ERROR:
      lua_pushlstring(L, rep->str, rep->len);
      break;
    case REDIS_REPLY_INTEGER:
      lua_pushinteger(L, (lua_Integer)rep->integer);
      break;
    case REDIS_REPLY_ARRAY:
      luaL_checkstack(L, 3, "redis reply");
      lua_createtable(L, rep->elements > 0x7fffffff ? 0 : (int)rep->elements, 0);
      for (i = 0; i < rep->elements; i++) {
        push_reply(L, rep->element[i]);
        lua_rawseti(L, -2, (int)i + 1);
      }
      break;
    default:   /* REDIS_REPLY_NIL */
      lua_pushboolean(L, 0);
  }
}

/* ---- Lua-callable ---- */

static Redis *check_redis(lua_State *L) {
  return (Redis *)luaL_checkudata(L, 1, REDIS_MT);
}

static Redis *check_open(lua_State *L) {
  Redis *r = check_redis(L);
  if (r->closed) luaL_error(L, "attempt to use a closed redis connection");
  return r;
}

static int fail(lua_State *L, const char *kind, const char *msg) {
  lua_pushnil(L);
  lua_pushstring(L, kind);
  lua_pushstring(L, msg);
  return 3;
}

/* core.redis_connect(host, port, connect_timeout_ms, timeout_ms) -> conn | nil, kind, msg
 * host "/path" connects to a unix socket (port ignored). kind: "timeout", "connect",
 * "nomem". */
static int redis_connect(lua_State *L) {
  const char *host = luaL_checkstring(L, 1);
  lua_Integer port = cm_checkinteger(L, 2);
  lua_Integer cto = cm_checkinteger(L, 3);
  lua_Integer to = cm_checkinteger(L, 4);
  Redis *r;
  redisContext *c;
  char msg[160];
  int err_no;
  luaL_argcheck(L, host[0] == '/' || (port > 0 && port < 65536), 2, "port out of range");
  luaL_argcheck(L, cto > 0 && cto <= 86400000, 3, "timeout must be 1 ms to 1 day");
  luaL_argcheck(L, to > 0 && to <= 86400000, 4, "timeout must be 1 ms to 1 day");
  r = cm_newuserdatauv(L, sizeof *r, 0);
  memset(r, 0, sizeof *r);                    /* closed state: __gc-safe */
  cm_setmetatable(L, REDIS_MT);
  errno = 0;
  c = host[0] == '/' ? redisConnectUnixWithTimeout(host, tv_of((long)cto))
                     : redisConnectWithTimeout(host, (int)port, tv_of((long)cto));
  err_no = errno;
  if (c == NULL) return fail(L, "nomem", "cannot allocate a redis context");
  if (c->err) {
    const char *kind = (c->err == REDIS_ERR_IO && (err_no == ETIMEDOUT
                        || err_no == EINPROGRESS || strstr(c->errstr, "timed out")))
                       ? "timeout" : c->err == REDIS_ERR_OOM ? "nomem" : "connect";
    snprintf(msg, sizeof msg, "%s", c->errstr);
    redisFree(c);
    return fail(L, kind, msg);
  }
  if (redisSetTimeout(c, tv_of((long)to)) != REDIS_OK) {
    snprintf(msg, sizeof msg, "cannot set the socket timeout: %s", c->errstr);
    redisFree(c);
    return fail(L, "transport", msg);
  }
  r->ctx = c;
  r->pid = getpid();
  r->timeout_ms = (long)to;
  return 1;
}

/* conn:command(args, timeout_ms) -> reply | nil, kind, message
 * args: array of strings/numbers (1 to 1024). reply: string (bulk or status), integer,
 * false (nil), or an array of those. kind "redis": the server answered an error (message is
 * its text, the connection stays usable). Otherwise the connection is dropped and kind is
 * "timeout", "closed" (peer closed, lost, or opened before a fork), "protocol",
 * "transport" or "nomem"; the caller reconnects. */
static int redis_command(lua_State *L) {
  Redis *r = check_open(L);
  lua_Integer to;
  int argc, i, err_no;
  const char **argv;
  size_t *argvlen;
  redisReply *rep;
  char msg[160];
  luaL_checktype(L, 2, LUA_TTABLE);
  to = cm_checkinteger(L, 3);
  luaL_argcheck(L, to > 0 && to <= 86400000, 3, "timeout must be 1 ms to 1 day");
  argc = (int)cm_rawlen(L, 2);
  luaL_argcheck(L, argc >= 1 && argc <= MAX_ARGS, 2, "expected 1 to 1024 arguments");
  /* 1. every argument as a string on the stack, and the arrays in a userdata: anything
   *    that may raise happens before hiredis is called */
  luaL_checkstack(L, argc + 2, "redis arguments");
  argv = lua_newuserdata(L, (size_t)argc * sizeof *argv);
  argvlen = lua_newuserdata(L, (size_t)argc * sizeof *argvlen);
  for (i = 0; i < argc; i++) {
    int t;
    lua_rawgeti(L, 2, i + 1);
    t = lua_type(L, -1);
    if (t != LUA_TSTRING && t != LUA_TNUMBER)
      return luaL_argerror(L, 2, lua_pushfstring(L, "argument %d is a %s (expected string "
                                                 "or number)", i + 1, lua_typename(L, t)));
    argv[i] = lua_tolstring(L, -1, &argvlen[i]);   /* the copy stays on the stack */
  }
  release_reply(r);
  if (r->ctx == NULL) return fail(L, "closed", "connection lost (reconnect)");
  if (r->pid != getpid()) {
    redis_release(r);
    return fail(L, "closed", "connection opened by another process (fork): reconnect");
  }
  /* 2. hiredis: no Lua API until the reply is anchored in the userdata */
  if (r->timeout_ms != (long)to) {
    if (redisSetTimeout(r->ctx, tv_of((long)to)) != REDIS_OK) {
      snprintf(msg, sizeof msg, "cannot set the socket timeout: %s", r->ctx->errstr);
      redis_release(r);
      return fail(L, "transport", msg);
    }
    r->timeout_ms = (long)to;
  }
  errno = 0;
  rep = redisCommandArgv(r->ctx, argc, argv, argvlen);
  err_no = errno;
  if (rep == NULL) {
    const char *kind = kind_of(r->ctx, err_no);
    if (strcmp(kind, "timeout") == 0)
      snprintf(msg, sizeof msg, "no answer within %ld ms", (long)to);
    else
      snprintf(msg, sizeof msg, "%s", r->ctx->errstr[0] ? r->ctx->errstr : "I/O error");
    redis_release(r);   /* a half-read reply would desynchronise the next command */
    return fail(L, kind, msg);
  }
  r->reply = rep;
  /* 3. results */
  lua_settop(L, 3);
  if (!depth_ok(rep, 1)) {
    release_reply(r);
    return fail(L, "protocol", "reply nested too deeply");
  }
  if (rep->type == REDIS_REPLY_ERROR) {
    lua_pushnil(L);
    lua_pushliteral(L, "redis");
    lua_pushlstring(L, rep->str, rep->len);
    release_reply(r);
    return 3;
  }
  push_reply(L, rep);
  release_reply(r);
  return 1;
}

/* conn:connected() -> false once closed, dropped after a failure, or in a forked child
 * (which then drops its copy: the caller reconnects, and the parent's socket is untouched) */
static int redis_connected(lua_State *L) {
  Redis *r = check_redis(L);
  if (r->ctx != NULL && r->pid != getpid()) redis_release(r);
  lua_pushboolean(L, r->ctx != NULL && !r->closed);
  return 1;
}

/* One release function for close(), __gc and __close: idempotent, always true. */
static int redis_close(lua_State *L) {
  Redis *r = check_redis(L);
  redis_release(r);
  r->closed = 1;
  lua_pushboolean(L, 1);
  return 1;
}

static int redis_tostring(lua_State *L) {
  Redis *r = check_redis(L);
  lua_pushfstring(L, "chatmaid.redis (%s) %p",
                  r->closed ? "closed" : r->ctx ? "open" : "dropped", (void *)r);
  return 1;
}

/* The module chatmaid.redis.core: its own shared object, the only one that links libhiredis,
 * so chatmaid.core (and an install without Redis) never needs it. */
CM_EXPORT int luaopen_chatmaid_redis_core(lua_State *L) {
  static const luaL_Reg meta[] = {
    {"__gc", redis_close},
#if LUA_VERSION_NUM >= 504
    {"__close", redis_close},
#endif
    {"__tostring", redis_tostring},
    {NULL, NULL}
  };
  static const luaL_Reg methods[] = {
    {"command", redis_command},
    {"connected", redis_connected},
    {"close", redis_close},
    {NULL, NULL}
  };
  static const luaL_Reg funcs[] = {{"redis_connect", redis_connect}, {NULL, NULL}};
  luaL_newmetatable(L, REDIS_MT);
  cm_setfuncs(L, meta, 0);
  lua_newtable(L);
  cm_setfuncs(L, methods, 0);
  lua_setfield(L, -2, "__index");       /* mt */
  lua_pop(L, 1);
  cm_newlib(L, funcs);
  return 1;
}
