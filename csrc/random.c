/* SPDX-License-Identifier: MIT */
/* Idempotency keys and jitter seeds from OpenSSL's CSPRNG, never from math.random. */
#include <pthread.h>
#include <string.h>

#include "lua.h"
#include "lauxlib.h"
#include "compat.h"

#include <openssl/rand.h>

#include "random.h"

/* RAND_bytes costs about 2.5 us a call under OpenSSL 3 (provider locking), as much as the
 * rest of a send's Lua work; so uuid4 draws 4 KiB at a time into a pool owned by this Lua
 * state (an upvalue: no sharing between threads). The pool is refilled after a fork, so
 * nginx workers forked from a master that already drew keys never hand out the same ones,
 * and every byte is wiped once used. Forks are counted by a pthread_atfork handler rather
 * than by comparing getpid(), a system call that costs as much as the whole uuid. */
#define POOL_SIZE 4096

typedef struct Pool {
  unsigned char bytes[POOL_SIZE];
  size_t pos;
  unsigned long forks;    /* fork_count when the pool was filled */
} Pool;

static volatile unsigned long fork_count = 0;

static void on_fork_child(void) {
  fork_count++;
}

/* Set once, through pthread_once: Lua states on several threads may open the module at
 * once. Every reader has run cm_random_open (and so pthread_once) first. */
static int atfork_ok = 0;
static pthread_once_t atfork_once = PTHREAD_ONCE_INIT;

static void atfork_init(void) {
  atfork_ok = pthread_atfork(NULL, NULL, on_fork_child) == 0;
}

static int pool_take(Pool *p, unsigned char *out, size_t n) {
  if (!atfork_ok) return RAND_bytes(out, (int)n) == 1;   /* cannot see forks: no pool */
  if (p->pos + n > POOL_SIZE || p->forks != fork_count) {
    if (RAND_bytes(p->bytes, POOL_SIZE) != 1) return 0;
    p->pos = 0;
    p->forks = fork_count;
  }
  memcpy(out, p->bytes + p->pos, n);
  memset(p->bytes + p->pos, 0, n);
  p->pos += n;
  return 1;
}

/* RFC 4122 version 4: 122 random bits, version nibble 4, variant bits 10. */
static int random_uuid4(lua_State *L) {
  Pool *pool = (Pool *)lua_touserdata(L, lua_upvalueindex(1));
  unsigned char b[16];
  char out[36];
  if (!pool_take(pool, b, sizeof b))
    return luaL_error(L, "chatmaid.core: the system random generator failed");
  static const char hex[] = "0123456789abcdef";
  int i, o = 0;
  b[6] = (unsigned char)((b[6] & 0x0f) | 0x40);
  b[8] = (unsigned char)((b[8] & 0x3f) | 0x80);
  for (i = 0; i < 16; i++) {
    if (i == 4 || i == 6 || i == 8 || i == 10) out[o++] = '-';
    out[o++] = hex[b[i] >> 4];
    out[o++] = hex[b[i] & 15];
  }
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
    {"random_bytes", random_bytes},
    {NULL, NULL}
  };
  Pool *p;
  pthread_once(&atfork_once, atfork_init);
  cm_setfuncs(L, funcs, 0);
  p = (Pool *)cm_newuserdatauv(L, sizeof *p, 0);
  memset(p, 0, sizeof *p);
  p->pos = POOL_SIZE;                   /* empty: the first call fills it */
  /* Fill it now: OpenSSL's first RAND_bytes in a process sets up its generator (about 2.5 ms
   * here), which belongs in require (a game's load screen), not in the first send of a frame.
   * On failure the pool stays empty and the first uuid4 tries again. */
  if (atfork_ok && RAND_bytes(p->bytes, POOL_SIZE) == 1) {
    p->pos = 0;
    p->forks = fork_count;
  }
  lua_pushcclosure(L, random_uuid4, 1);
  lua_setfield(L, -2, "uuid4");
}
