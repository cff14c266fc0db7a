/* SPDX-License-Identifier: MIT */
/* "chatmaid.session": one reused libcurl easy handle (kept-alive connections) for sequential
 * requests, and a lazily created multi handle with a pool of easy handles for batches. */
#include <stdlib.h>
#include <string.h>
#include <sys/select.h>
#include <sys/types.h>
#include <sys/socket.h>
#include <netdb.h>
#include <netinet/in.h>
#include <arpa/inet.h>
#include <unistd.h>

#include "lua.h"
#include "lauxlib.h"
#include "compat.h"

#include <curl/curl.h>

#include "buf.h"
#include "session.h"

#define SESSION_MT "chatmaid.session"
#define DEFAULT_MAX_BODY (16u * 1024u * 1024u)
#define MAX_HEADER_BYTES (256u * 1024u)
#define MAX_REQ_HEADERS 64
#define HEADER_CACHE 4          /* distinct header lists kept per session (a client has 2) */

#ifdef CURL_WRITEFUNC_ERROR
#define CM_WRITE_FAIL CURL_WRITEFUNC_ERROR
#else
#define CM_WRITE_FAIL 0
#endif

/* One transfer: its easy handle and everything libcurl writes into. Callbacks see only this. */
typedef struct Xfer {
  CURL *easy;
  cm_buf body, head;
  struct curl_slist *headers;
  int own_headers;        /* headers was built for this transfer (else: the session's cache) */
  lua_Integer token;
  CURLcode code;
  int head_done;          /* the last header block ended (its empty line arrived) */
  int sends;              /* times libcurl was about to send this request in this transfer */
  int replay_refused;     /* libcurl wanted to re-send it: refused, the transfer failed */
  char host[64];          /* the last URL host seen, and whether it is loopback (a cache: */
  size_t host_len;        /* a client talks to one host, so the check runs once) */
  int host_loopback;
  char errbuf[CURL_ERROR_SIZE];
  struct Xfer *next;
} Xfer;

/* A request header list as libcurl wants it, kept for the session's life: clients send the
 * same few lists on every request, and building one is 2 allocations per header. */
typedef struct HeaderList {
  struct curl_slist *list;
  int n;                  /* headers from Lua (the list may start with an extra "Expect:") */
  int expect;
} HeaderList;

typedef struct Session {
  Xfer *main;             /* the sequential transfer; NULL once closed */
  CURLM *multi;           /* created on the first batch transfer */
  Xfer *running;          /* transfers added to the multi */
  Xfer *done;             /* finished, waiting to be returned to Lua */
  Xfer *spare;            /* finished and returned: easy handles kept for reuse */
  long timeout_ms, connect_timeout_ms;
  long http_version;
  size_t max_body;
  char *user_agent, *ca_file, *proxy;
  int proxy_set;
  int raw_headers;        /* return the header block as a string (parsed lazily in Lua) */
  int ca_file_only;       /* trust one CA file, no CA directory (see xfer_setup) */
  HeaderList hcache[HEADER_CACHE];
  lua_Integer connects, requests;
  pid_t pid;              /* the process that made the handles (see session_refork) */
} Session;

/* ---- transfers (no Lua API below until the Lua-callable section) ---- */

static size_t on_body(char *p, size_t sz, size_t n, void *ud) {
  Xfer *x = ud;   /* no lua_State here, by design */
  return cm_buf_append(&x->body, p, sz * n) ? sz * n : CM_WRITE_FAIL;
}

static size_t on_header(char *p, size_t sz, size_t n, void *ud) {
  Xfer *x = ud;
  size_t len = sz * n;
  /* A new status line (after 1xx or a proxy CONNECT) starts a new header block. */
  if (len >= 5 && memcmp(p, "HTTP/", 5) == 0) {
    cm_buf_reset(&x->head);
    x->head_done = 0;
  } else if ((len == 2 && p[0] == '\r' && p[1] == '\n') || (len == 1 && p[0] == '\n')) {
    x->head_done = 1;
  }
  return cm_buf_append(&x->head, p, len) ? len : CM_WRITE_FAIL;
}

/* Called by libcurl each time it is about to send the request, on a new or a reused
 * connection. libcurl re-sends a request by itself (POSTs included) when a reused
 * connection dies before the first response byte; the server may well have received and
 * processed the first copy. That second send is refused: the transfer fails, and the
 * client's own retry policy (which counts attempts, runs the hooks and honours
 * max_retries and idempotency) decides whether to send it again. */
static int on_prereq(void *ud, char *primary_ip, char *local_ip, int primary_port,
                     int local_port) {
  Xfer *x = ud;
  (void)primary_ip;
  (void)local_ip;
  (void)primary_port;
  (void)local_port;
  if (x->sends++ == 0) return CURL_PREREQFUNC_OK;
  x->replay_refused = 1;
  return CURL_PREREQFUNC_ABORT;
}

static void xfer_free(Xfer *x) {
  if (x == NULL) return;
  if (x->easy) curl_easy_cleanup(x->easy);
  if (x->own_headers) curl_slist_free_all(x->headers);
  cm_buf_free(&x->body);
  cm_buf_free(&x->head);
  free(x);
}

static void xfer_list_free(Xfer *x, CURLM *multi) {
  while (x) {
    Xfer *next = x->next;
    if (multi && x->easy) curl_multi_remove_handle(multi, x->easy);
    xfer_free(x);
    x = next;
  }
}

