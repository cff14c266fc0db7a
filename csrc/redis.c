/* SPDX-License-Identifier: MIT */
/* chatmaid.redis.core: libhiredis connections (RESP2) for chatmaid.redis outside nginx. The
 * socket is non-blocking: send() queues a command, pump(wait_ms) writes, reads and parses
 * what the socket has and waits at most wait_ms, so a caller can wait elsewhere (a task
 * yields to chatmaid.sched, which polls the fd with poll()) or here (wait_ms > 0). hiredis
 * does the protocol (redisAppendCommandArgv, redisBufferWrite/Read, its reader), with caps on
 * what a reply may cost. Policy (URLs, AUTH, SELECT, scripts, pools, deadlines,
 * reconnecting) is in lua/chatmaid/redis/conn.lua. */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/types.h>
#include <time.h>
#include <unistd.h>

#include "lua.h"
#include "lauxlib.h"
#include "compat.h"

#include <hiredis/hiredis.h>
#include <hiredis/sds.h>

#include "redis.h"

#define REDIS_MT "chatmaid.redis"
#define MAX_ARGS 1024
#define MAX_DEPTH 8
/* What one reply may cost: elements of one array, values in all, bytes (of its strings, and
 * buffered unparsed). Our
 * replies are small (the largest: a campaign's HVALS, one short string per item). */
#define MAX_ELEMENTS (1L << 20)
#define MAX_OBJECTS (1L << 22)
#define MAX_REPLY_BYTES ((size_t)64 << 20)
#define MAX_POLL_FDS 4096

enum { ST_CONNECTING, ST_IDLE, ST_SENT };

typedef struct Redis {
  redisContext *ctx;   /* NULL once closed or broken */
  redisReply *reply;   /* the last reply: owned here while it is turned into Lua values */
  pid_t pid;           /* the process that connected: a forked child must not share it */
  int state;           /* ST_*: connecting, idle, a command sent and its reply not read */
  int closed;          /* close() was called: further use is a programmer error */
  long objects;        /* reply objects made for the reply being read */
  size_t bytes;        /* and the bytes of its strings */
  const char *limit;   /* set by the capped reader functions: which cap a reply broke */
} Redis;

/* ---- hiredis's reader with caps: its own functions, refusing what costs too much ---- */

static redisReplyObjectFunctions base_fns;   /* hiredis's defaults, copied at first open */
static redisReplyObjectFunctions capped_fns;
static int fns_ready = 0;

static int count_object(const redisReadTask *task) {
  Redis *r = (Redis *)task->privdata;
  if (r == NULL) return 1;
  if (++r->objects > MAX_OBJECTS) {
    r->limit = "more than 4194304 values in one reply";
    return 0;
  }
  return 1;
}

static void *capped_string(const redisReadTask *task, char *str, size_t len) {
  Redis *r = (Redis *)task->privdata;
  if (r != NULL) {
    r->bytes += len;
    if (r->bytes > MAX_REPLY_BYTES) {
      r->limit = "a reply of more than 64 MiB";
      return NULL;
    }
  }
  return count_object(task) ? base_fns.createString(task, str, len) : NULL;
}

static void *capped_array(const redisReadTask *task, int elements) {
  Redis *r = (Redis *)task->privdata;
  if (elements > MAX_ELEMENTS) {
    if (r) r->limit = "an array of more than 1048576 elements";
    return NULL;
  }
  return count_object(task) ? base_fns.createArray(task, elements) : NULL;
}

static void *capped_integer(const redisReadTask *task, long long value) {
  return count_object(task) ? base_fns.createInteger(task, value) : NULL;
}

static void *capped_nil(const redisReadTask *task) {
  return count_object(task) ? base_fns.createNil(task) : NULL;
}

static void cap_reader(Redis *r, redisContext *c) {
  if (!fns_ready) {
    base_fns = *c->reader->fn;
    capped_fns = base_fns;
    capped_fns.createString = capped_string;
    capped_fns.createArray = capped_array;
    capped_fns.createInteger = capped_integer;
    capped_fns.createNil = capped_nil;
    fns_ready = 1;
  }
  c->reader->fn = &capped_fns;
  c->reader->privdata = r;
}

