/* SPDX-License-Identifier: MIT */
/* One writer per file (the batch journal): Lua cannot lock a file, so this does.
 * core.lock_file(path) -> lock | nil, kind, message[, pid]
 *   Opens path (created 0600; never through a symbolic link; a regular file only) and takes
 *   an exclusive flock(2), never waiting. flock belongs to the open file, so a second lock in
 *   the same process conflicts too, and closing some other descriptor of the file does not
 *   drop it (an fcntl lock would be dropped). The holder also puts an fcntl read lock on one
 *   byte far past the end, read by nobody: F_GETLK on it tells a refused process the holder's
 *   pid. A file of another user is refused. A lock taken on a file that was meanwhile renamed
 *   away from path is dropped and path opened again.
 *   Kinds: "busy" (pid: the holder, when known), "symlink", "not_regular", "not_owner",
 *   "open".
 * The lock's methods do the file's I/O through the same descriptor, so the holder never opens
 * the file again: lock:read() -> the whole file, lock:append(s), lock:truncate(),
 * lock:private() makes the file 0600 (a journal older versions left 0644; called once the file
 * is known to be a journal, so a file given by mistake keeps its mode),
 * lock:close() (also __gc and __close) releases the locks and the descriptor; idempotent. */
#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include "lua.h"
#include "lauxlib.h"
#include "compat.h"

#include "filelock.h"

#define FILELOCK_MT "chatmaid.filelock"
/* the byte whose read lock names the holder: far beyond any journal, below 2^53 */
#define PID_BYTE ((off_t)1 << 50)

typedef struct { int fd; } FileLock;

static int fail(lua_State *L, const char *kind, const char *what, const char *path, int err) {
  cm_pushfail(L);
  lua_pushstring(L, kind);
  lua_pushfstring(L, "%s %s: %s", what, path, strerror(err));
  return 3;
}

/* nil, "io", the system's message: the caller knows the path and what it was doing */
static int io_fail(lua_State *L, int err) {
  cm_pushfail(L);
  lua_pushliteral(L, "io");
  lua_pushstring(L, strerror(err));
  return 3;
}

static void pid_lock(int fd, short type, int cmd, struct flock *fl) {
  memset(fl, 0, sizeof *fl);
  fl->l_type = type;
  fl->l_whence = SEEK_SET;
  fl->l_start = PID_BYTE;
  fl->l_len = 1;
  (void)fcntl(fd, cmd, fl);
}

static int filelock_release(lua_State *L) {
  FileLock *k = luaL_checkudata(L, 1, FILELOCK_MT);
  if (k->fd >= 0) {
    close(k->fd);                        /* drops the flock and the pid lock */
    k->fd = -1;
  }
  lua_pushboolean(L, 1);
  return 1;
}

static FileLock *check_open(lua_State *L) {
  FileLock *k = luaL_checkudata(L, 1, FILELOCK_MT);
  if (k->fd < 0) luaL_error(L, "attempt to use a closed file lock");
  return k;
}

/* lock_file(path) */
static int filelock_new(lua_State *L) {
  size_t len;
  const char *path = luaL_checklstring(L, 1, &len);
  FileLock *k;
  struct stat st, now;
  struct flock fl;
  int tries = 0;
  luaL_argcheck(L, len > 0 && strlen(path) == len, 1, "must be a file path without NUL bytes");
  k = cm_newuserdatauv(L, sizeof *k, 0);
  k->fd = -1;                            /* closed state: __gc-safe */
  cm_setmetatable(L, FILELOCK_MT);
again:
  k->fd = open(path, O_RDWR | O_CREAT | O_APPEND | O_NOFOLLOW | O_CLOEXEC, 0600);
  if (k->fd < 0) {
    int e = errno;
    if (e == ELOOP) {
      cm_pushfail(L);
      lua_pushliteral(L, "symlink");
      lua_pushfstring(L, "%s is a symbolic link: give the path of the file itself", path);
      return 3;
    }
    if (e != EISDIR) return fail(L, "open", "cannot open", path, e);
  }
  if (k->fd < 0 || fstat(k->fd, &st) != 0 || !S_ISREG(st.st_mode)) {
    if (k->fd >= 0) close(k->fd);
    k->fd = -1;
    cm_pushfail(L);
    lua_pushliteral(L, "not_regular");
    lua_pushfstring(L, "%s is not a regular file", path);
    return 3;
  }
  /* A file someone else planted (in a shared directory) could be read by them and could hold
   * "confirmed" lines that make us skip rows: refuse it, as ssh refuses a key file it does
   * not own. */
  if (st.st_uid != geteuid()) {
    close(k->fd);
    k->fd = -1;
    cm_pushfail(L);
    lua_pushliteral(L, "not_owner");
    lua_pushfstring(L, "%s belongs to another user (uid %d): a journal must be yours alone;"
                    " remove it or give a path of your own", path, (int)st.st_uid);
    return 3;
  }
  if (flock(k->fd, LOCK_EX | LOCK_NB) != 0) {
    int e = errno;
    pid_lock(k->fd, F_WRLCK, F_GETLK, &fl);
    close(k->fd);
    k->fd = -1;
    if (e != EWOULDBLOCK) return fail(L, "open", "cannot lock", path, e);
    cm_pushfail(L);
    lua_pushliteral(L, "busy");
    if (fl.l_type != F_UNLCK && fl.l_pid > 0) {
      lua_pushfstring(L, "%s is in use by another process (pid %d)", path, (int)fl.l_pid);
      lua_pushinteger(L, (lua_Integer)fl.l_pid);
      return 4;
    }
    lua_pushfstring(L, "%s is in use by another writer (pid unknown)", path);
    return 3;
  }
  /* Between our open and our flock the holder may have renamed the file away (`batch --new`
   * keeps the earlier journal aside, then locks a new one at path) and let it go: our lock
   * is then on a file no longer at path and guards nothing. Open path again. */
  if (lstat(path, &now) != 0 || now.st_dev != st.st_dev || now.st_ino != st.st_ino) {
    close(k->fd);
    k->fd = -1;
    if (++tries < 100) goto again;
    cm_pushfail(L);
    lua_pushliteral(L, "busy");
    lua_pushfstring(L, "%s keeps being replaced by another process", path);
    return 3;
  }
  pid_lock(k->fd, F_RDLCK, F_SETLK, &fl);
  return 1;
}

