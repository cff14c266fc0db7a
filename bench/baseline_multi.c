/* SPDX-License-Identifier: MIT */
/* Baseline for the batch row: raw curl multi with a fixed number of sends in flight, each
 * easy handle reused (its connection stays in the multi's pool). By default every request
 * body is encoded and every response decoded with lua-cjson, as the SDK must do;
 * --no-json measures the transfers alone.
 *
 *   baseline_multi BASE_URL N [--inflight K] [--warmup W] [--no-json]
 *
 * Prints "RESULT <microseconds per request>" (wall time of N requests / N). */
#include <curl/curl.h>


#include "bench_lua.h"

#define MAX_INFLIGHT 256
#define STATIC_BODY \
  "{\"fromPhoneId\":\"507f1f77bcf86cd799439011\",\"to\":\"+15557654321\"," \
  "\"content\":\"Hello from the bench\"}"


typedef struct Slot {
  CURL *e;
  bench_buf resp;
  char req[512];   /* libcurl does not copy POSTFIELDS: the body lives here until done */
} Slot;

static lua_State *L;
static int json = 1;

static void start(CURLM *m, Slot *s) {
  size_t blen = sizeof STATIC_BODY - 1;
  const char *body = STATIC_BODY;
  if (json) {
    body = bench_encode_send(L, &blen);
  }
  if (blen >= sizeof s->req) bench_die("encode", "body too long");
  memcpy(s->req, body, blen);
  lua_settop(L, DECODE);
  curl_easy_setopt(s->e, CURLOPT_POSTFIELDSIZE, (long)blen);
  curl_easy_setopt(s->e, CURLOPT_POSTFIELDS, s->req);
  s->resp.len = 0;
  if (curl_multi_add_handle(m, s->e) != CURLM_OK)
    bench_die("curl_multi_add_handle", NULL);
}

static void finish(Slot *s, CURLcode rc) {
  long status = 0;
  if (rc != CURLE_OK) bench_die("transfer", curl_easy_strerror(rc));
  curl_easy_getinfo(s->e, CURLINFO_RESPONSE_CODE, &status);
  if (status != 201) bench_die("status", "expected 201");
  if (!json) return;
  lua_pushvalue(L, DECODE);
  lua_pushlstring(L, s->resp.data, s->resp.len);
  if (lua_pcall(L, 1, 1, 0) != LUA_OK) bench_die("decode", lua_tostring(L, -1));
  lua_getfield(L, -1, "data");
  if (!lua_istable(L, -1)) bench_die("decode", "no data");
  lua_getfield(L, -1, "id");
  if (lua_type(L, -1) != LUA_TSTRING) bench_die("decode", "no data.id");
  lua_settop(L, DECODE);
}

/* Runs total sends keeping up to k in flight; returns when all have completed. */
static void run(CURLM *m, Slot *slots, long k, long total) {
  long started = 0, done = 0, i;
  int running;
  for (i = 0; i < k && started < total; i++, started++) start(m, &slots[i]);
  while (done < total) {
    CURLMsg *msg;
    int left;
    curl_multi_perform(m, &running);
    while ((msg = curl_multi_info_read(m, &left)) != NULL) {
      Slot *s = NULL;
      if (msg->msg != CURLMSG_DONE) continue;
      curl_easy_getinfo(msg->easy_handle, CURLINFO_PRIVATE, (char **)&s);
      curl_multi_remove_handle(m, s->e);
      finish(s, msg->data.result);
      done++;
      if (started < total) { start(m, s); started++; }
    }
    if (done < total) curl_multi_poll(m, NULL, 0, 1000, NULL);
  }
}

int main(int argc, char **argv) {
  const char *base;
  long n, k = 16, warmup = 200, i;
  char url[512];
  struct curl_slist *hdr = NULL;
  Slot *slots;
  CURLM *m;
  double t0, c0;
  if (argc < 3) bench_die("usage", "baseline_multi BASE_URL N [options]");
  base = argv[1];
  n = bench_atol(argv[2], "N");
  for (i = 3; i < argc; i++) {
    if (strcmp(argv[i], "--no-json") == 0) json = 0;
    else if (i + 1 < argc && strcmp(argv[i], "--inflight") == 0)
      k = bench_atol(argv[++i], "--inflight");
    else if (i + 1 < argc && strcmp(argv[i], "--warmup") == 0)
      warmup = bench_atol(argv[++i], "--warmup");
    else bench_die("unknown option", argv[i]);
  }
  if (k < 1 || k > MAX_INFLIGHT) bench_die("--inflight", "must be 1..256");
  snprintf(url, sizeof url, "%s/v1/messages/send", base);

  L = bench_lua_open();

  curl_global_init(CURL_GLOBAL_DEFAULT);
  if ((m = curl_multi_init()) == NULL) bench_die("curl_multi_init", NULL);
  if ((slots = calloc((size_t)k, sizeof *slots)) == NULL) bench_die("calloc", NULL);
  hdr = curl_slist_append(hdr, "Authorization: Bearer " BENCH_KEY);
  hdr = curl_slist_append(hdr, "Accept: application/json");
  hdr = curl_slist_append(hdr, "Content-Type: application/json");
  hdr = curl_slist_append(hdr, "Expect:");
  for (i = 0; i < k; i++) {
    CURL *e = slots[i].e = curl_easy_init();
    if (e == NULL) bench_die("curl_easy_init", NULL);
    curl_easy_setopt(e, CURLOPT_URL, url);
    curl_easy_setopt(e, CURLOPT_HTTPHEADER, hdr);
    curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, bench_buf_write);
    curl_easy_setopt(e, CURLOPT_WRITEDATA, &slots[i].resp);
    curl_easy_setopt(e, CURLOPT_PRIVATE, (char *)&slots[i]);
  }

  run(m, slots, k, warmup);   /* opens the k connections outside the timed part */
  t0 = bench_now_us();
  c0 = bench_cpu_us();
  run(m, slots, k, n);
  bench_result(bench_now_us() - t0, bench_cpu_us() - c0, n);

  for (i = 0; i < k; i++) {
    curl_easy_cleanup(slots[i].e);
    free(slots[i].resp.data);
  }
  free(slots);
  curl_multi_cleanup(m);
  curl_slist_free_all(hdr);
  lua_close(L);
  curl_global_cleanup();
  return 0;
}
