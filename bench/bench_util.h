/* SPDX-License-Identifier: MIT */
/* Shared by the C baselines: clocks, a growable response buffer, and the RESULT and CPU
 * lines that bench/driver.lua parses. Header-only so each baseline is one file. */
#ifndef BENCH_UTIL_H
#define BENCH_UTIL_H
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define BENCH_KEY "sk_test_bench_000000000000000"

/* Wall time, not CPU time: most of a request is spent waiting for nginx. */
static inline double bench_now_us(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec * 1e6 + (double)ts.tv_nsec / 1e3;
}

/* CPU time of this process (user + system): what the client itself spends, without the
 * time it waits for nginx or for the CPU that other processes hold. */
static inline double bench_cpu_us(void) {
  struct timespec ts;
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
  return (double)ts.tv_sec * 1e6 + (double)ts.tv_nsec / 1e3;
}

static inline void bench_die(const char *what, const char *detail) {
  fprintf(stderr, "FAIL %s: %s\n", what, detail ? detail : "");
  exit(1);
}

typedef struct bench_buf {
  char *data;
  size_t len, cap;
} bench_buf;

/* A libcurl write callback: grows the buffer, returns 0 (abort) when out of memory. */
static inline size_t bench_buf_write(char *p, size_t sz, size_t n, void *ud) {
  bench_buf *b = ud;
  size_t add = sz * n;
  if (b->len + add > b->cap) {
    size_t cap = b->cap ? b->cap : 4096;
    char *d;
    while (cap < b->len + add) cap *= 2;
    if ((d = realloc(b->data, cap)) == NULL) return 0;
    b->data = d;
    b->cap = cap;
  }
  memcpy(b->data + b->len, p, add);
  b->len += add;
  return add;
}

static inline long bench_atol(const char *s, const char *what) {
  char *end;
  long v = strtol(s, &end, 10);
  if (*s == '\0' || *end != '\0' || v < 0) bench_die("bad number for", what);
  return v;
}

static inline void bench_result(double wall_us, double cpu_us, long n) {
  printf("RESULT %.3f\nCPU %.3f\n", n > 0 ? wall_us / (double)n : 0.0,
         n > 0 ? cpu_us / (double)n : 0.0);
}
#endif
