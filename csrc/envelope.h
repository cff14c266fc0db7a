/* SPDX-License-Identifier: MIT */
#ifndef CM_ENVELOPE_H
#define CM_ENVELOPE_H
#include "lua.h"
void cm_envelope_open(lua_State *L);  /* adds decode_envelope, json_encode, array_mt */
#endif
