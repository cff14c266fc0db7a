/* SPDX-License-Identifier: MIT */
#ifndef CM_SIGWATCH_H
#define CM_SIGWATCH_H
#include "lua.h"
void cm_sigwatch_open(lua_State *L);  /* adds signal_watch, signal_pending, signal_restore */
int cm_signal_pending(void);          /* the watched signal caught (0: none): clock.c */
#endif