static Xfer *xfer_new(Session *s) {
  Xfer *x = calloc(1, sizeof *x);
  if (x == NULL) return NULL;
  if ((x->easy = curl_easy_init()) == NULL) { free(x); return NULL; }
  cm_buf_init(&x->body, s->max_body);
  cm_buf_init(&x->head, MAX_HEADER_BYTES);
  return x;
}

/* Options that never change for a session's transfers. Strings are copied by libcurl. */
static CURLcode xfer_setup(Session *s, Xfer *x) {
  CURL *e = x->easy;
  CURLcode rc = CURLE_OK;
#define SET(opt, val) (rc = (rc != CURLE_OK ? rc : curl_easy_setopt(e, opt, val)))
  SET(CURLOPT_NOSIGNAL, 1L);
  SET(CURLOPT_WRITEFUNCTION, on_body);
  SET(CURLOPT_WRITEDATA, x);
  SET(CURLOPT_HEADERFUNCTION, on_header);
  SET(CURLOPT_HEADERDATA, x);
  SET(CURLOPT_PREREQFUNCTION, on_prereq);
  SET(CURLOPT_PREREQDATA, x);
  SET(CURLOPT_ERRORBUFFER, x->errbuf);
  SET(CURLOPT_PROTOCOLS_STR, "http,https");
  SET(CURLOPT_FOLLOWLOCATION, 0L);
  SET(CURLOPT_SSL_VERIFYPEER, 1L);
  SET(CURLOPT_SSL_VERIFYHOST, 2L);
  /* gzip only: libcurl formats the offered list into every request, and offering all it
   * supports ("deflate, gzip, br, zstd") cost twice as much per transfer as "gzip" (+9k vs
   * +4.6k instructions, bench/batch-cost.md); JSON answers gain nothing from the others.
   * Without an offer, a server may still compress (RFC 9110) and libcurl would not decode. */
  SET(CURLOPT_ACCEPT_ENCODING, "gzip");
  SET(CURLOPT_TCP_KEEPALIVE, 1L);
  SET(CURLOPT_CONNECTTIMEOUT_MS, s->connect_timeout_ms);
  SET(CURLOPT_HTTP_VERSION, s->http_version);
  SET(CURLOPT_MAXFILESIZE_LARGE, (curl_off_t)s->max_body);
  if (s->user_agent) SET(CURLOPT_USERAGENT, s->user_agent);
  if (s->ca_file) SET(CURLOPT_CAINFO, s->ca_file);
  /* Trust anchors from one CA file (ca_file, else libcurl's bundle), never also a directory:
   * libcurl keeps a CA file's parsed store in the multi handle (CURLOPT_CA_CACHE_TIMEOUT) but
   * parses everything again for every new TLS connection when a CA directory is set too, as
   * Debian's libcurl does by default (/etc/ssl/certs): 35-40 ms of CPU per connection, in the
   * middle of a task's step, against 1.5-2 ms with the cache. */
  if (s->ca_file_only) SET(CURLOPT_CAPATH, NULL);
  if (s->proxy_set) SET(CURLOPT_PROXY, s->proxy ? s->proxy : "");
#undef SET
  return rc;
}

/* Whether libcurl's built-in CA bundle is a readable file, so that it alone can be the
 * trust store (xfer_setup). */
static int default_cainfo_readable(void) {
#if LIBCURL_VERSION_NUM >= 0x074600
  const curl_version_info_data *v = curl_version_info(CURLVERSION_NOW);
  return v->age >= CURLVERSION_NINTH && v->cainfo != NULL && access(v->cainfo, R_OK) == 0;
#else
  return 0;
#endif
}

/* 1 when host (n bytes, as written in a URL: brackets around IPv6) is the loopback
 * interface as libcurl would resolve it: localhost and *.localhost (libcurl answers those
 * itself), 127.0.0.0/8 in any form inet_aton accepts (127.1, 0x7f000001, ...), ::1 and
 * ::ffff:127.x.y.z. No name is looked up. */
static int is_loopback_host(const char *host, size_t n) {
  char h[256];
  size_t i;
  struct addrinfo hints, *ai = NULL;
  int loop = 0;
  if (n == 0 || n >= sizeof h) return 0;
  for (i = 0; i < n; i++) {
    char c = host[i];
    h[i] = (char)(c >= 'A' && c <= 'Z' ? c + 32 : c);
  }
  h[n] = '\0';
  if (n > 1 && h[n - 1] == '.') h[--n] = '\0';
  if (strcmp(h, "localhost") == 0 || (n > 10 && strcmp(h + n - 10, ".localhost") == 0))
    return 1;
  memset(&hints, 0, sizeof hints);
  hints.ai_flags = AI_NUMERICHOST;
  if (h[0] == '[') {
    char *end = strchr(h, ']'), *zone;
    if (end == NULL) return 0;
    *end = '\0';
    if ((zone = strchr(h, '%')) != NULL) *zone = '\0';
    hints.ai_family = AF_INET6;
    if (getaddrinfo(h + 1, NULL, &hints, &ai) != 0) return 0;
    if (ai && ai->ai_family == AF_INET6) {
      const struct in6_addr *a = &((const struct sockaddr_in6 *)ai->ai_addr)->sin6_addr;
      loop = IN6_IS_ADDR_LOOPBACK(a) || (IN6_IS_ADDR_V4MAPPED(a) && a->s6_addr[12] == 127);
    }
  } else {
    if (strspn(h, "0123456789abcdefx.") != n) return 0;   /* not a number: a name */
    hints.ai_family = AF_INET;
    if (getaddrinfo(h, NULL, &hints, &ai) != 0) return 0;
    if (ai && ai->ai_family == AF_INET) {
      const struct sockaddr_in *a = (const struct sockaddr_in *)ai->ai_addr;
      loop = (ntohl(a->sin_addr.s_addr) >> 24) == 127;
    }
  }
  if (ai) freeaddrinfo(ai);
  return loop;
}

