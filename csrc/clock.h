/* SPDX-License-Identifier: MIT */
#ifndef CM_CLOCK_H
#define CM_CLOCK_H
#include "lua.h"
void cm_clock_open(lua_State *L);     /* adds sleep, monotime, time to the table on top */
#endif
