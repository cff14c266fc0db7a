/* SPDX-License-Identifier: MIT */
/* The table scripts/embed-gen.lua generates: one entry per embedded Lua module. */
#ifndef CHATMAID_EMBED_MODULES_H
#define CHATMAID_EMBED_MODULES_H
#include <stddef.h>

typedef struct cm_embed_module {
  const char *name;              /* "chatmaid.client" */
  const char *chunkname;         /* "@lua/chatmaid/client.lua", as in tracebacks from disk */
  const unsigned char *src;      /* the Lua source text */
  size_t len;
} cm_embed_module;

/* Ends with an entry whose name is NULL. */
extern const cm_embed_module cm_embed_modules[];

#endif
