# SPDX-License-Identifier: MIT
# The C modules as the rockspecs build them (build.type = "make", build.makefile =
# "rockspec/build.mk"): the compiler, flags and library dirs come from LuaRocks, so neither
# pkg-config nor the Debian package check of the main Makefile is needed. One module per
# target, always rebuilt (LuaRocks may build for several Lua versions from one checkout).
# Why not the builtin build type: it copies the whole lua/ directory into every rock, so the
# library rock would install the sandbox, the CLI and the Redis modules too.
CC ?= cc
CFLAGS ?= -O2 -fPIC
LIBFLAG ?= -shared
LUA_INCDIR ?= /usr/include
OUT ?= build/rock
ROCK_CFLAGS = $(CFLAGS) -std=c99 -fvisibility=hidden -D_POSIX_C_SOURCE=200809L -Icsrc \
              -I$(LUA_INCDIR)

REDIS_SRCS := $(wildcard csrc/redis*.c)
CORE_SRCS := $(filter-out $(REDIS_SRCS),$(wildcard csrc/*.c))

.PHONY: chatmaid-core chatmaid-redis-core
# chatmaid.core: libcurl and libcrypto
chatmaid-core:
	@mkdir -p $(OUT)/chatmaid
	$(CC) $(ROCK_CFLAGS) -I$(CURL_INCDIR) -I$(OPENSSL_INCDIR) $(LIBFLAG) \
	  -o $(OUT)/chatmaid/core.so $(CORE_SRCS) -L$(CURL_LIBDIR) -L$(OPENSSL_LIBDIR) -lcurl -lcrypto

# chatmaid.redis.core: hiredis alone
chatmaid-redis-core:
	@mkdir -p $(OUT)/chatmaid/redis
	$(CC) $(ROCK_CFLAGS) -I$(HIREDIS_INCDIR) $(LIBFLAG) \
	  -o $(OUT)/chatmaid/redis/core.so $(REDIS_SRCS) -L$(HIREDIS_LIBDIR) -lhiredis
