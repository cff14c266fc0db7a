/* SPDX-License-Identifier: MIT */
#ifndef CM_FDWATCH_H
#define CM_FDWATCH_H
#include "lua.h"
void cm_fdwatch_open(lua_State *L);   /* adds fdwatch() on Linux; nothing elsewhere */
#endif
