/* SPDX-License-Identifier: MIT */
/* A game's main loop at 60 fps embedding Lua 5.4 and lua-chatmaid statically (libchatmaid.a:
 * no shared object, no .lua file, no dlopen). Simulated key presses each send a message.
 *
 *   frame_loop [--blocking] [--messages N] [--press-every FRAMES] [--outlier-ms MS]
 *              [--max-seconds S] [--base-url URL] [--key KEY] [--from PHONE] [--to E164]
 *              [--ca-file PEM] [--warm-up]
 *
 * Default (task mode): each key press runs client:send as a task (client:spawn) and every frame
 * calls client:step(0), so the frame never waits for the network. --blocking calls client:send
 * directly in the frame instead and shows the freeze. The base URL, key and sender default to
 * CHATMAID_BASE_URL, CHATMAID_API_KEY and CHATMAID_FROM. --ca-file passes a private CA to the
 * client (a TLS front in tests). --warm-up makes one request as a task while loading
 * (client:account()), so the first TLS connection and the parsed CA bundle (50-60 ms of CPU
 * for the system's bundle) are ready before the first frame.
 *
 * Each frame's work (input, the game script, the client) is timed; frames over --outlier-ms
 * (default 4) are printed, and at the end one line:
 *   RESULT mode=task sent=10 failed=0 frames=182 worst_ms=0.408 worst_frame=6 p99_ms=0.382
 *          worst_cpu_ms=0.405 mean_ms=0.105 blocked=0 preempted=1 worst_unpreempted_ms=0.408
 * worst_cpu_ms: the most CPU time one frame's work took (it leaves out time the OS gave to
 * other processes). blocked: frames whose work waited in the kernel (a voluntary context
 * switch: a blocking call); a task-mode frame never should. preempted: frames the OS
 * interrupted to run something else (an involuntary switch), and worst_unpreempted_ms the
 * worst frame among the others: on a loaded machine the gap between worst_ms and it is the
 * machine's, not the loop's. Exit status 0 when every message was sent. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <sys/resource.h>

#include "lua.h"
#include "lauxlib.h"
#include "lualib.h"

#include "chatmaid_embed.h"

#define FRAME_NS 16666667L   /* 60 fps */

/* The game's script: what a game would ship as its own Lua code. */
static const char game_lua[] =
  "local opts = ...\n"
  "local chatmaid = require 'chatmaid'\n"
  "local client = assert(chatmaid.new{ api_key = opts.key, base_url = opts.base_url,\n"
  "                                    ca_file = opts.ca_file, timeout = 30 })\n"
  "if opts.warm_up then   -- at load time, not in a frame: a task, so the connection and the\n"
  "  local t = client:spawn(function() return client:account() end)   -- CA store it opened\n"
  "  while client:step(0.05) > 0 do end                                -- are the tasks' own\n"
  "  assert(t:result())\n"
  "end\n"
  "if not opts.blocking and type(client.spawn) ~= 'function' then\n"
  "  error('this lua-chatmaid has no client:spawn; run with --blocking', 0)\n"
  "end\n"
  "local game = { sent = 0, failed = 0 }\n"
  "local function record(msg, err)\n"
  "  if msg then game.sent = game.sent + 1\n"
  "  else game.failed = game.failed + 1; io.stderr:write('send failed: ', tostring(err), '\\n') end\n"
  "end\n"
  "function game.key_press(n)\n"
  "  local message = { from = opts.from, to = opts.to, content = 'key press ' .. n }\n"
  "  if opts.blocking then return record(client:send(message)) end\n"
  "  local task = client:spawn(function() return client:send(message) end)\n"
  "  task:on_done(function(t) record(t:result()) end)\n"
  "end\n"
  "function game.update()\n"
  "  if opts.blocking then return 0 end\n"
  "  return client:step(0)\n"
  "end\n"
  "function game.finished() return game.sent + game.failed end\n"
  "function game.counts() return game.sent, game.failed end\n"
  "function game.close() client:close() end\n"
  "return game\n";

static const char lockdown_lua[] =
  "package.path = '' package.cpath = ''\n"
  "for i = #package.searchers, 2, -1 do table.remove(package.searchers, i) end\n";

typedef struct {
  int blocking, messages, press_every, warm_up;
  double outlier_ms, max_seconds;
  const char *base_url, *key, *from, *to, *ca_file;
} options;

static double ms_between(const struct timespec *a, const struct timespec *b) {
  return (double)(b->tv_sec - a->tv_sec) * 1e3 + (double)(b->tv_nsec - a->tv_nsec) / 1e6;
}

