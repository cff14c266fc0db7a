/* SPDX-License-Identifier: MIT */
#ifndef CM_TEXT_H
#define CM_TEXT_H
#include "lua.h"

void cm_text_open(lua_State *L);   /* adds utf16_length, has_control, is_e164 to the table on top */

#endif
