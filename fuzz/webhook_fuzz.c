/* SPDX-License-Identifier: MIT */
/* libFuzzer harness over the webhook header parser and verifier (csrc/webhook_core.c).
 * Input: flags byte, header length (2 bytes, little endian), header, then the body. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <stdio.h>

#include "webhook_core.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const cm_wh_secret secrets[3] = {
  {"whsec_fuzz", 10},
  {"k", 1},
  /* longer than the SHA-256 block: HMAC hashes the key first */
  {"0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef0123456789", 74}
};

static cm_wh_cache cache;       /* static: zeroed, kept across inputs like the Lua one */

static void check(int cond, const char *what) {
  if (!cond) {
    fprintf(stderr, "webhook_fuzz: property failed: %s\n", what);
    abort();
  }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  cm_wh_cache *c;
  const char *header, *body;
  size_t hlen, blen, n;
  double tolerance, now = 1700000000.0;
  long long t = 0;
  int has_t = 0, r;
  unsigned flags;
  if (size < 3) return 0;
  flags = data[0];
  hlen = (size_t)data[1] | (size_t)data[2] << 8;
  if (hlen > size - 3) hlen = size - 3;
  header = (const char *)data + 3;
  body = header + hlen;
  blen = size - 3 - hlen;
  c = (flags & 1) ? &cache : NULL;
  n = 1 + (flags >> 1) % 3;
  /* A huge tolerance lets random timestamps reach the MAC comparison. */
  tolerance = (flags & 8) ? 1e300 : 300.0;
  r = cm_wh_verify(c, body, blen, header, hlen, secrets, n, tolerance, now, &t, &has_t);
  check(r >= CM_WH_OK && r <= CM_WH_MISMATCH, "known reason code");
  if (r == CM_WH_OK || r == CM_WH_MISMATCH || r == CM_WH_TOLERANCE)
    check(has_t && t >= 0 && t <= 999999999999999LL, "t in range");

  /* Round trip: a header we sign for this body and t must verify, and only with its key. */
  if (flags & 16) {
    char hdr[128], tstr[24];
    int tl = snprintf(tstr, sizeof tstr, "%lld", (long long)(now + (flags >> 5)));
    size_t i = (flags >> 1) % 3;
    memcpy(hdr, " t=", 3);
    memcpy(hdr + 3, tstr, (size_t)tl);
    memcpy(hdr + 3 + tl, " , v0=x,v1=", 11);
    r = cm_wh_sign(c, secrets[i].key, secrets[i].len, tstr, (size_t)tl, body, blen,
                   hdr + 14 + tl);
    check(r == CM_WH_OK, "sign");
    r = cm_wh_verify(c, body, blen, hdr, (size_t)tl + 78, secrets, 3, 300.0, now, &t,
                     &has_t);
    check(r == CM_WH_OK, "own signature verifies");
    r = cm_wh_verify(c, body, blen, hdr, (size_t)tl + 78, secrets + (i + 1) % 3, 1, 300.0,
                     now, &t, &has_t);
    check(r == CM_WH_MISMATCH, "other key mismatches");
  }
  return 0;
}
