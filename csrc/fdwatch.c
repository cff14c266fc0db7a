/* SPDX-License-Identifier: MIT */
/* A set of sockets watched through one descriptor, for an event loop that drives a client
 * (chatmaid.loop.luv): core.fdwatch() -> w; w:fd() is an epoll descriptor that becomes
 * readable when a socket of the set is ready; w:set(fd, "r" | "w" | "rw" | nil) adds, changes
 * or (nil) removes a socket; w:drain() consumes what is pending; w:close().
 * Why not one libuv poll handle per socket: libuv reports a socket error (a reset connection,
 * a refused connect: EPOLLERR) to a poll handle as UV_EBADF, which luv prints to stderr, and
 * a poll handle is bound to a descriptor number that libcurl closes and reuses between steps.
 * The epoll descriptor itself only ever becomes readable; the sockets' errors stay libcurl's
 * to read inside step(). Linux only: elsewhere core.fdwatch is nil and the adapter watches
 * each socket with its own poll handle.
 * Registrations are EPOLLONESHOT: drain() disarms whatever fired and set() re-arms what is
 * still wanted after each step, so a registration left behind by a closed socket whose file
 * is still open elsewhere (a forked child) fires at most once instead of keeping the loop
 * busy. */
#include "lua.h"
#include "lauxlib.h"
#include "compat.h"

#include "fdwatch.h"

#ifdef __linux__
#include <errno.h>
#include <string.h>
#include <unistd.h>
#include <sys/epoll.h>

#define FDWATCH_MT "chatmaid.fdwatch"

typedef struct { int ep; } FdWatch;

static FdWatch *check_open(lua_State *L) {
  FdWatch *w = luaL_checkudata(L, 1, FDWATCH_MT);
  if (w->ep < 0) luaL_error(L, "chatmaid.core: fdwatch used after close()");
  return w;
}

/* fdwatch() -> w | nil, message (out of descriptors or memory) */
static int fw_new(lua_State *L) {
  FdWatch *w = cm_newuserdatauv(L, sizeof *w, 0);
  w->ep = -1;                                  /* closed state first: __gc-safe */
  cm_setmetatable(L, FDWATCH_MT);
  w->ep = epoll_create1(EPOLL_CLOEXEC);
  if (w->ep < 0) {
    cm_pushfail(L);
    lua_pushfstring(L, "could not create an epoll descriptor: %s", strerror(errno));
    return 2;
  }
  return 1;
}

static int fw_fd(lua_State *L) {
  lua_pushinteger(L, check_open(L)->ep);
  return 1;
}

/* set(fd, events) -> true | false (fd is not open: nothing to watch) | nil, message.
 * events "r", "w", "rw"; nil removes fd (never an error: a closed fd left the set already).
 * MOD first, ADD when the set does not hold this socket: a number libcurl closed and reused
 * for a new socket is a new registration, since the kernel dropped the old one with the
 * old socket. */
static int fw_set(lua_State *L) {
  FdWatch *w = check_open(L);
  lua_Integer fd = luaL_checkinteger(L, 2);
  const char *ev = luaL_optstring(L, 3, NULL);
  struct epoll_event e;
  int rc;
  luaL_argcheck(L, fd >= 0 && fd <= 0x7fffffff, 2, "not a file descriptor");
  memset(&e, 0, sizeof e);
  if (ev == NULL) {
    epoll_ctl(w->ep, EPOLL_CTL_DEL, (int)fd, &e);
    lua_pushboolean(L, 1);
    return 1;
  }
  if (strcmp(ev, "r") == 0) e.events = EPOLLIN;
  else if (strcmp(ev, "w") == 0) e.events = EPOLLOUT;
  else if (strcmp(ev, "rw") == 0) e.events = EPOLLIN | EPOLLOUT;
  else return luaL_argerror(L, 3, "expected \"r\", \"w\", \"rw\" or nil");
  e.events |= EPOLLONESHOT;
  e.data.fd = (int)fd;
  rc = epoll_ctl(w->ep, EPOLL_CTL_MOD, (int)fd, &e);
  if (rc != 0 && errno == ENOENT) rc = epoll_ctl(w->ep, EPOLL_CTL_ADD, (int)fd, &e);
  if (rc == 0) {
    lua_pushboolean(L, 1);
    return 1;
  }
  if (errno == EBADF) {
    lua_pushboolean(L, 0);
    return 1;
  }
  cm_pushfail(L);
  lua_pushfstring(L, "could not watch descriptor %d: %s", (int)fd, strerror(errno));
  return 2;
}

/* drain() -> number of ready sockets consumed (their registrations are disarmed until the
 * next set()). Never blocks. */
static int fw_drain(lua_State *L) {
  FdWatch *w = check_open(L);
  struct epoll_event evs[64];
  lua_Integer total = 0;
  int n;
  do {
    n = epoll_wait(w->ep, evs, 64, 0);
    if (n > 0) total += n;
  } while (n == 64 || (n < 0 && errno == EINTR));
  lua_pushinteger(L, total);
  return 1;
}

/* One release function for close(), __gc and __close: idempotent, always true. */
static int fw_close(lua_State *L) {
  FdWatch *w = luaL_checkudata(L, 1, FDWATCH_MT);
  if (w->ep >= 0) {
    close(w->ep);
    w->ep = -1;
  }
  lua_pushboolean(L, 1);
  return 1;
}

static int fw_tostring(lua_State *L) {
  FdWatch *w = luaL_checkudata(L, 1, FDWATCH_MT);
  lua_pushfstring(L, "chatmaid.fdwatch (%s)", w->ep >= 0 ? "open" : "closed");
  return 1;
}

void cm_fdwatch_open(lua_State *L) {
  static const luaL_Reg meta[] = {
    {"__gc", fw_close},
#if LUA_VERSION_NUM >= 504
    {"__close", fw_close},
#endif
    {"__tostring", fw_tostring},
    {NULL, NULL}
  };
  static const luaL_Reg methods[] = {
    {"fd", fw_fd},
    {"set", fw_set},
    {"drain", fw_drain},
    {"close", fw_close},
    {NULL, NULL}
  };
  static const luaL_Reg funcs[] = {{"fdwatch", fw_new}, {NULL, NULL}};
  luaL_newmetatable(L, FDWATCH_MT);
  cm_setfuncs(L, meta, 0);
  lua_newtable(L);
  cm_setfuncs(L, methods, 0);
  lua_setfield(L, -2, "__index");
  lua_pop(L, 1);
  cm_setfuncs(L, funcs, 0);
}
#else
void cm_fdwatch_open(lua_State *L) {
  (void)L;
}
#endif