/* ---- helpers ---- */

static double now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec * 1000.0 + (double)ts.tv_nsec / 1e6;
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

/* Drops the connection and returns nil, kind, msg (msg copied first: it may be errstr). */
static int fail_drop(lua_State *L, Redis *r, const char *kind, const char *msg) {
  char buf[200];
  snprintf(buf, sizeof buf, "%s", msg);
  redis_release(r);
  return fail(L, kind, buf);
}

/* A context error as nil, kind, message; the connection is dropped. */
static int fail_ctx(lua_State *L, Redis *r, int err_no) {
  redisContext *c = r->ctx;
  const char *kind = "transport";
  if (r->limit) return fail_drop(L, r, "protocol", r->limit);
  if (c->err == REDIS_ERR_OOM) kind = "nomem";
  else if (c->err == REDIS_ERR_EOF) kind = "closed";
  else if (c->err == REDIS_ERR_PROTOCOL) kind = "protocol";
  else if (c->err == REDIS_ERR_IO && (err_no == ECONNRESET || err_no == EPIPE)) kind = "closed";
  return fail_drop(L, r, kind, c->errstr[0] ? c->errstr : "I/O error");
}

/* redisBufferWrite without SIGPIPE: hiredis writes with write(2), and a server that closed
 * the connection would kill a host process that did not ignore SIGPIPE. The signal is
 * blocked in this thread around the write and a SIGPIPE it raised is taken back (the way
 * libraries that cannot use MSG_NOSIGNAL do it); one already pending is left alone. */
static int buffer_write(redisContext *c, int *done, int *err_no) {
  sigset_t pipe_set, old, pending;
  int rc, was_pending;
  sigemptyset(&pipe_set);
  sigaddset(&pipe_set, SIGPIPE);
  sigemptyset(&pending);
  sigpending(&pending);
  was_pending = sigismember(&pending, SIGPIPE);
  pthread_sigmask(SIG_BLOCK, &pipe_set, &old);
  errno = 0;
  rc = redisBufferWrite(c, done);
  *err_no = errno;
  if (rc != REDIS_OK && *err_no == EPIPE && !was_pending) {
    struct timespec zero = {0, 0};
    sigtimedwait(&pipe_set, NULL, &zero);
  }
  pthread_sigmask(SIG_SETMASK, &old, NULL);
  return rc;
}

/* Bytes of the queued command not written yet. Its length, never its first byte: after a
 * partial write what is left may start with a NUL of a binary argument. */
static size_t unsent(const redisContext *c) {
  return sdslen(c->obuf);
}

/* poll() one fd for events, at most ms; EINTR counts as "not yet". -> revents or 0 */
static short wait_fd(int fd, short events, int ms) {
  struct pollfd p;
  p.fd = fd;
  p.events = events;
  p.revents = 0;
  if (poll(&p, 1, ms) <= 0) return 0;
  return p.revents;
}

static int new_conn(lua_State *L, const char *host, lua_Integer port) {
  Redis *r;
  redisContext *c;
  r = cm_newuserdatauv(L, sizeof *r, 0);
  memset(r, 0, sizeof *r);                    /* closed state: __gc-safe */
  r->closed = 0;
  cm_setmetatable(L, REDIS_MT);
  errno = 0;
  c = host[0] == '/' ? redisConnectUnixNonBlock(host)
                     : redisConnectNonBlock(host, (int)port);
  if (c == NULL) return fail(L, "nomem", "cannot allocate a redis context");
  if (c->err) {
    char msg[160];
    const char *kind = c->err == REDIS_ERR_OOM ? "nomem" : "connect";
    snprintf(msg, sizeof msg, "%s", c->errstr);
    redisFree(c);
    return fail(L, kind, msg);
  }
  /* hiredis 0.14 opens its socket without SOCK_CLOEXEC: a program the host runs would keep
   * a copy, and the server would see the connection open after close() */
  (void)fcntl(c->fd, F_SETFD, fcntl(c->fd, F_GETFD) | FD_CLOEXEC);
  cap_reader(r, c);
  r->ctx = c;
  r->pid = getpid();
  r->state = ST_CONNECTING;
  return 1;
}

