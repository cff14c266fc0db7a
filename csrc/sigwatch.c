/* SPDX-License-Identifier: MIT */
/* SIGINT and SIGTERM as a flag that a long Lua loop polls (pure Lua cannot catch a signal):
 * core.signal_watch{ "INT", "TERM" } installs the handler, core.signal_pending() says which
 * signal came, core.signal_restore() puts the previous handlers back. The handler only
 * stores the signal number in a volatile sig_atomic_t, which is async-signal-safe. Without
 * SA_RESTART a blocked poll() or nanosleep() returns EINTR, so a wait ends early. */
#include <signal.h>
#include <string.h>

#include "lua.h"
#include "lauxlib.h"
#include "compat.h"

#include "sigwatch.h"

static volatile sig_atomic_t caught = 0;

static const struct { const char *name; int signo; } watchable[] = {
  {"INT", SIGINT}, {"TERM", SIGTERM}
};
#define N_WATCHABLE (sizeof watchable / sizeof watchable[0])

static struct sigaction saved[N_WATCHABLE];
static int installed[N_WATCHABLE];

static void on_signal(int signo) {
  caught = signo;
}

int cm_signal_pending(void) {
  return caught;
}

static const char *signal_name(int signo) {
  size_t i;
  for (i = 0; i < N_WATCHABLE; i++)
    if (watchable[i].signo == signo) return watchable[i].name;
  return "?";
}

/* signal_watch(names) -> true. Clears the flag; watching a signal twice keeps the handler
 * saved the first time. Raises on a name other than "INT" or "TERM". */
static int sig_watch(lua_State *L) {
  int want[N_WATCHABLE] = {0};
  size_t i, n;
  luaL_checktype(L, 1, LUA_TTABLE);
  n = cm_rawlen(L, 1);
  for (i = 1; i <= n; i++) {
    size_t k;
    const char *name;
    lua_rawgeti(L, 1, (lua_Integer)i);
    name = luaL_checkstring(L, -1);
    for (k = 0; k < N_WATCHABLE; k++)
      if (strcmp(name, watchable[k].name) == 0) break;
    if (k == N_WATCHABLE)
      return luaL_error(L, "chatmaid.core: signal_watch: unknown signal '%s' (INT, TERM)",
                        name);
    want[k] = 1;
    lua_pop(L, 1);
  }
  caught = 0;
  for (i = 0; i < N_WATCHABLE; i++) {
    struct sigaction sa;
    if (!want[i] || installed[i]) continue;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sigemptyset(&sa.sa_mask);
    sa.sa_flags = 0;
    if (sigaction(watchable[i].signo, &sa, &saved[i]) != 0)
      return luaL_error(L, "chatmaid.core: signal_watch: sigaction failed");
    installed[i] = 1;
  }
  lua_pushboolean(L, 1);
  return 1;
}

/* signal_pending() -> "INT" | "TERM" | nil (the last watched signal caught) */
static int sig_pending(lua_State *L) {
  int s = caught;
  if (s == 0) lua_pushnil(L);
  else lua_pushstring(L, signal_name(s));
  return 1;
}

/* signal_restore() -> true. The handlers from before signal_watch; clears the flag.
 * Idempotent. */
static int sig_restore(lua_State *L) {
  size_t i;
  for (i = 0; i < N_WATCHABLE; i++) {
    if (!installed[i]) continue;
    sigaction(watchable[i].signo, &saved[i], NULL);
    installed[i] = 0;
  }
  caught = 0;
  lua_pushboolean(L, 1);
  return 1;
}

void cm_sigwatch_open(lua_State *L) {
  static const luaL_Reg funcs[] = {
    {"signal_watch", sig_watch},
    {"signal_pending", sig_pending},
    {"signal_restore", sig_restore},
    {NULL, NULL}
  };
  cm_setfuncs(L, funcs, 0);
}
