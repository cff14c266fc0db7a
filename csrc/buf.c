/* SPDX-License-Identifier: MIT */
/* Growable byte buffer. No Lua API here: it is used from inside libcurl callbacks. */
#include <stdlib.h>
#include <string.h>

#include "buf.h"

void cm_buf_init(cm_buf *b, size_t limit) {
  memset(b, 0, sizeof *b);
  b->limit = limit;
}

int cm_buf_append(cm_buf *b, const char *p, size_t n) {
  if (b->limit && (n > b->limit || b->len > b->limit - n)) {
    b->over = 1;
    return 0;
  }
  if (n > b->cap - b->len) {
    size_t cap = b->cap ? b->cap : 1024;
    char *d;
    while (cap - b->len < n) {
      if (cap > ((size_t)-1) / 2) { b->nomem = 1; return 0; }
      cap *= 2;
    }
    if ((d = realloc(b->data, cap)) == NULL) { b->nomem = 1; return 0; }
    b->data = d;
    b->cap = cap;
  }
  if (n) memcpy(b->data + b->len, p, n);
  b->len += n;
  return 1;
}

void cm_buf_reset(cm_buf *b) {
  b->len = 0;
  b->over = b->nomem = 0;
}

void cm_buf_free(cm_buf *b) {
  free(b->data);
  b->data = NULL;
  b->len = b->cap = 0;
}
