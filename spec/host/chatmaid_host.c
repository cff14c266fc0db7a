/* SPDX-License-Identifier: MIT */
/* A small embedding host for specs that need what a stock interpreter cannot do: many Lua
 * states on many threads at once (nginx's thread pool, a threaded server), or a real fork()
 * of a process that has used a client.
 *
 *   chatmaid_host [-t THREADS] SCRIPT [ARGS...]
 *
 * Runs SCRIPT once per thread (default 1: on the main thread), each in its own lua_State
 * with the standard libraries. CHATMAID_HOST_PATH and CHATMAID_HOST_CPATH, when set, are
 * put in front of package.path and package.cpath. The script sees `arg` (ARGS as
 * arg[1..n]) and a global `host` table:
 *   host.thread, host.threads   this thread's number (1..N) and N
 *   host.fork() -> pid          (0 in the child)
 *   host.wait(pid) -> status    the child's exit status (or 128 + signal)
 *   host.exit(code)             _exit(code): a forked child ends without running the
 *                               parent's atexit handlers or flushing its stdio twice
 *   host.getpid() -> pid
 * Exit status: 0 when every thread's script returned without raising (and did not return
 * false), 1 otherwise; each failure is printed as "thread N: message" on stderr.
 * Built per Lua runtime by the Makefile ($(BUILD)/chatmaid_host, mk/host.mk). */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#include "lua.h"
#include "lauxlib.h"
#include "lualib.h"

#define MAX_THREADS 256

typedef struct Job {
  int thread, threads;
  const char *script;
  int argc;
  char **argv;
  int ok;
  pthread_t tid;
} Job;

static int h_fork(lua_State *L) {
  pid_t pid;
  fflush(NULL);
  pid = fork();
  if (pid < 0) return luaL_error(L, "fork failed");
  lua_pushinteger(L, (lua_Integer)pid);
  return 1;
}

static int h_wait(lua_State *L) {
  pid_t pid = (pid_t)luaL_checkinteger(L, 1);
  int st = 0;
  if (waitpid(pid, &st, 0) != pid) return luaL_error(L, "waitpid failed");
  lua_pushinteger(L, WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st));
  return 1;
}

static int h_exit(lua_State *L) {
  int code = (int)luaL_optinteger(L, 1, 0);
  fflush(NULL);
  _exit(code);
  return 0;
}

static int h_getpid(lua_State *L) {
  lua_pushinteger(L, (lua_Integer)getpid());
  return 1;
}

/* package[field] = prefix .. ";" .. package[field] */
static void prepend_path(lua_State *L, const char *field, const char *env) {
  const char *prefix = getenv(env);
  if (prefix == NULL || *prefix == '\0') return;
  lua_getglobal(L, "package");
  lua_pushstring(L, prefix);
  lua_pushliteral(L, ";");
  lua_getfield(L, -3, field);
  lua_concat(L, 3);
  lua_setfield(L, -2, field);
  lua_pop(L, 1);
}

static void *run(void *ud) {
  Job *j = ud;
  int i;
  lua_State *L = luaL_newstate();
  if (L == NULL) {
    fprintf(stderr, "thread %d: cannot create a Lua state\n", j->thread);
    return NULL;
  }
  luaL_openlibs(L);
  prepend_path(L, "path", "CHATMAID_HOST_PATH");
  prepend_path(L, "cpath", "CHATMAID_HOST_CPATH");
  lua_newtable(L);
  lua_pushinteger(L, j->thread);
  lua_setfield(L, -2, "thread");
  lua_pushinteger(L, j->threads);
  lua_setfield(L, -2, "threads");
  lua_pushcfunction(L, h_fork);
  lua_setfield(L, -2, "fork");
  lua_pushcfunction(L, h_wait);
  lua_setfield(L, -2, "wait");
  lua_pushcfunction(L, h_exit);
  lua_setfield(L, -2, "exit");
  lua_pushcfunction(L, h_getpid);
  lua_setfield(L, -2, "getpid");
  lua_setglobal(L, "host");
  lua_newtable(L);
  lua_pushstring(L, j->script);
  lua_rawseti(L, -2, 0);
  for (i = 0; i < j->argc; i++) {
    lua_pushstring(L, j->argv[i]);
    lua_rawseti(L, -2, i + 1);
  }
  lua_setglobal(L, "arg");
  if (luaL_loadfile(L, j->script) != 0 || lua_pcall(L, 0, 1, 0) != 0) {
    fprintf(stderr, "thread %d: %s\n", j->thread, lua_tostring(L, -1));
  } else if (lua_type(L, -1) == LUA_TBOOLEAN && !lua_toboolean(L, -1)) {
    fprintf(stderr, "thread %d: the script returned false\n", j->thread);
  } else {
    j->ok = 1;
  }
  lua_close(L);
  return NULL;
}

int main(int argc, char **argv) {
  int threads = 1, first = 1, i, failed = 0;
  Job *jobs;
  if (argc > 2 && strcmp(argv[1], "-t") == 0) {
    threads = atoi(argv[2]);
    first = 3;
  }
  if (first >= argc || threads < 1 || threads > MAX_THREADS) {
    fprintf(stderr, "usage: %s [-t THREADS(1..%d)] SCRIPT [ARGS...]\n", argv[0], MAX_THREADS);
    return 2;
  }
  if ((jobs = calloc((size_t)threads, sizeof *jobs)) == NULL) return 1;
  for (i = 0; i < threads; i++) {
    jobs[i].thread = i + 1;
    jobs[i].threads = threads;
    jobs[i].script = argv[first];
    jobs[i].argc = argc - first - 1;
    jobs[i].argv = argv + first + 1;
  }
  if (threads == 1) {
    run(&jobs[0]);
  } else {
    for (i = 0; i < threads; i++) {
      if (pthread_create(&jobs[i].tid, NULL, run, &jobs[i]) != 0) {
        fprintf(stderr, "thread %d: pthread_create failed\n", i + 1);
        threads = i;
        failed = 1;
        break;
      }
    }
    for (i = 0; i < threads; i++) pthread_join(jobs[i].tid, NULL);
  }
  for (i = 0; i < threads; i++)
    if (!jobs[i].ok) failed = 1;
  free(jobs);
  return failed ? 1 : 0;
}