/* 1 when the URL's host is loopback. scheme://[userinfo@]host[:port][/?#...] */
static int is_loopback_url(Xfer *x, const char *url) {
  const char *a = strstr(url, "://"), *end, *at, *h, *he;
  size_t n;
  int loop;
  a = a ? a + 3 : url;
  end = a + strcspn(a, "/?#");
  h = a;
  for (at = a; at < end; at++)
    if (*at == '@') h = at + 1;
  if (h < end && *h == '[') {
    he = memchr(h, ']', (size_t)(end - h));
    if (he == NULL) return 0;
    he++;
  } else {
    he = memchr(h, ':', (size_t)(end - h));
    if (he == NULL) he = end;
  }
  n = (size_t)(he - h);
  if (n == x->host_len && n > 0 && memcmp(h, x->host, n) == 0) return x->host_loopback;
  loop = is_loopback_host(h, n);
  if (n <= sizeof x->host) {
    memcpy(x->host, h, n);
    x->host_len = n;
    x->host_loopback = loop;
  }
  return loop;
}

/* Per-request options. body may be NULL; copy_body for transfers that outlive the call.
 * fresh: use a new connection (a request that must not even be sent on a connection that
 * may die before answering: see on_prereq for replays).
 * A loopback URL never goes through a proxy, whatever the proxy option or the *_proxy
 * environment variables say: plain http is allowed only to loopback, and a proxy would
 * receive the API key in clear text. */
static CURLcode xfer_prepare(Xfer *x, const char *method, const char *url,
                             const char *body, size_t blen, int copy_body, long timeout_ms,
                             int fresh) {
  CURL *e = x->easy;
  CURLcode rc = CURLE_OK;
  cm_buf_reset(&x->body);
  cm_buf_reset(&x->head);
  x->errbuf[0] = '\0';
  x->code = CURLE_OK;
  x->head_done = x->sends = x->replay_refused = 0;
#define SET(opt, val) (rc = (rc != CURLE_OK ? rc : curl_easy_setopt(e, opt, val)))
  SET(CURLOPT_URL, url);
  SET(CURLOPT_NOPROXY, is_loopback_url(x, url) ? "*" : (char *)NULL);
  SET(CURLOPT_HTTPHEADER, x->headers);
  SET(CURLOPT_TIMEOUT_MS, timeout_ms);
  SET(CURLOPT_FRESH_CONNECT, fresh ? 1L : 0L);
  SET(CURLOPT_CUSTOMREQUEST, (char *)NULL);
  if (body != NULL) {
    SET(CURLOPT_POST, 1L);
    SET(CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)blen);
    if (copy_body) SET(CURLOPT_COPYPOSTFIELDS, body);
    else SET(CURLOPT_POSTFIELDS, body);
    if (strcmp(method, "POST") != 0) SET(CURLOPT_CUSTOMREQUEST, method);
  } else if (strcmp(method, "GET") == 0) {
    SET(CURLOPT_HTTPGET, 1L);
  } else if (strcmp(method, "HEAD") == 0) {
    SET(CURLOPT_NOBODY, 1L);
  } else {
    SET(CURLOPT_HTTPGET, 1L);
    SET(CURLOPT_CUSTOMREQUEST, method);
  }
#undef SET
  return rc;
}

static void xfer_unprepare(Xfer *x) {
  /* POSTFIELDS pointed into a Lua string that is only alive for the call. */
  curl_easy_setopt(x->easy, CURLOPT_POSTFIELDS, (char *)NULL);
  curl_easy_setopt(x->easy, CURLOPT_HTTPHEADER, (struct curl_slist *)NULL);
  curl_easy_setopt(x->easy, CURLOPT_NOBODY, 0L);
  if (x->own_headers) curl_slist_free_all(x->headers);
  x->headers = NULL;
  x->own_headers = 0;
}

/* libcurl (before 8.6) reports a response header line longer than its CURL_MAX_HTTP_HEADER
 * limit as CURLE_OUT_OF_MEMORY; that failure after the request went out and before the
 * header block ended is taken as that. */
static int header_line_too_long(const Xfer *x) {
  long sent = 0;
#if LIBCURL_VERSION_NUM >= 0x080600
  if (x->code == CURLE_TOO_LARGE) return !x->head_done;
#endif
  if (x->code != CURLE_OUT_OF_MEMORY || x->head_done) return 0;
  return curl_easy_getinfo(x->easy, CURLINFO_REQUEST_SIZE, &sent) == CURLE_OK && sent > 0;
}

