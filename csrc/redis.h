/* SPDX-License-Identifier: MIT */
#ifndef CM_REDIS_H
#define CM_REDIS_H
#include "lua.h"
void cm_redis_open(lua_State *L);   /* adds redis_connect() to the table on top */
#endif
