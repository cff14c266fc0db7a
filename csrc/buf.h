/* SPDX-License-Identifier: MIT */
/* cm_buf: a growable byte buffer that never raises, so libcurl callbacks may append to it. */
#ifndef CM_BUF_H
#define CM_BUF_H

#include <stddef.h>

typedef struct cm_buf {
  char *data;
  size_t len, cap;
  size_t limit;   /* appends beyond this fail with over = 1; 0 means no limit */
  int over;       /* set when an append was refused for the limit */
  int nomem;      /* set when an allocation failed */
} cm_buf;

void cm_buf_init(cm_buf *b, size_t limit);
int cm_buf_append(cm_buf *b, const char *p, size_t n);   /* 1 ok, 0 refused (flag set) */
void cm_buf_reset(cm_buf *b);                            /* keep memory, drop contents */
void cm_buf_free(cm_buf *b);

#endif