static const char *kind_of(const Xfer *x) {
  if (header_line_too_long(x)) return "too_large";
  switch (x->code) {
    case CURLE_OPERATION_TIMEDOUT: return "timeout";
    case CURLE_COULDNT_RESOLVE_HOST: case CURLE_COULDNT_RESOLVE_PROXY: return "resolve";
    case CURLE_COULDNT_CONNECT: return "connect";
    case CURLE_FILESIZE_EXCEEDED: return "too_large";
    case CURLE_OUT_OF_MEMORY: return "nomem";
    case CURLE_SSL_CONNECT_ERROR: case CURLE_PEER_FAILED_VERIFICATION:
    case CURLE_SSL_CERTPROBLEM: case CURLE_SSL_CIPHER: case CURLE_SSL_CACERT_BADFILE:
    case CURLE_SSL_ENGINE_NOTFOUND: case CURLE_SSL_ISSUER_ERROR:
    case CURLE_SSL_PINNEDPUBKEYNOTMATCH: case CURLE_SSL_INVALIDCERTSTATUS:
    case CURLE_SSL_CRL_BADFILE: case CURLE_SSL_SHUTDOWN_FAILED:
      return "tls";
    case CURLE_WRITE_ERROR:
      if (x->body.over || x->head.over) return "too_large";
      if (x->body.nomem || x->head.nomem) return "nomem";
      return "transport";
    default: return "transport";
  }
}

/* ---- Lua-callable ---- */

static Session *check_session(lua_State *L) {
  return (Session *)luaL_checkudata(L, 1, SESSION_MT);
}

static Session *check_open(lua_State *L) {
  Session *s = check_session(L);
  if (s->main == NULL) luaL_error(L, "attempt to use a closed session");
  return s;
}

/* Pushes nil, kind, message, curlcode. The message explains; curl's own text follows. */
static int push_failure(lua_State *L, const Xfer *x, Session *s) {
  const char *kind = kind_of(x);
  const char *detail = x->errbuf[0] ? x->errbuf : curl_easy_strerror(x->code);
  cm_pushfail(L);
  lua_pushstring(L, kind);
  if (header_line_too_long(x))
    lua_pushfstring(L, "a response header line is longer than libcurl's %d byte limit",
                    (int)CURL_MAX_HTTP_HEADER);
  else if (x->code == CURLE_WRITE_ERROR && x->head.over)
    lua_pushfstring(L, "the response headers are larger than the %d byte limit",
                    (int)MAX_HEADER_BYTES);
  else if (strcmp(kind, "too_large") == 0)
    lua_pushfstring(L, "response body is larger than the %d byte limit (max_body)",
                    (int)s->max_body);
  else if (x->replay_refused)
    lua_pushliteral(L, "the reused connection closed before the response arrived; the "
                       "request was not sent again (the server may have received it)");
  else
    lua_pushstring(L, detail);
  lua_pushinteger(L, (lua_Integer)x->code);
  return 4;
}

/* Header block -> table of lowercase name -> value (the last of repeated headers wins). */
static void push_headers(lua_State *L, const cm_buf *h) {
  const char *p = h->data, *end = h->data + h->len;
  lua_newtable(L);
  while (p < end) {
    const char *eol = memchr(p, '\n', (size_t)(end - p)), *colon, *v, *ve;
    const char *le = eol ? eol : end;
    char name[128];
    size_t i, nlen;
    colon = memchr(p, ':', (size_t)(le - p));
    if (colon) {   /* status lines have no colon */
      nlen = (size_t)(colon - p);
      if (nlen > 0 && nlen < sizeof name) {
        for (i = 0; i < nlen; i++) {
          char c = p[i];
          name[i] = (char)(c >= 'A' && c <= 'Z' ? c + 32 : c);
        }
        v = colon + 1;
        ve = le;
        while (v < ve && (*v == ' ' || *v == '\t')) v++;
        while (ve > v && (ve[-1] == '\r' || ve[-1] == ' ' || ve[-1] == '\t')) ve--;
        lua_pushlstring(L, name, nlen);
        lua_pushlstring(L, v, (size_t)(ve - v));
        lua_rawset(L, -3);
      }
    }
    p = le + 1;
  }
}

static int push_response(lua_State *L, Session *s, Xfer *x) {
  long status = 0;
  lua_Integer nc = 0;
  long n = 0;
  curl_easy_getinfo(x->easy, CURLINFO_RESPONSE_CODE, &status);
  if (curl_easy_getinfo(x->easy, CURLINFO_NUM_CONNECTS, &n) == CURLE_OK) nc = n;
  s->connects += nc;
  if (x->code != CURLE_OK) return push_failure(L, x, s);
  lua_pushinteger(L, (lua_Integer)status);
  lua_pushlstring(L, x->body.data ? x->body.data : "", x->body.len);
  if (s->raw_headers) lua_pushlstring(L, x->head.data ? x->head.data : "", x->head.len);
  else push_headers(L, &x->head);
  return 3;
}

/* Reads opts.<name> as a string (or nil); raises naming the option on a wrong type. */
static const char *opt_string(lua_State *L, int idx, const char *name) {
  const char *v = NULL;
  lua_getfield(L, idx, name);
  if (!lua_isnil(L, -1)) {
    if (lua_type(L, -1) != LUA_TSTRING)
      luaL_error(L, "chatmaid.core.session: option '%s' must be a string", name);
    v = lua_tostring(L, -1);
  }
  lua_pop(L, 1);   /* the string stays alive: it is referenced by the opts table */
  return v;
}

static long opt_int(lua_State *L, int idx, const char *name, long def, long max) {
  long v = def;
  lua_getfield(L, idx, name);
  if (!lua_isnil(L, -1)) {
    lua_Integer i;
    if (lua_type(L, -1) != LUA_TNUMBER)
      luaL_error(L, "chatmaid.core.session: option '%s' must be a number", name);
    i = lua_tointeger(L, -1);
    if (i <= 0 || i > max)
      luaL_error(L, "chatmaid.core.session: option '%s' must be 1..%d", name, (int)max);
    v = (long)i;
  }
  lua_pop(L, 1);
  return v;
}