/* core.open(host, port) -> conn (connecting) | nil, kind, msg. host "/path": a unix socket
 * (port ignored). The connect completes in pump(), which returns true then. */
static int redis_open(lua_State *L) {
  const char *host = luaL_checkstring(L, 1);
  lua_Integer port = cm_checkinteger(L, 2);
  luaL_argcheck(L, host[0] == '/' || (port > 0 && port < 65536), 2, "port out of range");
  return new_conn(L, host, port);
}

/* The work of pump with the stack's top at the conn. -> Lua results */
static int pump(lua_State *L, Redis *r, int wait_ms) {
  double deadline = now_ms() + wait_ms;
  if (r->ctx == NULL) return fail(L, "closed", "connection lost (reconnect)");
  if (r->pid != getpid()) {
    redis_release(r);
    return fail(L, "closed", "connection opened by another process (fork): reconnect");
  }
  for (;;) {
    redisContext *c = r->ctx;
    short want;
    int left, err_no;
    if (r->state == ST_CONNECTING) {
      int soerr = 0;
      socklen_t len = sizeof soerr;
      if (!(wait_fd(c->fd, POLLOUT, 0) & (POLLOUT | POLLERR | POLLHUP))) {
        want = POLLOUT;
        goto wait;
      }
      if (getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &soerr, &len) != 0) soerr = errno;
      if (soerr != 0) return fail_drop(L, r, "connect", strerror(soerr));
      r->state = ST_IDLE;
      lua_pushboolean(L, 1);
      return 1;
    }
    if (r->state == ST_IDLE) {
      lua_pushboolean(L, 1);
      return 1;
    }
    /* ST_SENT: write what is queued, then read and parse what the socket has */
    if (unsent(c) > 0) {
      int done = 0;
      if (buffer_write(c, &done, &err_no) != REDIS_OK) return fail_ctx(L, r, err_no);
    }
    {
      void *rep = NULL;
      int more = 1;
      while (more) {
        size_t before;
        if (redisGetReplyFromReader(c, &rep) != REDIS_OK) return fail_ctx(L, r, 0);
        if (rep != NULL) break;
        if (unsent(c) > 0) break;            /* the command is not all out yet */
        before = c->reader->len;
        errno = 0;
        if (redisBufferRead(c) != REDIS_OK) {
          err_no = errno;
          return fail_ctx(L, r, err_no);
        }
        if (c->reader->len - c->reader->pos > MAX_REPLY_BYTES)
          return fail_drop(L, r, "protocol", "a reply of more than 64 MiB");
        more = c->reader->len != before;     /* nothing came: wait for the socket */
      }
      if (rep != NULL) {
        redisReply *reply = (redisReply *)rep;
        r->reply = reply;
        r->state = ST_IDLE;
        r->objects = 0;
        r->bytes = 0;
        lua_settop(L, 1);
        if (!depth_ok(reply, 1)) {
          release_reply(r);
          return fail(L, "protocol", "reply nested too deeply");
        }
        if (reply->type == REDIS_REPLY_ERROR) {
          lua_pushnil(L);
          lua_pushliteral(L, "redis");
          lua_pushlstring(L, reply->str, reply->len);
          release_reply(r);
          return 3;
        }
        push_reply(L, reply);
        release_reply(r);
        return 1;
      }
    }
    want = unsent(c) > 0 ? POLLOUT : POLLIN;
  wait:
    left = (int)(deadline - now_ms());
    if (left <= 0) {
      lua_pushnil(L);
      lua_pushliteral(L, "again");
      if (want == POLLOUT) lua_pushliteral(L, "w"); else lua_pushliteral(L, "r");
      return 3;
    }
    wait_fd(c->fd, want, left);
  }
}

/* conn:pump(wait_ms) -> true (connected, or nothing pending) | reply | nil, "again", "r"|"w"
 * (wait for the socket to be readable / writable, then pump again) | nil, kind, message.
 * Waits at most wait_ms (0: never). reply: string (bulk or status), integer, false (nil),
 * or an array of those. kind "redis": the server answered an error (message is its text,
 * the connection stays usable). Otherwise the connection is dropped and kind is "connect"
 * (while connecting), "closed" (peer closed, lost, or opened before a fork), "protocol"
 * (malformed, or over the caps: 1M elements, 4M values, 64 MiB), "transport" or "nomem". */
