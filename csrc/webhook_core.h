/* SPDX-License-Identifier: MIT */
/* Webhook signature check with no Lua in it: shared by webhook.c and fuzz/webhook_fuzz.c. */
#ifndef CM_WEBHOOK_CORE_H
#define CM_WEBHOOK_CORE_H
#include <stddef.h>

#define CM_WH_MAX_HEADER 8192   /* a longer header is malformed */
#define CM_WH_MAX_TDIGITS 15    /* t beyond 15 digits is malformed (fits a double exactly) */
#define CM_WH_MAX_SECRETS 16    /* secrets per call; rotation needs two */
#define CM_WH_CACHE_SIZE 8      /* keyed HMAC states kept per cache */

enum {
  CM_WH_OK = 0,
  CM_WH_MALFORMED,              /* "malformed_header" */
  CM_WH_NO_SIGNATURE,           /* "no_signature" */
  CM_WH_TOLERANCE,              /* "timestamp_out_of_tolerance" */
  CM_WH_MISMATCH,               /* "mismatch" */
  CM_WH_EFAIL                   /* OpenSSL failed (out of memory) or too many secrets */
};

typedef struct cm_wh_secret {
  const char *key;
  size_t len;
} cm_wh_secret;

/* Keyed HMAC-SHA256 states, reused across calls. Plain C memory with no Lua references:
 * the owner zeroes it before first use and calls cm_wh_cache_clear() to release it. */
typedef struct cm_wh_cache_entry {
  unsigned char *key;           /* malloc'd copy, compared to find the entry */
  size_t len;
  void *ctx;                    /* EVP_MAC_CTX *, keyed with key */
} cm_wh_cache_entry;

typedef struct cm_wh_cache {
  cm_wh_cache_entry e[CM_WH_CACHE_SIZE];
  unsigned next;                /* round-robin eviction */
} cm_wh_cache;

void cm_wh_cache_clear(cm_wh_cache *c);

/* Lowercase hex HMAC-SHA256(key, tstr "." body) into hex[64] (not terminated).
 * cache may be NULL. Returns CM_WH_OK or CM_WH_EFAIL. */
int cm_wh_sign(cm_wh_cache *cache, const char *key, size_t klen, const char *tstr,
               size_t tlen, const char *body, size_t blen, char hex[64]);

/* Parses header (at most CM_WH_MAX_HEADER bytes), checks |now - t| <= tolerance, then
 * compares every v1 candidate with every secret's MAC in constant time. Returns a CM_WH_*
 * code; *t is set (and *has_t = 1) whenever t parsed. cache may be NULL. Allocates nothing
 * proportional to the input: at most one keyed state per secret. */
int cm_wh_verify(cm_wh_cache *cache, const char *body, size_t blen, const char *header,
                 size_t hlen, const cm_wh_secret *secrets, size_t n, double tolerance,
                 double now, long long *t, int *has_t);

#endif
