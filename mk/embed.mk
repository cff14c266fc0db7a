# SPDX-License-Identifier: MIT
# `make embed`: build/embed/libchatmaid.a + chatmaid_embed.h, lua-chatmaid for C hosts that
# embed Lua 5.4 with no shared object, no .lua file on disk and no dlopen (README, "Embedding").
# The archive is one relocatable object (ld -r) whose only global symbols are chatmaid_preload
# and the two C modules' openers (luaopen_chatmaid_core, luaopen_chatmaid_redis_core): csrc/,
# the preload table (embed/preload.c), the Lua sources as C arrays (scripts/embed-gen.lua),
# lua-cjson from Debian's lua-cjson-dev (liblua5.4-cjson.a) and hiredis from libhiredis-dev
# (libhiredis.a, for chatmaid.redis.core).
# `make embed EMBED_CJSON=none` leaves lua-cjson out: the host then preloads its own "cjson".
# `make embed EMBED_HIREDIS=none` leaves hiredis out: the host then links -lhiredis itself.
# Also builds the frame-loop example (examples/embed/) and the spec host (spec/embed/).
EMBED_DIR ?= build/embed
EMBED_OBJDIR := $(EMBED_DIR)/obj
EMBED_LUA_PC ?= lua5.4
# Lazy (see `lazy` in the Makefile): pkg-config and the libraries are there only after `deps`.
EMBED_LUA_CFLAGS = $(call lazy,EMBED_LUA_CFLAGS,$(shell $(PKG_CONFIG) --cflags $(EMBED_LUA_PC) 2>/dev/null))
EMBED_MULTIARCH = $(call lazy,EMBED_MULTIARCH,$(shell $(CC) -print-multiarch 2>/dev/null))
# The example hosts link Lua statically when the static library is there.
EMBED_HOST_LUA_LIBS = $(call lazy,EMBED_HOST_LUA_LIBS,$(or \
  $(wildcard /usr/lib/$(EMBED_MULTIARCH)/lib$(EMBED_LUA_PC).a),\
  $(shell $(PKG_CONFIG) --libs $(EMBED_LUA_PC) 2>/dev/null)))
EMBED_CJSON ?= /usr/lib/$(EMBED_MULTIARCH)/lib$(EMBED_LUA_PC)-cjson.a
EMBED_HIREDIS ?= /usr/lib/$(EMBED_MULTIARCH)/libhiredis.a
EMBED_BUNDLED = $(filter-out none,$(EMBED_CJSON) $(EMBED_HIREDIS))
EMBED_CFLAGS = -std=c99 $(OPT) -fPIC -fvisibility=hidden -D_POSIX_C_SOURCE=200809L $(CWARNS) \
                $(WERROR) $(EMBED_LUA_CFLAGS) $(DEP_CFLAGS) $(HIREDIS_CFLAGS) -Icsrc -Iembed -I$(EMBED_DIR) \
                $(if $(filter none,$(EMBED_CJSON)),-DCHATMAID_EMBED_NO_CJSON)
EMBED_HOST_CFLAGS = -std=c99 $(OPT) -D_POSIX_C_SOURCE=200809L $(CWARNS) $(WERROR) \
                     $(EMBED_LUA_CFLAGS) -I$(EMBED_DIR)
# What a host links besides the archive: libcurl and libcrypto (and -lhiredis only when the
# archive leaves hiredis out).
EMBED_DEP_LIBS = $(call lazy,EMBED_DEP_LIBS,$(shell $(PKG_CONFIG) --libs libcurl libcrypto \
  $(if $(filter none,$(EMBED_HIREDIS)),hiredis) 2>/dev/null))
