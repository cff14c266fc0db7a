# SPDX-License-Identifier: MIT
# `make bench`: SDK vs raw C timings against a private nginx (bench/run.sh, docs/bench.md).
# `make bench-smoke`: every row once, in about a second, failing on any broken row.
# The baselines embed a Lua state for lua-cjson, so unlike the module they link liblua: always
# Lua 5.4 (the C side of a baseline does not depend on which Lua runs the SDK rows).
BENCH_DIR := $(BUILD)/bench
BENCH_CFLAGS = -std=c99 -O2 -g -D_POSIX_C_SOURCE=200809L -Wall -Wextra -pedantic -Wshadow \
                -Wmissing-prototypes -Wstrict-prototypes \
                $(BENCH_LUA_CFLAGS) $(DEP_CFLAGS)
# Lazy (see `lazy` in the Makefile): pkg-config answers only after `deps` has run.
BENCH_LUA_CFLAGS = $(call lazy,BENCH_LUA_CFLAGS,$(shell $(PKG_CONFIG) --cflags lua5.4 2>/dev/null))
BENCH_LUA_LIBS = $(call lazy,BENCH_LUA_LIBS,$(shell $(PKG_CONFIG) --libs lua5.4 2>/dev/null))
BENCH_BINS := $(BENCH_DIR)/baseline_http $(BENCH_DIR)/baseline_multi $(BENCH_DIR)/baseline_hmac
BENCH_RUN = LUA='$(LUA)' BUILD='$(BUILD)' BENCH_BIN='$(BENCH_DIR)' sh bench/run.sh

.PHONY: bench bench-smoke bench-bins bench-luajit
bench-bins: $(BENCH_BINS)

$(BENCH_DIR)/baseline_http: bench/baseline_http.c bench/bench_util.h bench/bench_lua.h
	@mkdir -p $(dir $@)
	$(CC) $(BENCH_CFLAGS) -o $@ $< $(DEP_LIBS) $(BENCH_LUA_LIBS)

$(BENCH_DIR)/baseline_multi: bench/baseline_multi.c bench/bench_util.h bench/bench_lua.h
	@mkdir -p $(dir $@)
	$(CC) $(BENCH_CFLAGS) -o $@ $< $(DEP_LIBS) $(BENCH_LUA_LIBS)

$(BENCH_DIR)/baseline_hmac: bench/baseline_hmac.c bench/bench_util.h
	@mkdir -p $(dir $@)
	$(CC) $(BENCH_CFLAGS) -o $@ $< $(DEP_LIBS)

# The nginx row loads the core built for nginx's LuaJIT (build/luajit).
bench-luajit:
	@$(MAKE) --no-print-directory LUA=luajit BUILD=build/luajit all >/dev/null

bench: all bench-bins bench-luajit
	@$(BENCH_RUN) full

bench-smoke: all bench-bins bench-luajit
	@$(BENCH_RUN) smoke