static void add_ns(struct timespec *t, long ns) {
  t->tv_nsec += ns;
  while (t->tv_nsec >= 1000000000L) { t->tv_nsec -= 1000000000L; t->tv_sec++; }
}

static int traceback(lua_State *L) {
  luaL_traceback(L, L, lua_tostring(L, 1), 1);
  return 1;
}

/* Calls game[name]() with nargs arguments already pushed; leaves nret results. */
static int call_game(lua_State *L, int game, const char *name, int nargs, int nret) {
  int base = lua_gettop(L) - nargs;
  lua_pushcfunction(L, traceback);
  lua_getfield(L, game, name);
  lua_rotate(L, base + 1, 2);
  if (lua_pcall(L, nargs, nret, base + 1) != LUA_OK) {
    fprintf(stderr, "frame_loop: %s: %s\n", name, lua_tostring(L, -1));
    return 0;
  }
  lua_remove(L, base + 1);
  return 1;
}

static int cmp_double(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return (x > y) - (x < y);
}

static const char *env_or(const char *name, const char *dflt) {
  const char *v = getenv(name);
  return v != NULL && *v != '\0' ? v : dflt;
}

static int parse_args(int argc, char **argv, options *o) {
  int i;
  o->blocking = 0;
  o->warm_up = 0;
  o->ca_file = NULL;
  o->messages = 10;
  o->press_every = 6;
  o->outlier_ms = 4.0;
  o->max_seconds = 120.0;
  o->base_url = env_or("CHATMAID_BASE_URL", NULL);
  o->key = env_or("CHATMAID_API_KEY", NULL);
  o->from = env_or("CHATMAID_FROM", NULL);
  o->to = "+15557654321";
  for (i = 1; i < argc; i++) {
    const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
    if (strcmp(a, "--blocking") == 0) { o->blocking = 1; continue; }
    if (strcmp(a, "--warm-up") == 0) { o->warm_up = 1; continue; }
    if (v == NULL) { fprintf(stderr, "frame_loop: %s: unknown option, or it needs a value\n", a); return 0; }
    i++;
    if (strcmp(a, "--messages") == 0) o->messages = atoi(v);
    else if (strcmp(a, "--press-every") == 0) o->press_every = atoi(v);
    else if (strcmp(a, "--outlier-ms") == 0) o->outlier_ms = atof(v);
    else if (strcmp(a, "--max-seconds") == 0) o->max_seconds = atof(v);
    else if (strcmp(a, "--base-url") == 0) o->base_url = v;
    else if (strcmp(a, "--key") == 0) o->key = v;
    else if (strcmp(a, "--from") == 0) o->from = v;
    else if (strcmp(a, "--to") == 0) o->to = v;
    else if (strcmp(a, "--ca-file") == 0) o->ca_file = v;
    else { fprintf(stderr, "frame_loop: unknown option %s\n", a); return 0; }
  }
  if (o->messages < 1 || o->press_every < 1) {
    fprintf(stderr, "frame_loop: --messages and --press-every must be >= 1\n");
    return 0;
  }
  return 1;
}

static void push_options(lua_State *L, const options *o) {
  lua_createtable(L, 0, 7);
  lua_pushboolean(L, o->blocking);
  lua_setfield(L, -2, "blocking");
  lua_pushboolean(L, o->warm_up);
  lua_setfield(L, -2, "warm_up");
  if (o->ca_file) { lua_pushstring(L, o->ca_file); lua_setfield(L, -2, "ca_file"); }
  if (o->base_url) { lua_pushstring(L, o->base_url); lua_setfield(L, -2, "base_url"); }
  if (o->key) { lua_pushstring(L, o->key); lua_setfield(L, -2, "key"); }
  if (o->from) { lua_pushstring(L, o->from); lua_setfield(L, -2, "from"); }
  lua_pushstring(L, o->to);
  lua_setfield(L, -2, "to");
}

