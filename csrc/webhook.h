/* SPDX-License-Identifier: MIT */
#ifndef CM_WEBHOOK_H
#define CM_WEBHOOK_H
#include "lua.h"
void cm_webhook_open(lua_State *L);   /* adds webhook_* functions to the table on top */
#endif
