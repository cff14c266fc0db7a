/* SPDX-License-Identifier: MIT */
/* luaopen_chatmaid_core: registration only. Each file adds its own functions. */
#include <pthread.h>

#include "lua.h"
#include "lauxlib.h"
#include "compat.h"

#include <curl/curl.h>

#include "session.h"
#include "envelope.h"
#include "webhook.h"
#include "random.h"
#include "clock.h"
#include "sigwatch.h"
#include "fdwatch.h"
#include "text.h"
#include "filelock.h"

#define CM_VERSION "0.2.0"   /* = VERSION (spec/unit/version_spec.lua) */

CM_EXPORT int luaopen_chatmaid_core(lua_State *L);

/* Once per process, never cleaned up from __gc: other sessions may still use curl. Lua
 * states on several threads (nginx's thread pool, a threaded host) may load the module at
 * the same time, so the one initialisation goes through pthread_once. */
static pthread_once_t curl_once = PTHREAD_ONCE_INIT;
static CURLcode curl_init_rc = CURLE_FAILED_INIT;

static void curl_init(void) {
  curl_init_rc = curl_global_init(CURL_GLOBAL_DEFAULT);
}

CM_EXPORT int luaopen_chatmaid_core(lua_State *L) {
  static const luaL_Reg none[] = {{NULL, NULL}};
  const curl_version_info_data *v;
  if (pthread_once(&curl_once, curl_init) != 0 || curl_init_rc != CURLE_OK)
    return luaL_error(L, "chatmaid.core: curl_global_init failed");
  cm_newlib(L, none);
  lua_pushliteral(L, CM_VERSION);
  lua_setfield(L, -2, "_VERSION");
  v = curl_version_info(CURLVERSION_NOW);
  lua_pushfstring(L, "libcurl/%s", v->version);
  lua_setfield(L, -2, "curl_version");
  lua_pushboolean(L, (v->features & CURL_VERSION_HTTP2) != 0);
  lua_setfield(L, -2, "has_http2");
  cm_session_open(L);
  cm_envelope_open(L);
  cm_webhook_open(L);
  cm_random_open(L);
  cm_clock_open(L);
  cm_sigwatch_open(L);
  cm_fdwatch_open(L);
  cm_text_open(L);
  cm_filelock_open(L);
  return 1;
}