static char *dup_or_null(const char *s) {
  char *d;
  if (s == NULL) return NULL;
  if ((d = malloc(strlen(s) + 1)) != NULL) strcpy(d, s);
  return d;
}

/* ---- fork ----
 * A forked child inherits the session's easy and multi handles, and with them the parent's
 * connections (the same sockets, and for TLS the same session state). Using them would mix
 * the two processes' requests and responses on one connection; cleaning them up would close
 * the parent's connections from under it (curl_easy_cleanup sends a TLS close_notify). So a
 * session used in a process other than the one that made its handles abandons them, untouched:
 * its own buffers are freed, the libcurl handles (and the descriptors they hold) are kept
 * reachable in the list below until the process ends. That is the unavoidable part: the
 * child cannot free them without talking on the parent's connections. */
typedef struct Orphans {
  CURLM *multi;
  Xfer *xfers;
  struct Orphans *next;
} Orphans;

static Orphans *orphans;     /* pushed with a CAS: sessions on several threads may abandon */

static void orphan_xfers(Orphans *o, Xfer *x) {
  while (x) {
    Xfer *next = x->next;
    if (x->own_headers) curl_slist_free_all(x->headers);   /* read by libcurl only while */
    x->headers = NULL;                                     /* a transfer runs */
    cm_buf_free(&x->body);
    cm_buf_free(&x->head);
    if (o) {
      x->next = o->xfers;
      o->xfers = x;
    }                                  /* else: out of memory, left unreachable */
    x = next;
  }
}

static void session_abandon(Session *s) {
  Orphans *o;
  if (!s->main && !s->multi && !s->running && !s->done && !s->spare) return;
  o = calloc(1, sizeof *o);
  if (o) o->multi = s->multi;
  orphan_xfers(o, s->main);
  orphan_xfers(o, s->running);
  orphan_xfers(o, s->done);
  orphan_xfers(o, s->spare);
  s->main = s->running = s->done = s->spare = NULL;
  s->multi = NULL;
  if (o) {
    o->next = __atomic_load_n(&orphans, __ATOMIC_RELAXED);
    while (!__atomic_compare_exchange_n(&orphans, &o->next, o, 0, __ATOMIC_RELEASE,
                                        __ATOMIC_RELAXED)) {
    }
  }
}

static void session_release(Session *s) {
  int i;
  if (s->pid != getpid()) session_abandon(s);   /* a fork: the handles are the parent's */
  xfer_list_free(s->running, s->multi);
  xfer_list_free(s->done, NULL);
  xfer_list_free(s->spare, NULL);
  s->running = s->done = s->spare = NULL;
  if (s->multi) curl_multi_cleanup(s->multi);
  s->multi = NULL;
  xfer_free(s->main);
  s->main = NULL;
  for (i = 0; i < HEADER_CACHE; i++) {    /* after every transfer that could use them */
    curl_slist_free_all(s->hcache[i].list);
    s->hcache[i].list = NULL;
  }
  free(s->user_agent);
  free(s->ca_file);
  free(s->proxy);
  s->user_agent = s->ca_file = s->proxy = NULL;
}

/* core.session(opts) -> session. Created closed first so __gc always sees a sane object. */
static int session_new(lua_State *L) {
  Session *s;
  const char *ua, *ca, *proxy, *hv;
  long timeout, ctimeout, max_body;
  int proxy_set, raw_headers;
  if (lua_isnoneornil(L, 1)) lua_newtable(L);
  luaL_checktype(L, 1, LUA_TTABLE);
  lua_settop(L, 1);
  ua = opt_string(L, 1, "user_agent");
  ca = opt_string(L, 1, "ca_file");
  hv = opt_string(L, 1, "http_version");
  if (hv && strcmp(hv, "1.1") != 0 && strcmp(hv, "2") != 0)
    return luaL_error(L, "chatmaid.core.session: option 'http_version' must be \"1.1\" or \"2\"");
  lua_getfield(L, 1, "proxy");
  proxy_set = !lua_isnil(L, -1);
  if (proxy_set && lua_type(L, -1) != LUA_TSTRING && lua_type(L, -1) != LUA_TBOOLEAN)
    return luaL_error(L, "chatmaid.core.session: option 'proxy' must be a string or false");
  proxy = lua_type(L, -1) == LUA_TSTRING ? lua_tostring(L, -1) : NULL;
  lua_pop(L, 1);
  timeout = opt_int(L, 1, "timeout_ms", 30000, 86400000);
  ctimeout = opt_int(L, 1, "connect_timeout_ms", 10000, 86400000);
  max_body = opt_int(L, 1, "max_body", (long)DEFAULT_MAX_BODY, 1024L * 1024 * 1024);
  lua_getfield(L, 1, "raw_headers");
  raw_headers = lua_toboolean(L, -1);
  lua_pop(L, 1);

  s = (Session *)cm_newuserdatauv(L, sizeof *s, 0);
  memset(s, 0, sizeof *s);                       /* closed state: __gc-safe */
  cm_setmetatable(L, SESSION_MT);
  s->timeout_ms = timeout;
  s->connect_timeout_ms = ctimeout;
  s->max_body = (size_t)max_body;
  s->http_version = (hv && strcmp(hv, "1.1") == 0) ? CURL_HTTP_VERSION_1_1
                                                    : CURL_HTTP_VERSION_2TLS;
  s->proxy_set = proxy_set;
  s->raw_headers = raw_headers;
  s->ca_file_only = ca != NULL || default_cainfo_readable();
  s->pid = getpid();
  if ((ua && !(s->user_agent = dup_or_null(ua))) || (ca && !(s->ca_file = dup_or_null(ca)))
      || (proxy && !(s->proxy = dup_or_null(proxy))) || (s->main = xfer_new(s)) == NULL) {
    session_release(s);
    return luaL_error(L, "chatmaid.core.session: out of memory");
  }
  if (xfer_setup(s, s->main) != CURLE_OK) {
    session_release(s);
    return luaL_error(L, "chatmaid.core.session: this libcurl lacks a required option "
                         "(libcurl 7.85 or newer is needed)");
  }
  return 1;
}