int main(int argc, char **argv) {
  options o;
  lua_State *L;
  int game, pressed = 0, frame = 0, ok = 1, worst_frame = 0;
  long max_frames;
  size_t cap, nframes = 0;
  int blocked = 0, preempted = 0;
  double *times, worst = 0, worst_cpu = 0, worst_unpreempted = 0, total = 0;
  struct timespec deadline;
  lua_Integer sent = 0, failed = 0;

  if (!parse_args(argc, argv, &o)) return 2;
  L = luaL_newstate();
  if (L == NULL) return 1;
  luaL_openlibs(L);
  chatmaid_preload(L);
  /* Nothing from disk: only the archive's preloads can satisfy a require. */
  if (luaL_dostring(L, lockdown_lua) != LUA_OK) return 1;
  lua_pushcfunction(L, traceback);
  if (luaL_loadbufferx(L, game_lua, sizeof game_lua - 1, "=game", "t") != LUA_OK) {
    fprintf(stderr, "frame_loop: %s\n", lua_tostring(L, -1));
    return 1;
  }
  push_options(L, &o);
  if (lua_pcall(L, 1, 1, 1) != LUA_OK) {
    fprintf(stderr, "frame_loop: %s\n", lua_tostring(L, -1));
    lua_close(L);
    return 2;
  }
  game = lua_gettop(L);

  max_frames = (long)(o.max_seconds * 60.0);
  cap = (size_t)max_frames + 1;
  times = malloc(cap * sizeof *times);
  if (times == NULL) return 1;
  printf("frame_loop: %s mode, %d messages, a key press every %d frames, 60 fps\n",
         o.blocking ? "blocking" : "task", o.messages, o.press_every);
  fflush(stdout);

  clock_gettime(CLOCK_MONOTONIC, &deadline);
  for (frame = 1; frame <= max_frames; frame++) {
    struct timespec t0, t1, c0, c1;
    struct rusage r0, r1;
    double ms, cpu;
    long vol, invol;
    lua_Integer finished;
    getrusage(RUSAGE_SELF, &r0);
    clock_gettime(CLOCK_MONOTONIC, &t0);
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &c0);

    /* --- the frame's work --- */
    if (pressed < o.messages && frame % o.press_every == 0) {
      pressed++;
      lua_pushinteger(L, pressed);
      if (!call_game(L, game, "key_press", 1, 0)) { ok = 0; break; }
    }
    if (!call_game(L, game, "update", 0, 0)) { ok = 0; break; }
    if (!call_game(L, game, "finished", 0, 1)) { ok = 0; break; }
    finished = lua_tointeger(L, -1);
    lua_pop(L, 1);
    /* --- end of the frame's work --- */

    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &c1);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    getrusage(RUSAGE_SELF, &r1);
    ms = ms_between(&t0, &t1);
    cpu = ms_between(&c0, &c1);
    vol = r1.ru_nvcsw - r0.ru_nvcsw;
    invol = r1.ru_nivcsw - r0.ru_nivcsw;
    times[nframes++] = ms;
    total += ms;
    if (ms > worst) { worst = ms; worst_frame = frame; }
    if (cpu > worst_cpu) worst_cpu = cpu;
    if (vol > 0) blocked++;
    if (invol > 0) preempted++;
    else if (ms > worst_unpreempted) worst_unpreempted = ms;
    if (ms > o.outlier_ms) {
      printf("%s: frame %d took %.3f ms (cpu %.3f ms, budget %.3f ms%s%s)\n",
             ms > 1000 ? "freeze" : "outlier", frame, ms, cpu, o.outlier_ms,
             vol > 0 ? ", blocked" : "", invol > 0 ? ", preempted" : "");
      fflush(stdout);
    }
    if (finished >= o.messages) break;

    /* Sleep the rest of the frame; after a long frame, start counting again from now. */
    add_ns(&deadline, FRAME_NS);
    if (ms_between(&t1, &deadline) < 0) deadline = t1;
    while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &deadline, NULL) == EINTR) {}
  }

  if (ok && call_game(L, game, "counts", 0, 2)) {
    sent = lua_tointeger(L, -2);
    failed = lua_tointeger(L, -1);
    lua_pop(L, 2);
  }
  if (ok && sent + failed < o.messages)
    fprintf(stderr, "frame_loop: gave up after %.0f s with %d of %d messages done\n",
            o.max_seconds, (int)(sent + failed), o.messages);
  qsort(times, nframes, sizeof *times, cmp_double);
  printf("RESULT mode=%s sent=%d failed=%d frames=%d worst_ms=%.3f worst_frame=%d "
         "p99_ms=%.3f worst_cpu_ms=%.3f mean_ms=%.3f blocked=%d preempted=%d "
         "worst_unpreempted_ms=%.3f\n",
         o.blocking ? "blocking" : "task", (int)sent, (int)failed, (int)nframes, worst,
         worst_frame, nframes ? times[(nframes * 99) / 100] : 0.0,
         worst_cpu, nframes ? total / (double)nframes : 0.0, blocked, preempted,
         worst_unpreempted);
  if (o.blocking)
    printf("the blocking send froze the loop for %.0f ms at worst\n", worst);
  else
    printf("worst frame: %.3f ms\n", worst);
  free(times);
  call_game(L, game, "close", 0, 0);
  lua_close(L);
  return ok && sent == o.messages ? 0 : 1;
}
