/* SPDX-License-Identifier: MIT */
/* The default clock and sleep of a client (plain Lua has neither with sub-second precision).
 * OpenResty replaces both with ngx.now / ngx.sleep through the client options. */
#include <errno.h>
#include <time.h>

#include "lua.h"
#include "lauxlib.h"
#include "compat.h"

#include "clock.h"
#include "sigwatch.h"

static int clock_sleep(lua_State *L) {
  lua_Number s = luaL_checknumber(L, 1);
  struct timespec ts, rem;
  luaL_argcheck(L, s >= 0 && s <= 86400, 1, "must be 0..86400 seconds");
  ts.tv_sec = (time_t)s;
  ts.tv_nsec = (long)((s - (lua_Number)ts.tv_sec) * 1e9);
  /* another signal resumes the sleep; a watched one (sigwatch.c) ends it early */
  while (nanosleep(&ts, &rem) != 0 && errno == EINTR && !cm_signal_pending()) ts = rem;
  return 0;
}

/* Seconds on a monotonic clock: for elapsed times and deadlines, immune to clock changes. */
static int clock_monotime(lua_State *L) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  lua_pushnumber(L, (lua_Number)ts.tv_sec + (lua_Number)ts.tv_nsec / 1e9);
  return 1;
}

/* Unix time in seconds with sub-second precision. */
static int clock_time(lua_State *L) {
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  lua_pushnumber(L, (lua_Number)ts.tv_sec + (lua_Number)ts.tv_nsec / 1e9);
  return 1;
}

void cm_clock_open(lua_State *L) {
  static const luaL_Reg funcs[] = {
    {"sleep", clock_sleep},
    {"monotime", clock_monotime},
    {"time", clock_time},
    {NULL, NULL}
  };
  cm_setfuncs(L, funcs, 0);
}
