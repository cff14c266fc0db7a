/* SPDX-License-Identifier: MIT */
#ifndef CM_FILELOCK_H
#define CM_FILELOCK_H
#include "lua.h"
void cm_filelock_open(lua_State *L);  /* adds lock_file to the table on top */
#endif