/* In a process other than the one that made the handles (a fork), abandons them and starts a
 * fresh easy handle (the multi is made again when needed). Returns 0 when out of memory; the
 * session is then unchanged and the next call tries again. */
static int session_refork(Session *s) {
  Xfer *x;
  pid_t pid = getpid();
  if (s->pid == pid) return 1;
  if ((x = xfer_new(s)) == NULL) return 0;
  if (xfer_setup(s, x) != CURLE_OK) {
    xfer_free(x);
    return 0;
  }
  session_abandon(s);
  s->main = x;
  s->pid = pid;
  return 1;
}

/* Checks request arguments at base..base+4 (method, url, headers, body, timeout_ms). */
static void check_request_args(lua_State *L, int base) {
  int i, n;
  luaL_checkstring(L, base);
  luaL_checkstring(L, base + 1);
  luaL_checktype(L, base + 2, LUA_TTABLE);
  if (!lua_isnoneornil(L, base + 3) && lua_type(L, base + 3) != LUA_TSTRING)
    luaL_argerror(L, base + 3, "body must be a string or nil");
  if (!lua_isnoneornil(L, base + 4)) {
    lua_Integer t = luaL_checkinteger(L, base + 4);
    luaL_argcheck(L, t > 0 && t <= 86400000, base + 4, "timeout must be 1..86400000 ms");
  }
  n = (int)cm_rawlen(L, base + 2);
  luaL_argcheck(L, n <= MAX_REQ_HEADERS, base + 2, "too many headers");
  for (i = 1; i <= n; i++) {
    lua_rawgeti(L, base + 2, i);
    size_t len;
    if (lua_type(L, -1) != LUA_TSTRING) luaL_argerror(L, base + 2, "headers must be strings");
    /* libcurl would cut the line at the NUL and send the rest of the request as if fine */
    if (strlen(lua_tolstring(L, -1, &len)) != len)
      luaL_argerror(L, base + 2, "a header must not contain a NUL byte");
    lua_pop(L, 1);
  }
}

/* 1 when the cached list holds exactly the n strings of the array at idx. */
static int header_list_equal(lua_State *L, int idx, const HeaderList *h, int n, int expect) {
  const struct curl_slist *l = h->list;
  int i;
  if (h->list == NULL || h->n != n || h->expect != expect) return 0;
  if (expect) l = l->next;
  for (i = 1; i <= n; i++, l = l->next) {
    size_t len;
    const char *v;
    lua_rawgeti(L, idx, i);
    v = lua_tolstring(L, -1, &len);
    lua_pop(L, 1);   /* the string stays alive: the array holds it */
    /* by length first: a string with a NUL inside must not match (nor be read past) */
    if (strlen(l->data) != len || memcmp(l->data, v, len) != 0) return 0;
  }
  return 1;
}

/* The header list from an already checked array of strings: the session's cached copy when
 * there is one, else built (and cached while there is room). Raises nothing: the strings are
 * strings (no conversion), and the stack has room (checked before). */
static int build_headers(lua_State *L, int idx, Session *s, Xfer *x, size_t body_len) {
  int i, n = (int)cm_rawlen(L, idx);
  struct curl_slist *l = NULL, *t;
  /* libcurl 7.88 asks for 100-continue (an extra round trip) for bodies of 1 MiB and more;
   * an empty Expect: turns that off. Smaller bodies go without it: every custom header is
   * scanned by libcurl on every request. */
  int expect = body_len >= 1024 * 1024;
  HeaderList *free_slot = NULL;
  for (i = 0; i < HEADER_CACHE; i++) {
    HeaderList *h = &s->hcache[i];
    if (h->list == NULL) {
      if (free_slot == NULL) free_slot = h;
    } else if (header_list_equal(L, idx, h, n, expect)) {
      x->headers = h->list;
      x->own_headers = 0;
      return 1;
    }
  }
  if (expect && (l = curl_slist_append(NULL, "Expect:")) == NULL) return 0;
  for (i = 1; i <= n; i++) {
    lua_rawgeti(L, idx, i);
    t = curl_slist_append(l, lua_tostring(L, -1));
    lua_pop(L, 1);
    if (t == NULL) { curl_slist_free_all(l); return 0; }
    l = t;
  }
  x->headers = l;
  x->own_headers = 1;
  if (free_slot != NULL && l != NULL) {   /* cached lists live until the session closes */
    free_slot->list = l;
    free_slot->n = n;
    free_slot->expect = expect;
    x->own_headers = 0;
  }
  return 1;
}

static long request_timeout(lua_State *L, int idx, Session *s) {
  return lua_isnoneornil(L, idx) ? s->timeout_ms : (long)lua_tointeger(L, idx);
}

/* session:request(method, url, headers, body?, timeout_ms?, fresh_connect?)
 *   -> status, body, headers | nil, kind, message, curlcode */