EMBED_HOST_LIBS = $(EMBED_DIR)/libchatmaid.a $(EMBED_HOST_LUA_LIBS) $(EMBED_DEP_LIBS) -lm -ldl
# Every Lua module but the sandbox and the CLI (they need LuaSocket and argparse).
EMBED_EXCLUDE ?= lua/chatmaid/sandbox.lua lua/chatmaid/sandbox/% lua/chatmaid/cli/%
EMBED_LUA_SRCS := $(sort $(filter-out $(EMBED_EXCLUDE),$(shell find lua/chatmaid -name '*.lua')))
EMBED_CORE_OBJS := $(patsubst csrc/%.c,$(EMBED_OBJDIR)/%.o,$(SRCS) $(REDIS_SRCS))
EMBED_OBJS := $(EMBED_CORE_OBJS) $(EMBED_OBJDIR)/preload.o $(EMBED_OBJDIR)/modules.o
EMBED_LIB := $(EMBED_DIR)/libchatmaid.a
EMBED_BINS := $(EMBED_DIR)/frame_loop $(EMBED_DIR)/spec_host
EMBED_GEN_LUA ?= $(LUA)

.PHONY: embed embed-lib
embed: $(EMBED_LIB) $(EMBED_DIR)/chatmaid_embed.h $(EMBED_BINS)
embed-lib: $(EMBED_LIB) $(EMBED_DIR)/chatmaid_embed.h

$(EMBED_DIR)/chatmaid_embed.h: embed/chatmaid_embed.h
	@mkdir -p $(dir $@)
	cp $< $@

$(EMBED_DIR)/modules.c: scripts/embed-gen.lua $(EMBED_LUA_SRCS) mk/embed.mk | deps
	@mkdir -p $(dir $@)
	$(EMBED_GEN_LUA) scripts/embed-gen.lua $@ $(EMBED_LUA_SRCS)

$(EMBED_OBJDIR)/modules.o: $(EMBED_DIR)/modules.c embed/embed_modules.h
	@mkdir -p $(dir $@)
	$(CC) $(EMBED_CFLAGS) -c -o $@ $<

$(EMBED_OBJDIR)/preload.o: embed/preload.c embed/chatmaid_embed.h embed/embed_modules.h | deps
	@mkdir -p $(dir $@)
	$(CC) $(EMBED_CFLAGS) -c -o $@ $<

$(EMBED_OBJDIR)/%.o: csrc/%.c | deps
	@mkdir -p $(dir $@)
	$(CC) $(EMBED_CFLAGS) -MMD -MP -c -o $@ $<

-include $(EMBED_CORE_OBJS:.o=.d)

$(EMBED_LIB): $(EMBED_OBJS)
	@for f in $(EMBED_BUNDLED); do test -f "$$f" || { \
	  echo "make embed: $$f is missing: apt-get install lua-cjson-dev libhiredis-dev" \
	       "(or EMBED_CJSON=none / EMBED_HIREDIS=none: README, Embedding)" >&2; exit 1; }; done
	$(LD) -r -o $(EMBED_OBJDIR)/chatmaid_all.o $(EMBED_OBJS) \
	  $(if $(EMBED_BUNDLED),--whole-archive $(EMBED_BUNDLED) --no-whole-archive)
	objcopy --keep-global-symbol=chatmaid_preload --keep-global-symbol=luaopen_chatmaid_core \
	  --keep-global-symbol=luaopen_chatmaid_redis_core \
	  $(EMBED_OBJDIR)/chatmaid_all.o
	rm -f $@
	$(AR) rcs $@ $(EMBED_OBJDIR)/chatmaid_all.o

$(EMBED_DIR)/frame_loop: examples/embed/frame_loop.c $(EMBED_LIB) $(EMBED_DIR)/chatmaid_embed.h
	$(CC) $(EMBED_HOST_CFLAGS) -o $@ $< $(EMBED_HOST_LIBS)

$(EMBED_DIR)/spec_host: spec/embed/spec_host.c $(EMBED_LIB) $(EMBED_DIR)/chatmaid_embed.h
	$(CC) $(EMBED_HOST_CFLAGS) -o $@ $< $(EMBED_HOST_LIBS)

# make test builds the archive and the hosts for spec/embed (Lua 5.4 suite only; the other
# suites mark that spec pending). make lint builds them with -Werror.
ifeq ($(LUA_TAG),lua5.4)
test: embed
endif

.PHONY: embed-lint
lint: embed-lint
embed-lint:
	$(MAKE) --no-print-directory EMBED_DIR=build/lint/embed WERROR=-Werror \
	  build/lint/embed/libchatmaid.a build/lint/embed/frame_loop build/lint/embed/spec_host
