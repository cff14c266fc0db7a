/* SPDX-License-Identifier: MIT */
/* Baseline for the sequential rows: what a careful C programmer gets from libcurl alone.
 * One reused easy handle (one kept-alive connection); per request the body is encoded and
 * the response decoded with lua-cjson in an embedded Lua state, as the SDK does too.
 *
 *   baseline_http send|get|list BASE_URL N [--warmup W] [--ca FILE] [--http 1.1|2]
 *                 [--like-sdk 1]
 *
 * --like-sdk 1 adds the options chatmaid.core sets (User-Agent, Accept-Encoding,
 * timeouts, a header callback, ...), to tell their cost apart from the Lua layer's.
 * Prints "RESULT <microseconds per request>" for the N timed requests. */
#include <curl/curl.h>


#include "bench_lua.h"


/* Checks the decoded envelope on top of the stack: {success = true, data = {...}}, so a
 * wrong answer from nginx fails the run instead of timing an error path. */
static void check_envelope(lua_State *L, int list) {
  if (!lua_istable(L, -1)) bench_die("decode", "not a JSON object");
  lua_getfield(L, -1, "success");
  if (!lua_toboolean(L, -1)) bench_die("decode", "success is not true");
  lua_getfield(L, -2, "data");
  if (!lua_istable(L, -1)) bench_die("decode", "no data");
  if (list) {
    lua_getfield(L, -1, "data");
    if (!lua_istable(L, -1) || lua_rawlen(L, -1) != 100)
      bench_die("decode", "not 100 items");
  } else {
    lua_getfield(L, -1, "id");
    if (lua_type(L, -1) != LUA_TSTRING) bench_die("decode", "no data.id");
  }
}

/* Keeps the header block, as the SDK does, so its cost is part of --like-sdk. */
static bench_buf head;

static size_t on_header(char *p, size_t sz, size_t n, void *ud) {
  (void)ud;
  if (sz * n >= 5 && memcmp(p, "HTTP/", 5) == 0) head.len = 0;
  return bench_buf_write(p, sz, n, &head);
}

static void one(lua_State *L, CURL *e, bench_buf *resp, int send, int list, long want) {
  const char *body = NULL;
  size_t blen = 0;
  long status = 0;
  CURLcode rc;
  if (send) {
    body = bench_encode_send(L, &blen);   /* stays on the stack until after perform */
    curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE, (long)blen);
    curl_easy_setopt(e, CURLOPT_POSTFIELDS, body);
  }
  resp->len = 0;
  if ((rc = curl_easy_perform(e)) != CURLE_OK)
    bench_die("perform", curl_easy_strerror(rc));
  curl_easy_getinfo(e, CURLINFO_RESPONSE_CODE, &status);
  if (status != want) bench_die("status", "unexpected HTTP status");
  lua_settop(L, DECODE);
  lua_pushvalue(L, DECODE);
  lua_pushlstring(L, resp->data, resp->len);
  if (lua_pcall(L, 1, 1, 0) != LUA_OK) bench_die("decode", lua_tostring(L, -1));
  check_envelope(L, list);
  lua_settop(L, DECODE);
}

int main(int argc, char **argv) {
  const char *mode, *base, *ca = NULL, *hv = NULL, *path;
  long n, warmup = 100, want, i, connects = 0, c = 0;
  int send, list, like_sdk = 0;
  char url[512];
  bench_buf resp = {NULL, 0, 0};
  struct curl_slist *hdr = NULL;
  lua_State *L;
  CURL *e;
  double t0, c0;
  if (argc < 4) bench_die("usage", "baseline_http send|get|list BASE_URL N [options]");
  mode = argv[1];
  base = argv[2];
  n = bench_atol(argv[3], "N");
  for (i = 4; i + 1 < argc; i += 2) {
    if (strcmp(argv[i], "--warmup") == 0) warmup = bench_atol(argv[i + 1], "--warmup");
    else if (strcmp(argv[i], "--ca") == 0) ca = argv[i + 1];
    else if (strcmp(argv[i], "--http") == 0) hv = argv[i + 1];
    else if (strcmp(argv[i], "--like-sdk") == 0) like_sdk = strcmp(argv[i + 1], "0") != 0;
    else bench_die("unknown option", argv[i]);
  }
  send = strcmp(mode, "send") == 0;
  list = strcmp(mode, "list") == 0;
  if (send) { path = "/v1/messages/send"; want = 201; }
  else if (list) { path = "/v1/messages?limit=100"; want = 200; }
  else if (strcmp(mode, "get") == 0) { path = "/v1/messages/msg_x"; want = 200; }
  else bench_die("unknown mode", mode);
  snprintf(url, sizeof url, "%s%s", base, path);

  L = bench_lua_open();

  curl_global_init(CURL_GLOBAL_DEFAULT);
  if ((e = curl_easy_init()) == NULL) bench_die("curl_easy_init", NULL);
  hdr = curl_slist_append(hdr, "Authorization: Bearer " BENCH_KEY);
  hdr = curl_slist_append(hdr, "Accept: application/json");
  if (send) hdr = curl_slist_append(hdr, "Content-Type: application/json");
  hdr = curl_slist_append(hdr, "Expect:");
  curl_easy_setopt(e, CURLOPT_URL, url);
  curl_easy_setopt(e, CURLOPT_HTTPHEADER, hdr);
  curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
  curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, bench_buf_write);
  curl_easy_setopt(e, CURLOPT_WRITEDATA, &resp);
  if (ca) curl_easy_setopt(e, CURLOPT_CAINFO, ca);
  if (like_sdk) {
    curl_easy_setopt(e, CURLOPT_HEADERFUNCTION, on_header);
    curl_easy_setopt(e, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(e, CURLOPT_ACCEPT_ENCODING, "");
    curl_easy_setopt(e, CURLOPT_TCP_KEEPALIVE, 1L);
    curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT_MS, 10000L);
    curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, 30000L);
    curl_easy_setopt(e, CURLOPT_MAXFILESIZE_LARGE, (curl_off_t)16 * 1024 * 1024);
    curl_easy_setopt(e, CURLOPT_USERAGENT, "lua-chatmaid/0.1.0 libcurl/7.88.1 Lua 5.4");
  }
  if (hv && strcmp(hv, "2") == 0)
    curl_easy_setopt(e, CURLOPT_HTTP_VERSION, (long)CURL_HTTP_VERSION_2TLS);
  else if (hv && strcmp(hv, "1.1") == 0)
    curl_easy_setopt(e, CURLOPT_HTTP_VERSION, (long)CURL_HTTP_VERSION_1_1);
  else if (hv) bench_die("--http must be 1.1 or 2", hv);

  for (i = 0; i < warmup; i++) one(L, e, &resp, send, list, want);
  t0 = bench_now_us();
  c0 = bench_cpu_us();
  for (i = 0; i < n; i++) {
    one(L, e, &resp, send, list, want);
    curl_easy_getinfo(e, CURLINFO_NUM_CONNECTS, &c);
    connects += c;
  }
  bench_result(bench_now_us() - t0, bench_cpu_us() - c0, n);
  /* A reconnect inside the timed loop would measure handshakes, not requests. */
  printf("CONNECTS %ld\n", connects);

  curl_easy_cleanup(e);
  curl_slist_free_all(hdr);
  free(resp.data);
  free(head.data);
  lua_close(L);
  curl_global_cleanup();
  return 0;
}