static int session_request(lua_State *L) {
  Session *s = check_open(L);
  Xfer *x;
  size_t blen = 0;
  const char *body;
  CURLcode rc;
  check_request_args(L, 2);
  luaL_checkstack(L, 4, NULL);
  body = lua_isnoneornil(L, 5) ? NULL : lua_tolstring(L, 5, &blen);
  if (!session_refork(s)) {
    lua_pushnil(L);
    lua_pushliteral(L, "nomem");
    lua_pushliteral(L, "out of memory making new handles after a fork");
    return 3;
  }
  x = s->main;
  if (!build_headers(L, 4, s, x, blen)) {
    lua_pushnil(L);
    lua_pushliteral(L, "nomem");
    lua_pushliteral(L, "out of memory building request headers");
    return 3;
  }
  rc = xfer_prepare(x, lua_tostring(L, 2), lua_tostring(L, 3), body, blen, 0,
                    request_timeout(L, 6, s), lua_toboolean(L, 7));
  x->code = rc == CURLE_OK ? curl_easy_perform(x->easy) : rc;
  xfer_unprepare(x);
  s->requests++;
  return push_response(L, s, x);
}

/* session:multi_add(token, method, url, headers, body?, timeout_ms?, fresh_connect?)
 *   -> true | nil, kind, msg */
static int session_multi_add(lua_State *L) {
  Session *s = check_open(L);
  lua_Integer token = luaL_checkinteger(L, 2);
  Xfer *x;
  size_t blen = 0;
  const char *body;
  CURLcode rc;
  check_request_args(L, 3);
  luaL_checkstack(L, 4, NULL);
  body = lua_isnoneornil(L, 6) ? NULL : lua_tolstring(L, 6, &blen);
  if (!session_refork(s)) goto nomem;
  if (s->multi == NULL && (s->multi = curl_multi_init()) == NULL) goto nomem;
  if ((x = s->spare) != NULL) {
    s->spare = x->next;
  } else {
    if ((x = xfer_new(s)) == NULL) goto nomem;
    if (xfer_setup(s, x) != CURLE_OK) { xfer_free(x); goto nomem; }
  }
  x->token = token;
  if (!build_headers(L, 5, s, x, blen)) { xfer_free(x); goto nomem; }
  rc = xfer_prepare(x, lua_tostring(L, 3), lua_tostring(L, 4), body, blen, 1,
                    request_timeout(L, 7, s), lua_toboolean(L, 8));
  if (rc != CURLE_OK || curl_multi_add_handle(s->multi, x->easy) != CURLM_OK) {
    xfer_free(x);
    goto nomem;
  }
  x->next = s->running;
  s->running = x;
  lua_pushboolean(L, 1);
  return 1;
nomem:
  lua_pushnil(L);
  lua_pushliteral(L, "nomem");
  lua_pushliteral(L, "out of memory starting a batch transfer");
  return 3;
}

static void move_finished(Session *s) {
  CURLMsg *m;
  int left;
  while ((m = curl_multi_info_read(s->multi, &left)) != NULL) {
    Xfer **pp = &s->running;
    if (m->msg != CURLMSG_DONE) continue;
    while (*pp && (*pp)->easy != m->easy_handle) pp = &(*pp)->next;
    if (*pp) {
      Xfer *x = *pp;
      x->code = m->data.result;
      *pp = x->next;
      curl_multi_remove_handle(s->multi, x->easy);
      xfer_unprepare(x);
      x->next = s->done;
      s->done = x;
    }
  }
}

/* session:multi_poll(wait_ms, response_mt?) -> array of completions (possibly empty). Waits at
 * most wait_ms for activity when nothing has finished yet. With response_mt, a completion that
 * has a status gets that metatable and its header block (raw_headers sessions) as
 * raw_headers: the transport's lazy response, made here rather than by a Lua loop. */
static int session_multi_poll(lua_State *L) {
  Session *s = check_open(L);
  lua_Integer wait = luaL_optinteger(L, 2, 0);
  int running = 0, i = 0, mt;
  luaL_argcheck(L, wait >= 0 && wait <= 60000, 2, "wait must be 0..60000 ms");
  if (!lua_isnoneornil(L, 3)) luaL_checktype(L, 3, LUA_TTABLE);
  lua_settop(L, 3);
  mt = !lua_isnil(L, 3);
  /* After a fork the parent's transfers are not ours to finish. */
  if (!session_refork(s)) {
    lua_newtable(L);
    return 1;
  }
  if (s->multi) {
    curl_multi_perform(s->multi, &running);
    move_finished(s);
    if (s->done == NULL && running > 0 && wait > 0) {
      curl_multi_poll(s->multi, NULL, 0, (int)wait, NULL);
      curl_multi_perform(s->multi, &running);
      move_finished(s);
    }
  }
  lua_newtable(L);
  while (s->done) {
    Xfer *x = s->done;
    int n;
    lua_createtable(L, 0, 4);
    lua_pushinteger(L, x->token);
    lua_setfield(L, -2, "token");
    n = push_response(L, s, x);
    if (n == 3) {          /* status, body, headers */
      lua_setfield(L, -4, mt && s->raw_headers ? "raw_headers" : "headers");
      lua_setfield(L, -3, "body");
      lua_setfield(L, -2, "status");
      if (mt) {
        lua_pushvalue(L, 3);
        lua_setmetatable(L, -2);
      }
    } else {               /* nil, kind, message, code */
      lua_setfield(L, -5, "code");
      lua_setfield(L, -4, "message");
      lua_setfield(L, -3, "kind");
      lua_pop(L, 1);
    }
    lua_rawseti(L, -2, ++i);
    s->requests++;
    s->done = x->next;     /* only now: a raise above leaves x owned by the session */
    x->next = s->spare;
    s->spare = x;
    cm_buf_free(&x->body); /* keep the easy handle (and its state), not a large body */
    cm_buf_init(&x->body, s->max_body);
  }
  return 1;
}

