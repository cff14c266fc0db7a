/* SPDX-License-Identifier: MIT */
/* Baseline for the webhook row: verify "t=<unix>,v1=<hex>" over a body (the bench uses a
 * 1 KiB delivery) in C: HMAC-SHA256(secret, t "." body), tolerance, constant-time check.
 *
 *   baseline_hmac oneshot|dup|reinit N BODY_FILE [--warmup W]
 *
 * oneshot: HMAC() per call, redoing the algorithm fetch and the key schedule each time.
 * dup:     one keyed EVP_MAC_CTX, EVP_MAC_CTX_dup per call (a per-secret cache).
 * reinit:  one keyed EVP_MAC_CTX, EVP_MAC_init with a NULL key per call (key kept).
 * Prints "RESULT <microseconds per verify>". */
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/params.h>

#include "bench_util.h"

#define SECRET "whsec_bench_0000000000000000000"
#define T_NOW 1770387513LL
#define TOLERANCE 300

enum { ONESHOT, DUP, REINIT };

#define MAX_BODY 65536

static char body[MAX_BODY];
static size_t blen;
static unsigned char msgbuf[MAX_BODY + 32];   /* t "." body, for the one-shot HMAC() */
static EVP_MAC_CTX *keyed;

static int unhex(int c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  return -1;
}

static int mac_of(int mode, const char *t, size_t tlen, unsigned char out[32]) {
  size_t outlen = 0;
  unsigned int ulen = 0;
  EVP_MAC_CTX *ctx;
  int ok;
  if (mode == ONESHOT) {
    /* HMAC() wants one buffer: the copy is part of the price of this API. */
    memcpy(msgbuf, t, tlen);
    msgbuf[tlen] = '.';
    memcpy(msgbuf + tlen + 1, body, blen);
    return HMAC(EVP_sha256(), SECRET, (int)(sizeof SECRET - 1), msgbuf,
                tlen + 1 + blen, out, &ulen) != NULL && ulen == 32;
  }
  if (mode == DUP) {
    if ((ctx = EVP_MAC_CTX_dup(keyed)) == NULL) return 0;
  } else {
    ctx = keyed;
    if (!EVP_MAC_init(ctx, NULL, 0, NULL)) return 0;
  }
  ok = EVP_MAC_update(ctx, (const unsigned char *)t, tlen)
       && EVP_MAC_update(ctx, (const unsigned char *)".", 1)
       && EVP_MAC_update(ctx, (const unsigned char *)body, blen)
       && EVP_MAC_final(ctx, out, &outlen, 32) && outlen == 32;
  if (mode == DUP) EVP_MAC_CTX_free(ctx);
  return ok;
}

/* 1 on a valid signature. Walks every comma-separated part, as a real parser must. */
static int verify(int mode, const char *h, size_t hlen, long long now) {
  const char *p = h, *end = h + hlen, *t = NULL, *sig = NULL;
  size_t tlen = 0;
  long long tv = 0;
  unsigned char mac[32], want[32];
  size_t i;
  while (p < end) {
    const char *q = memchr(p, ',', (size_t)(end - p));
    const char *pe = q ? q : end;
    if (pe - p > 2 && p[0] == 't' && p[1] == '=') { t = p + 2; tlen = (size_t)(pe - t); }
    else if (pe - p == 3 + 64 && memcmp(p, "v1=", 3) == 0) sig = p + 3;
    p = pe + 1;
  }
  if (t == NULL || sig == NULL || tlen > 15) return 0;
  for (i = 0; i < tlen; i++) {
    if (t[i] < '0' || t[i] > '9') return 0;
    tv = tv * 10 + (t[i] - '0');
  }
  if (tv < now - TOLERANCE || tv > now + TOLERANCE) return 0;
  for (i = 0; i < 32; i++) {
    int hi = unhex((unsigned char)sig[2 * i]), lo = unhex((unsigned char)sig[2 * i + 1]);
    if (hi < 0 || lo < 0) return 0;
    want[i] = (unsigned char)(hi << 4 | lo);
  }
  if (!mac_of(mode, t, tlen, mac)) bench_die("HMAC", "OpenSSL failed");
  return CRYPTO_memcmp(mac, want, 32) == 0;
}

int main(int argc, char **argv) {
  static const char digits[] = "0123456789abcdef";
  char header[128], tstr[24];
  unsigned char mac[32];
  unsigned int maclen = 0;
  int mode, hlen, tlen;
  long n, warmup = 1000, i, ok = 0;
  size_t j;
  OSSL_PARAM params[2];
  EVP_MAC *alg;
  double t0, c0;
  FILE *f;
  if (argc < 4) bench_die("usage", "baseline_hmac oneshot|dup|reinit N BODY_FILE");
  if (strcmp(argv[1], "oneshot") == 0) mode = ONESHOT;
  else if (strcmp(argv[1], "dup") == 0) mode = DUP;
  else if (strcmp(argv[1], "reinit") == 0) mode = REINIT;
  else bench_die("unknown mode", argv[1]);
  n = bench_atol(argv[2], "N");
  if (argc == 6 && strcmp(argv[4], "--warmup") == 0)
    warmup = bench_atol(argv[5], "--warmup");
  else if (argc != 4) bench_die("usage", "baseline_hmac oneshot|dup|reinit N BODY_FILE");

  if ((f = fopen(argv[3], "rb")) == NULL) bench_die("cannot open", argv[3]);
  blen = fread(body, 1, sizeof body, f);
  fclose(f);
  if (blen == 0 || blen == sizeof body) bench_die("body must be 1..65535 bytes", argv[3]);
  tlen = snprintf(tstr, sizeof tstr, "%lld", T_NOW);
  memcpy(msgbuf, tstr, (size_t)tlen);
  msgbuf[tlen] = '.';
  memcpy(msgbuf + tlen + 1, body, blen);
  HMAC(EVP_sha256(), SECRET, (int)(sizeof SECRET - 1), msgbuf, (size_t)tlen + 1 + blen,
       mac, &maclen);
  hlen = snprintf(header, sizeof header, "t=%s,v1=", tstr);
  for (j = 0; j < 32; j++) {
    header[hlen++] = digits[mac[j] >> 4];
    header[hlen++] = digits[mac[j] & 15];
  }
  header[hlen] = '\0';

  if ((alg = EVP_MAC_fetch(NULL, "HMAC", NULL)) == NULL) bench_die("EVP_MAC_fetch", NULL);
  if ((keyed = EVP_MAC_CTX_new(alg)) == NULL) bench_die("EVP_MAC_CTX_new", NULL);
  params[0] = OSSL_PARAM_construct_utf8_string("digest", (char *)"SHA256", 0);
  params[1] = OSSL_PARAM_construct_end();
  if (!EVP_MAC_init(keyed, (const unsigned char *)SECRET, sizeof SECRET - 1, params))
    bench_die("EVP_MAC_init", NULL);

  for (i = 0; i < warmup; i++) ok += verify(mode, header, (size_t)hlen, T_NOW);
  ok = 0;
  t0 = bench_now_us();
  c0 = bench_cpu_us();
  for (i = 0; i < n; i++)
    ok += verify(mode, header, (size_t)hlen, T_NOW + (i & 7));
  bench_result(bench_now_us() - t0, bench_cpu_us() - c0, n);
  if (ok != n) bench_die("verify", "a valid signature was rejected");

  EVP_MAC_CTX_free(keyed);
  EVP_MAC_free(alg);
  return 0;
}
