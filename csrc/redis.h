/* SPDX-License-Identifier: MIT */
#ifndef CM_REDIS_H
#define CM_REDIS_H
#include "lua.h"
#include "compat.h"
/* chatmaid.redis.core: { redis_connect = ... } (csrc/redis.c; built apart from chatmaid.core) */
CM_EXPORT int luaopen_chatmaid_redis_core(lua_State *L);
#endif
