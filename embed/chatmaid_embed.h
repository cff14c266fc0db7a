/* SPDX-License-Identifier: MIT */
/* lua-chatmaid as a static library for C and C++ hosts that embed Lua 5.4.
 *
 * `make embed` builds build/embed/libchatmaid.a and copies this header beside it. The archive
 * holds chatmaid.core (the C core), chatmaid.redis.core (the Redis connection), the Lua
 * sources of the library compiled in as text, lua-cjson 2.1.0 (Debian's liblua5.4-cjson.a) and
 * hiredis (Debian's libhiredis.a, used by chatmaid.redis.core), so a host needs no shared
 * object of ours, no .lua file on disk and no dlopen. Only chatmaid_preload,
 * luaopen_chatmaid_core and luaopen_chatmaid_redis_core are global symbols of the archive;
 * every other symbol (ours, lua-cjson's, hiredis's) is local, so nothing clashes with the
 * host, not even a host that links its own lua-cjson or hiredis.
 *
 * What the host provides:
 *   - the Lua 5.4 VM (liblua5.4, static or shared): the archive calls the lua_* / luaL_* API
 *     and never carries a VM of its own;
 *   - libcurl (7.x, any TLS backend) and OpenSSL's libcrypto, the same as the shared module
 *     (and -lhiredis only for an archive built with `make embed EMBED_HIREDIS=none`);
 *   - a link line such as
 *       cc host.c build/embed/libchatmaid.a -llua5.4 -lcurl -lcrypto -lm
 *     (libchatmaid.a before the libraries it uses);
 *   - the base and package libraries opened (luaL_openlibs) before the first require.
 * Nothing else: LuaSocket and argparse are not needed (the sandbox and the CLI, which use
 * them, are not in the archive).
 *
 * A client belongs to the lua_State that created it (README, "Games and apps: non-blocking
 * use", for threads).
 */
#ifndef CHATMAID_EMBED_H
#define CHATMAID_EMBED_H

#if defined(__GNUC__)
#define CHATMAID_EMBED_API __attribute__((visibility("default")))
#else
#define CHATMAID_EMBED_API
#endif

#ifdef __cplusplus
extern "C" {
#endif

struct lua_State;

/* Adds to package.preload (the registry's _PRELOAD table, so it may be called before or after
 * luaL_openlibs):
 *   "chatmaid.core"     luaopen_chatmaid_core
 *   "chatmaid.redis.core"  luaopen_chatmaid_redis_core
 *   "cjson"             the bundled lua-cjson, unless package.loaded.cjson or
 *                       package.preload.cjson is already set (the host's own cjson wins)
 *   "chatmaid", "chatmaid.client", ... every Lua module of the library except the sandbox
 *                       (chatmaid.sandbox*) and the CLI (chatmaid.cli*)
 * Then `require "chatmaid"` works with package.path and package.cpath empty. Existing preload
 * entries with these names are replaced. Call it once per lua_State. */
CHATMAID_EMBED_API void chatmaid_preload(struct lua_State *L);

/* The C modules' openers, for hosts that register modules themselves. */
CHATMAID_EMBED_API int luaopen_chatmaid_core(struct lua_State *L);
CHATMAID_EMBED_API int luaopen_chatmaid_redis_core(struct lua_State *L);

#ifdef __cplusplus
}
#endif

#endif
