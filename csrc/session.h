/* SPDX-License-Identifier: MIT */
#ifndef CM_SESSION_H
#define CM_SESSION_H
#include "lua.h"
void cm_session_open(lua_State *L);   /* adds session() to the table on top */
#endif