/* lock:read() -> the whole file | nil, "io", the system's message (strerror) */
static int filelock_read(lua_State *L) {
  FileLock *k = check_open(L);
  luaL_Buffer b;
  off_t at = 0;
  luaL_buffinit(L, &b);
  for (;;) {
    char *p = luaL_prepbuffer(&b);
    ssize_t n = pread(k->fd, p, LUAL_BUFFERSIZE, at);
    if (n < 0) {
      if (errno == EINTR) continue;
      return io_fail(L, errno);
    }
    if (n == 0) break;
    luaL_addsize(&b, (size_t)n);
    at += n;
  }
  luaL_pushresult(&b);
  return 1;
}

/* lock:append(s) -> true | nil, "io", message (all of s, at the end of the file) */
static int filelock_append(lua_State *L) {
  FileLock *k = check_open(L);
  size_t len, done = 0;
  const char *s = luaL_checklstring(L, 2, &len);
  while (done < len) {
    ssize_t n = write(k->fd, s + done, len - done);
    if (n < 0) {
      if (errno == EINTR) continue;
      return io_fail(L, errno);
    }
    done += (size_t)n;
  }
  lua_pushboolean(L, 1);
  return 1;
}

/* lock:truncate() -> true | nil, "io", message */
static int filelock_truncate(lua_State *L) {
  FileLock *k = check_open(L);
  if (ftruncate(k->fd, 0) != 0) return io_fail(L, errno);
  lua_pushboolean(L, 1);
  return 1;
}

/* lock:private() -> true | nil, "io", message: owner read and write only */
static int filelock_private(lua_State *L) {
  FileLock *k = check_open(L);
  struct stat st;
  if (fstat(k->fd, &st) != 0) return io_fail(L, errno);
  if ((st.st_mode & 077) != 0 && fchmod(k->fd, st.st_mode & 0700) != 0) return io_fail(L, errno);
  lua_pushboolean(L, 1);
  return 1;
}

static int filelock_tostring(lua_State *L) {
  FileLock *k = luaL_checkudata(L, 1, FILELOCK_MT);
  lua_pushstring(L, k->fd >= 0 ? "chatmaid.filelock (held)" : "chatmaid.filelock (closed)");
  return 1;
}

void cm_filelock_open(lua_State *L) {
  static const luaL_Reg meta[] = {
    {"__gc", filelock_release},
#if LUA_VERSION_NUM >= 504
    {"__close", filelock_release},
#endif
    {"__tostring", filelock_tostring},
    {NULL, NULL}
  };
  static const luaL_Reg methods[] = {
    {"read", filelock_read},
    {"append", filelock_append},
    {"truncate", filelock_truncate},
    {"private", filelock_private},
    {"close", filelock_release},
    {NULL, NULL}
  };
  static const luaL_Reg funcs[] = {
    {"lock_file", filelock_new},
    {NULL, NULL}
  };
  if (luaL_newmetatable(L, FILELOCK_MT)) {
    cm_setfuncs(L, meta, 0);
    lua_newtable(L);
    cm_setfuncs(L, methods, 0);
    lua_setfield(L, -2, "__index");
  }
  lua_pop(L, 1);
  cm_setfuncs(L, funcs, 0);
}