static int redis_pump(lua_State *L) {
  Redis *r = check_open(L);
  lua_Integer wait = luaL_optinteger(L, 2, 0);
  luaL_argcheck(L, wait >= 0 && wait <= 86400000, 2, "wait must be 0 ms to 1 day");
  lua_settop(L, 1);
  release_reply(r);
  return pump(L, r, (int)wait);
}

/* conn:send(args) -> true | nil, kind, message. Queues one command (pump() sends it and
 * reads its reply). args: array of strings/numbers (1 to 1024). Raises while connecting or
 * while a reply is still due (one command at a time on a connection). */
static int do_send(lua_State *L, Redis *r) {
  int argc, i;
  const char **argv;
  size_t *argvlen;
  luaL_checktype(L, 2, LUA_TTABLE);
  argc = (int)cm_rawlen(L, 2);
  luaL_argcheck(L, argc >= 1 && argc <= MAX_ARGS, 2, "expected 1 to 1024 arguments");
  /* every argument as a string on the stack, and the arrays in a userdata: anything that
   * may raise happens before hiredis is called */
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
  if (r->state != ST_IDLE)
    return luaL_error(L, "redis connection busy: %s", r->state == ST_SENT
                      ? "a reply is still due" : "still connecting");
  if (redisAppendCommandArgv(r->ctx, argc, argv, argvlen) != REDIS_OK)
    return fail_ctx(L, r, 0);
  r->state = ST_SENT;
  r->objects = 0;
  r->bytes = 0;
  r->limit = NULL;
  lua_pushboolean(L, 1);
  return 1;
}

static int redis_send(lua_State *L) {
  return do_send(L, check_open(L));
}

/* Blocks in pump until a result or the deadline; kind "timeout" then (connection dropped:
 * a half-read reply would desynchronise the next command). */
static int pump_until(lua_State *L, Redis *r, double deadline, const char *what, long ms) {
  for (;;) {
    double left = deadline - now_ms();
    int n;
    char msg[96];
    if (left < 0) left = 0;
    lua_settop(L, 1);
    n = pump(L, r, (int)left + (left > (int)left ? 1 : 0));
    if (!(n == 3 && lua_isnil(L, -3) && strcmp(lua_tostring(L, -2), "again") == 0)) return n;
    if (now_ms() >= deadline) {
      redis_release(r);
      snprintf(msg, sizeof msg, "%s within %ld ms", what, ms);
      return fail(L, "timeout", msg);
    }
  }
}

/* core.redis_connect(host, port, connect_timeout_ms, timeout_ms) -> conn | nil, kind, msg
 * The blocking form: open, then wait for the connect. kind: "timeout", "connect", "nomem".
 * (timeout_ms: kept for callers; each command gives its own deadline.) */
static int redis_connect(lua_State *L) {
  const char *host = luaL_checkstring(L, 1);
  lua_Integer port = cm_checkinteger(L, 2);
  lua_Integer cto = cm_checkinteger(L, 3);
  lua_Integer to = cm_checkinteger(L, 4);
  Redis *r;
  int n;
  luaL_argcheck(L, host[0] == '/' || (port > 0 && port < 65536), 2, "port out of range");
  luaL_argcheck(L, cto > 0 && cto <= 86400000, 3, "timeout must be 1 ms to 1 day");
  luaL_argcheck(L, to > 0 && to <= 86400000, 4, "timeout must be 1 ms to 1 day");
  lua_settop(L, 2);
  if (new_conn(L, host, port) != 1) return 3;
  lua_replace(L, 1);
  r = (Redis *)lua_touserdata(L, 1);
  n = pump_until(L, r, now_ms() + (double)cto, "no connection", (long)cto);
  if (n == 1 && lua_toboolean(L, -1)) {
    lua_pushvalue(L, 1);
    return 1;
  }
  return n;
}

/* conn:command(args, timeout_ms) -> reply | nil, kind, message: send, then pump until the
 * reply or the deadline (one deadline for the whole command, however the reply trickles). */
