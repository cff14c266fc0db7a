# lua-chatmaid. `make` builds the C modules, `make test` runs the specs, `make demo` the quickstart.
LUA_VERSION ?= 5.4
LUA ?= lua$(LUA_VERSION)
ifeq ($(LUA),luajit)
  LUA_PC ?= luajit
  LUA_TAG := luajit
else
  LUA_PC ?= lua$(LUA_VERSION)
  LUA_TAG := lua$(LUA_VERSION)
endif
# The default build lands where .busted and the docs expect it; other Luas get their own dir.
ifeq ($(LUA_TAG),lua5.4)
  BUILD ?= build
else
  BUILD ?= build/$(LUA_TAG)
endif
OBJDIR := $(BUILD)/obj

PKG_CONFIG ?= pkg-config
LUA_INCDIR ?=
# pkg-config runs on first use (in a recipe, after `deps` has installed pkg-config and the -dev
# packages), not when make reads this file, so the first `make demo` on a fresh machine works.
# $(call lazy,VAR,VALUE): evaluate VALUE once, when VAR is first expanded.
lazy = $(eval $1 := $2)$($1)
LUA_CFLAGS = $(call lazy,LUA_CFLAGS,$(if $(LUA_INCDIR),-I$(LUA_INCDIR),$(shell $(PKG_CONFIG) --cflags $(LUA_PC) 2>/dev/null)))
# chatmaid.core: libcurl and libcrypto. chatmaid.redis.core: hiredis alone.
DEP_CFLAGS = $(call lazy,DEP_CFLAGS,$(shell $(PKG_CONFIG) --cflags libcurl libcrypto 2>/dev/null))
DEP_LIBS = $(call lazy,DEP_LIBS,$(shell $(PKG_CONFIG) --libs libcurl libcrypto 2>/dev/null))
HIREDIS_CFLAGS = $(call lazy,HIREDIS_CFLAGS,$(shell $(PKG_CONFIG) --cflags hiredis 2>/dev/null))
HIREDIS_LIBS = $(call lazy,HIREDIS_LIBS,$(shell $(PKG_CONFIG) --libs hiredis 2>/dev/null))

CC ?= cc
OPT ?= -O2 -g
CWARNS := -Wall -Wextra -pedantic -Wshadow -Wmissing-prototypes -Wstrict-prototypes
CFLAGS += -std=c99 $(OPT) -fPIC -fvisibility=hidden -D_POSIX_C_SOURCE=200809L $(CWARNS) \
          $(WERROR) $(LUA_CFLAGS) $(DEP_CFLAGS) $(SAN_CFLAGS)
# Never link liblua into the module: the host interpreter (lua, luajit, nginx) carries the VM.
LDFLAGS += -shared $(SAN_LDFLAGS)

# Two C modules: csrc/redis*.c make chatmaid.redis.core (the only one linked with hiredis),
# every other csrc/*.c makes chatmaid.core.
REDIS_SRCS := $(wildcard csrc/redis*.c)
SRCS := $(filter-out $(REDIS_SRCS),$(wildcard csrc/*.c))
OBJS := $(patsubst csrc/%.c,$(OBJDIR)/%.o,$(SRCS))
REDIS_OBJS := $(patsubst csrc/%.c,$(OBJDIR)/%.o,$(REDIS_SRCS))
CORE := $(BUILD)/chatmaid/core.so
REDIS_CORE := $(BUILD)/chatmaid/redis/core.so
MODULES := $(CORE) $(REDIS_CORE)

BUSTED ?= $(LUA) /usr/bin/busted
BUSTED_FLAGS ?=
SPECS ?= spec

.PHONY: all deps test lint clean install demo asan valgrind check-rocks rockspecs
all: deps $(MODULES)

# `make` (the build) only checks the build's packages and says what to install; the two
# set-up commands, `make demo` and `make test`, install what is missing when run as root.
DEPS_MODE := $(if $(filter demo test,$(MAKECMDGOALS)),install,check)
deps:
	@sh scripts/deps.sh $(DEPS_MODE)

$(CORE): $(OBJS)
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS) -o $@ $(OBJS) $(DEP_LIBS)

$(REDIS_CORE): $(REDIS_OBJS)
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS) -o $@ $(REDIS_OBJS) $(HIREDIS_LIBS)

$(REDIS_OBJS): CFLAGS += $(HIREDIS_CFLAGS)

# Order-only on deps: with -j too, nothing compiles before the packages are there.
$(OBJDIR)/%.o: csrc/%.c | deps
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -MMD -MP -c -o $@ $<

-include $(OBJS:.o=.d) $(REDIS_OBJS:.o=.d)

test: all
	CHATMAID_LUA=$(LUA) $(BUSTED) --cpath='$(BUILD)/?.so' $(BUSTED_FLAGS) $(SPECS)

lint: deps
	luacheck lua spec bin examples
	$(MAKE) --no-print-directory BUILD=build/lint WERROR=-Werror $(if $(filter command line,$(origin LUA)),LUA=$(LUA)) build/lint/chatmaid/core.so build/lint/chatmaid/redis/core.so

demo: all
	@sh scripts/demo.sh $(LUA) $(BUILD)

# The four rocks (the library, Redis, the sandbox, the CLI), each from its own rockspec.
# --deps-mode none: lua-cjson, argparse and luasocket come from Debian (deps), which LuaRocks
# cannot see; elsewhere `luarocks make rockspec/<rock>-scm-1.rockspec` fetches them.
ROCKS := chatmaid chatmaid-redis chatmaid-sandbox chatmaid-cli
ROCKS_LUA = $(if $(filter luajit,$(LUA)),5.1,$(LUA_VERSION))
install: deps
	for r in $(ROCKS); do luarocks --lua-version=$(ROCKS_LUA) make --deps-mode none \
	  rockspec/$$r-scm-1.rockspec || exit 1; done

# Each rock installed alone into an empty tree and used from there (scripts/check-rocks.sh).
check-rocks: deps
	sh scripts/check-rocks.sh $(ROCKS_LUA)

# The rockspecs are generated (scripts/gen-rockspec.lua): after adding or moving a module.
rockspecs:
	$(LUA) scripts/gen-rockspec.lua

clean:
	rm -rf build

-include mk/*.mk
