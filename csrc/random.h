/* SPDX-License-Identifier: MIT */
#ifndef CM_RANDOM_H
#define CM_RANDOM_H
#include "lua.h"
void cm_random_open(lua_State *L);    /* adds uuid4, random_bytes to the table on top */
#endif