static int redis_command(lua_State *L) {
  Redis *r = check_open(L);
  lua_Integer to = cm_checkinteger(L, 3);
  int n;
  luaL_argcheck(L, to > 0 && to <= 86400000, 3, "timeout must be 1 ms to 1 day");
  lua_settop(L, 2);
  if (do_send(L, r) != 1) return 3;
  lua_settop(L, 1);
  n = pump_until(L, r, now_ms() + (double)to, "no answer", (long)to);
  return n;
}

/* conn:fd() -> the socket's descriptor (-1 once dropped) */
static int redis_fd(lua_State *L) {
  Redis *r = check_redis(L);
  lua_pushinteger(L, r->ctx ? r->ctx->fd : -1);
  return 1;
}

/* conn:busy() -> true while connecting or while a reply is due */
static int redis_busy(lua_State *L) {
  Redis *r = check_redis(L);
  lua_pushboolean(L, r->ctx != NULL && r->state != ST_IDLE);
  return 1;
}

/* conn:connected() -> false once closed, dropped after a failure, in a forked child (which
 * then drops its copy: the caller reconnects, and the parent's socket is untouched), or when
 * an idle connection has something to read (the server closed it: dropped) */
static int redis_connected(lua_State *L) {
  Redis *r = check_redis(L);
  if (r->ctx != NULL && r->pid != getpid()) redis_release(r);
  /* idle, nothing may be readable: EOF or bytes mean the server closed it (a restart, its
   * idle timeout) or spoke out of turn; a command sent there would fail or read them */
  if (r->ctx != NULL && r->state == ST_IDLE && r->ctx->reader->pos == r->ctx->reader->len
      && wait_fd(r->ctx->fd, POLLIN, 0) != 0)
    redis_release(r);
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

/* core.poll({ [fd] = "r" | "w" | "rw" }, wait_ms) -> { [fd] = true }: the descriptors that
 * are ready (or in error), after at most wait_ms. chatmaid.sched's wait for tasks' sockets. */
static int redis_poll(lua_State *L) {
  lua_Integer wait = cm_checkinteger(L, 2);
  struct pollfd *p;
  int n = 0, i, got;
  luaL_checktype(L, 1, LUA_TTABLE);
  luaL_argcheck(L, wait >= 0 && wait <= 86400000, 2, "wait must be 0 ms to 1 day");
  lua_pushnil(L);
  while (lua_next(L, 1)) { n++; lua_pop(L, 1); }
  luaL_argcheck(L, n <= MAX_POLL_FDS, 1, "too many descriptors");
  p = lua_newuserdata(L, (size_t)(n ? n : 1) * sizeof *p);
  i = 0;
  lua_pushnil(L);
  while (lua_next(L, 1)) {
    const char *ev = lua_tostring(L, -1);
    if (!lua_isnumber(L, -2) || ev == NULL)
      return luaL_argerror(L, 1, "expected { [fd] = \"r\" | \"w\" | \"rw\" }");
    p[i].fd = (int)lua_tointeger(L, -2);
    p[i].events = (short)((strchr(ev, 'r') ? POLLIN : 0) | (strchr(ev, 'w') ? POLLOUT : 0));
    p[i].revents = 0;
    i++;
    lua_pop(L, 1);
  }
  got = poll(p, (nfds_t)n, (int)wait);
  lua_newtable(L);
  for (i = 0; got > 0 && i < n; i++) {
    if (p[i].revents == 0) continue;
    lua_pushboolean(L, 1);
    lua_rawseti(L, -2, p[i].fd);
  }
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
    {"send", redis_send},
    {"pump", redis_pump},
    {"fd", redis_fd},
    {"busy", redis_busy},
    {"connected", redis_connected},
    {"close", redis_close},
    {NULL, NULL}
  };
  static const luaL_Reg funcs[] = {
    {"redis_connect", redis_connect},
    {"open", redis_open},
    {"poll", redis_poll},
    {NULL, NULL}
  };
  luaL_newmetatable(L, REDIS_MT);
  cm_setfuncs(L, meta, 0);
  lua_newtable(L);
  cm_setfuncs(L, methods, 0);
  lua_setfield(L, -2, "__index");       /* mt */
  lua_pop(L, 1);
  cm_newlib(L, funcs);
  return 1;
}
