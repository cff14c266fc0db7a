# $(BUILD)/chatmaid_host: the embedding host of spec/host/ (many Lua states on many threads;
# a real fork of a process that used a client). Built for the Lua runtime under test and
# linked against that runtime's library (unlike the module, which never links one).
# Usage: spec/host/chatmaid_host.c; `make test` and `make asan` build it.
HOST_BIN := $(BUILD)/chatmaid_host
LUA_LIBS := $(shell $(PKG_CONFIG) --libs $(LUA_PC) 2>/dev/null)

$(HOST_BIN): spec/host/chatmaid_host.c mk/host.mk
	@mkdir -p $(dir $@)
	$(CC) -std=c99 $(OPT) -D_POSIX_C_SOURCE=200809L $(CWARNS) $(WERROR) $(LUA_CFLAGS) \
	  $(SAN_CFLAGS) -o $@ $< $(SAN_LDFLAGS) $(LUA_LIBS) -lpthread

.PHONY: host
host: $(HOST_BIN)
test: $(HOST_BIN)
