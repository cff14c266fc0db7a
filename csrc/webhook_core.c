/* SPDX-License-Identifier: MIT */
/* Signature header parser, HMAC-SHA256 and constant-time compare, free of Lua so that
 * libFuzzer can drive it directly (fuzz/webhook_fuzz.c). */
#include <stdlib.h>
#include <string.h>

#include <openssl/opensslv.h>
#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/params.h>

#include "webhook_core.h"

#if OPENSSL_VERSION_NUMBER < 0x30000000L
#error "chatmaid webhooks need OpenSSL >= 3.0 (EVP_MAC)"
#endif

/*
 * Why EVP_MAC and not the one-shot HMAC(): the MAC input is t "." body, and HMAC() would
 * need the three pieces in one buffer, i.e. a copy of a body that may be megabytes long
 * and is attacker-sized. EVP_MAC takes them as three updates. It also lets us keep one
 * keyed state per secret (cm_wh_cache) and restart it per message, which skips the
 * algorithm fetch, the allocations and the key schedule that HMAC() redoes on every call.
 */

static EVP_MAC_CTX *keyed_new(const char *key, size_t klen) {
  static const unsigned char empty[1] = {0};
  char digest[] = "SHA256";
  OSSL_PARAM params[2];
  EVP_MAC *mac;
  EVP_MAC_CTX *ctx;
  if ((mac = EVP_MAC_fetch(NULL, "HMAC", NULL)) == NULL) return NULL;
  ctx = EVP_MAC_CTX_new(mac);
  EVP_MAC_free(mac);            /* the context holds its own reference */
  if (ctx == NULL) return NULL;
  params[0] = OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST, digest, 0);
  params[1] = OSSL_PARAM_construct_end();
  /* A NULL key would mean "keep the previous key"; an empty secret is a real empty key. */
  if (!EVP_MAC_init(ctx, klen ? (const unsigned char *)key : empty, klen, params)) {
    EVP_MAC_CTX_free(ctx);
    return NULL;
  }
  return ctx;
}

/* Borrowed keyed state for key from the cache, creating it if needed; NULL if the cache
 * cannot hold it (then the caller keys a private state). Valid until the next lookup, so
 * callers finish one MAC before looking up the next secret. */
static EVP_MAC_CTX *cache_get(cm_wh_cache *c, const char *key, size_t klen) {
  cm_wh_cache_entry *e;
  unsigned i;
  for (i = 0; i < CM_WH_CACHE_SIZE; i++) {
    e = &c->e[i];
    if (e->ctx != NULL && e->len == klen && memcmp(e->key, key, klen) == 0) return e->ctx;
  }
  e = &c->e[c->next];
  c->next = (c->next + 1) % CM_WH_CACHE_SIZE;
  if (e->ctx != NULL) {
    EVP_MAC_CTX_free(e->ctx);
    OPENSSL_clear_free(e->key, e->len);
    e->ctx = NULL;
    e->key = NULL;
    e->len = 0;
  }
  if ((e->key = malloc(klen ? klen : 1)) == NULL) return NULL;
  memcpy(e->key, key, klen);
  if ((e->ctx = keyed_new(key, klen)) == NULL) {
    OPENSSL_clear_free(e->key, klen ? klen : 1);
    e->key = NULL;
    return NULL;
  }
  e->len = klen;
  return e->ctx;
}

void cm_wh_cache_clear(cm_wh_cache *c) {
  unsigned i;
  for (i = 0; i < CM_WH_CACHE_SIZE; i++) {
    cm_wh_cache_entry *e = &c->e[i];
    if (e->ctx != NULL) EVP_MAC_CTX_free(e->ctx);
    if (e->key != NULL) OPENSSL_clear_free(e->key, e->len ? e->len : 1);
    e->ctx = NULL;
    e->key = NULL;
    e->len = 0;
  }
  c->next = 0;
}

static void to_hex(const unsigned char *mac, char *hex) {
  static const char digits[] = "0123456789abcdef";
  int i;
  for (i = 0; i < 32; i++) {
    hex[2 * i] = digits[mac[i] >> 4];
    hex[2 * i + 1] = digits[mac[i] & 15];
  }
}

int cm_wh_sign(cm_wh_cache *cache, const char *key, size_t klen, const char *tstr,
               size_t tlen, const char *body, size_t blen, char hex[64]) {
  /* A cached state is re-initialised with a NULL key, which restarts HMAC from the key
   * already set (EVP_MAC_init(3); made reliable for every provided MAC by OpenSSL PR
   * #18100, in 3.0.4). Without a cache the state is keyed here and freed below. */
  EVP_MAC_CTX *cached = cache != NULL ? cache_get(cache, key, klen) : NULL;
  EVP_MAC_CTX *ctx = cached != NULL ? cached : keyed_new(key, klen);
  unsigned char mac[EVP_MAX_MD_SIZE];
  size_t maclen = 0;
  int ok;
  if (ctx == NULL) return CM_WH_EFAIL;
  ok = (cached == NULL || EVP_MAC_init(ctx, NULL, 0, NULL))
       && EVP_MAC_update(ctx, (const unsigned char *)tstr, tlen)
       && EVP_MAC_update(ctx, (const unsigned char *)".", 1)
       && EVP_MAC_update(ctx, (const unsigned char *)body, blen)
       && EVP_MAC_final(ctx, mac, &maclen, sizeof mac)
       && maclen == 32;
  if (cached == NULL) EVP_MAC_CTX_free(ctx);
  if (ok) to_hex(mac, hex);
  OPENSSL_cleanse(mac, sizeof mac);
  return ok ? CM_WH_OK : CM_WH_EFAIL;
}