static int session_multi_pending(lua_State *L) {
  Session *s = check_open(L);
  int n = 0;
  Xfer *x;
  if (!session_refork(s)) {
    lua_pushinteger(L, 0);
    return 1;
  }
  for (x = s->running; x; x = x->next) n++;
  for (x = s->done; x; x = x->next) n++;
  lua_pushinteger(L, n);
  return 1;
}

/* Unlinks the transfer with this token from a list; NULL when it is not there. */
static Xfer *xfer_unlink(Xfer **pp, lua_Integer token) {
  for (; *pp; pp = &(*pp)->next) {
    if ((*pp)->token == token) {
      Xfer *x = *pp;
      *pp = x->next;
      x->next = NULL;
      return x;
    }
  }
  return NULL;
}

/* session:multi_remove(token) -> true (the transfer was aborted, or had finished and is
 * dropped unreported) | false (no such transfer). Its easy handle goes back to the pool. */
static int session_multi_remove(lua_State *L) {
  Session *s = check_open(L);
  lua_Integer token = luaL_checkinteger(L, 2);
  Xfer *x;
  if (!session_refork(s)) {     /* after a fork the parent's transfers are not ours */
    lua_pushboolean(L, 0);
    return 1;
  }
  x = xfer_unlink(&s->running, token);
  if (x != NULL) {
    curl_multi_remove_handle(s->multi, x->easy);
    xfer_unprepare(x);
  } else {
    x = xfer_unlink(&s->done, token);
  }
  if (x != NULL) {
    x->next = s->spare;
    s->spare = x;
    cm_buf_free(&x->body);
    cm_buf_init(&x->body, s->max_body);
  }
  lua_pushboolean(L, x != NULL);
  return 1;
}

/* session:multi_timeout() -> ms until libcurl wants multi_poll called again, 0 for at once
 * (a finished transfer waits to be returned), -1 for no timer (only socket activity). */
static int session_multi_timeout(lua_State *L) {
  Session *s = check_open(L);
  long ms = -1;
  if (!session_refork(s)) ms = 0;
  else if (s->done != NULL) ms = 0;
  else if (s->multi != NULL && s->running != NULL && curl_multi_timeout(s->multi, &ms) != CURLM_OK)
    ms = 0;
  lua_pushinteger(L, (lua_Integer)ms);
  return 1;
}

/* session:multi_fds() -> { [fd] = "r" | "w" | "rw" }: the sockets the running transfers wait
 * on, for an event loop to watch (curl_multi_fdset: descriptors below FD_SETSIZE only; the
 * timeout covers the rest). */
static int session_multi_fds(lua_State *L) {
  Session *s = check_open(L);
  fd_set r, w, e;
  int maxfd = -1, fd;
  FD_ZERO(&r);
  FD_ZERO(&w);
  FD_ZERO(&e);
  if (session_refork(s) && s->multi != NULL && s->running != NULL
      && curl_multi_fdset(s->multi, &r, &w, &e, &maxfd) != CURLM_OK)
    maxfd = -1;
  lua_newtable(L);
  for (fd = 0; fd <= maxfd; fd++) {
    int rd = FD_ISSET(fd, &r), wr = FD_ISSET(fd, &w);
    if (!rd && !wr) continue;
    lua_pushstring(L, rd && wr ? "rw" : rd ? "r" : "w");
    lua_rawseti(L, -2, fd);
  }
  return 1;
}

static int session_stats(lua_State *L) {
  Session *s = check_open(L);
  lua_createtable(L, 0, 2);
  lua_pushinteger(L, s->connects);
  lua_setfield(L, -2, "connects");
  lua_pushinteger(L, s->requests);
  lua_setfield(L, -2, "requests");
  return 1;
}

/* One release function for close(), __gc and __close: idempotent, always true. */
static int session_close(lua_State *L) {
  session_release(check_session(L));
  lua_pushboolean(L, 1);
  return 1;
}

static int session_tostring(lua_State *L) {
  Session *s = check_session(L);
  lua_pushfstring(L, "chatmaid.session (%s) %p", s->main ? "open" : "closed", (void *)s);
  return 1;
}

void cm_session_open(lua_State *L) {
  static const luaL_Reg meta[] = {
    {"__gc", session_close},
#if LUA_VERSION_NUM >= 504
    {"__close", session_close},
#endif
    {"__tostring", session_tostring},
    {NULL, NULL}
  };
  static const luaL_Reg methods[] = {
    {"request", session_request},
    {"multi_add", session_multi_add},
    {"multi_poll", session_multi_poll},
    {"multi_pending", session_multi_pending},
    {"multi_remove", session_multi_remove},
    {"multi_timeout", session_multi_timeout},
    {"multi_fds", session_multi_fds},
    {"stats", session_stats},
    {"close", session_close},
    {NULL, NULL}
  };
  static const luaL_Reg funcs[] = {{"session", session_new}, {NULL, NULL}};
  luaL_newmetatable(L, SESSION_MT);
  cm_setfuncs(L, meta, 0);
  lua_newtable(L);
  cm_setfuncs(L, methods, 0);
  lua_setfield(L, -2, "__index");       /* module, mt */
  lua_pop(L, 1);
  cm_setfuncs(L, funcs, 0);
}