/* Header parts, split in place: "k=v" separated by ',' with blanks around each part. */
typedef struct part_iter {
  const char *h;
  size_t len, pos;
  int done;
} part_iter;

static int is_blank(char c) {
  return c == ' ' || c == '\t' || c == '\r' || c == '\n';
}

/* 1: a part in k/v; 0: no more parts; -1: a part that is not k=v (empty, no '=', no k). */
static int next_part(part_iter *it, const char **k, size_t *klen, const char **v,
                     size_t *vlen) {
  const char *p, *end, *comma, *eq;
  if (it->done) return 0;
  p = it->h + it->pos;
  comma = memchr(p, ',', it->len - it->pos);
  end = comma != NULL ? comma : it->h + it->len;
  if (comma != NULL) it->pos = (size_t)(comma - it->h) + 1;
  else it->done = 1;
  while (p < end && is_blank(*p)) p++;
  while (end > p && is_blank(end[-1])) end--;
  if (p == end || (eq = memchr(p, '=', (size_t)(end - p))) == NULL || eq == p) return -1;
  *k = p;
  *klen = (size_t)(eq - p);
  *v = eq + 1;
  *vlen = (size_t)(end - eq - 1);
  return 1;
}

/* Digits only, 1..CM_WH_MAX_TDIGITS of them: no sign, no blanks, no locale. */
static int parse_t(const char *v, size_t n, long long *t) {
  long long x = 0;
  size_t i;
  if (n == 0 || n > CM_WH_MAX_TDIGITS) return 0;
  for (i = 0; i < n; i++) {
    if (v[i] < '0' || v[i] > '9') return 0;
    x = x * 10 + (v[i] - '0');
  }
  *t = x;
  return 1;
}

static int is_key(const char *k, size_t klen, const char *name) {
  size_t n = strlen(name);
  return klen == n && memcmp(k, name, n) == 0;
}

int cm_wh_verify(cm_wh_cache *cache, const char *body, size_t blen, const char *header,
                 size_t hlen, const cm_wh_secret *secrets, size_t n, double tolerance,
                 double now, long long *t, int *has_t) {
  char hex[CM_WH_MAX_SECRETS][64];
  part_iter it;
  const char *k, *v, *tstr = NULL;
  size_t klen, vlen, tlen = 0, nv1 = 0, i;
  int r, match = 0;
  double skew;
  *has_t = 0;
  if (hlen == 0 || hlen > CM_WH_MAX_HEADER) return CM_WH_MALFORMED;
  memset(&it, 0, sizeof it);
  it.h = header;
  it.len = hlen;
  while ((r = next_part(&it, &k, &klen, &v, &vlen)) != 0) {
    if (r < 0) return CM_WH_MALFORMED;
    if (is_key(k, klen, "t")) {
      if (tstr != NULL || !parse_t(v, vlen, t)) return CM_WH_MALFORMED;
      tstr = v;
      tlen = vlen;
    } else if (is_key(k, klen, "v1")) {
      nv1++;
    }                           /* other schemes (v0, ...) are ignored */
  }
  if (tstr == NULL) return CM_WH_MALFORMED;
  *has_t = 1;
  if (nv1 == 0) return CM_WH_NO_SIGNATURE;
  /* Cheap rejection of replays before any MAC over a possibly large body. */
  skew = now - (double)*t;
  if (skew < 0) skew = -skew;
  if (!(skew <= tolerance)) return CM_WH_TOLERANCE;
  if (n > CM_WH_MAX_SECRETS) return CM_WH_EFAIL;
  /* The MAC covers the t bytes exactly as sent (leading zeros included). */
  for (i = 0; i < n; i++) {
    if (cm_wh_sign(cache, secrets[i].key, secrets[i].len, tstr, tlen, body, blen, hex[i])
        != CM_WH_OK) {
      OPENSSL_cleanse(hex, sizeof hex);
      return CM_WH_EFAIL;
    }
  }
  /* Every candidate against every secret, no early exit. */
  memset(&it, 0, sizeof it);
  it.h = header;
  it.len = hlen;
  while (next_part(&it, &k, &klen, &v, &vlen) > 0) {
    if (!is_key(k, klen, "v1") || vlen != 64) continue;
    for (i = 0; i < n; i++) match |= CRYPTO_memcmp(v, hex[i], 64) == 0;
  }
  OPENSSL_cleanse(hex, sizeof hex);
  return match ? CM_WH_OK : CM_WH_MISMATCH;
}
