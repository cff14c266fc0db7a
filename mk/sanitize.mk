# make asan: the C modules built with ASan+UBSan, loaded into the stock interpreter through
# LD_PRELOAD of the sanitizer runtimes, running the whole spec suite.
# make valgrind: memcheck over the suite (the interpreter and every child it starts).
ASAN_BUILD := build/asan
ASAN_RT = $(call lazy,ASAN_RT,$(shell $(CC) -print-file-name=libasan.so))
UBSAN_RT = $(call lazy,UBSAN_RT,$(shell $(CC) -print-file-name=libubsan.so))
VALGRIND_SPECS ?= spec/core spec/unit spec/integration/client_spec.lua spec/integration/faults_spec.lua
# Everything but spec/nginx: nginx loads the LuaJIT build of the core, not this one, and
# LuaJIT's allocator does not run under an ASan runtime preloaded into nginx.
ASAN_SPECS ?= spec/unit spec/core spec/integration spec/sandbox spec/cli spec/host
# make tsan: the core and the embedding host built with ThreadSanitizer, running the
# many-threads spec (8 lua_States on 8 threads loading and using the module at once).
TSAN_BUILD := build/tsan
TSAN_SPECS ?= spec/host/threads_spec.lua

# intercept_tls_get_addr=0: GCC 12's runtime (as LLVM's up to 16) takes a dynamic TLS block
# that malloc placed at offset 16 of a page for a pre-2.25 glibc header and reads garbage
# around it; LeakSanitizer's stop-the-world tracer then dies at exit ("Tracer caught signal
# 11", no leak found), about once in a few runs of the suite. Off, LSan does not scan
# dlopen'ed libraries' __thread blocks; no leak of ours lives only there.
.PHONY: asan valgrind tsan
asan: deps
	$(MAKE) --no-print-directory BUILD=$(ASAN_BUILD) OPT="-O1 -g -fno-omit-frame-pointer" \
	  SAN_CFLAGS="-fsanitize=address,undefined -fno-sanitize-recover=undefined" \
	  SAN_LDFLAGS="-fsanitize=address,undefined" $(ASAN_BUILD)/chatmaid/core.so \
	  $(ASAN_BUILD)/chatmaid/redis/core.so \
	  $(ASAN_BUILD)/chatmaid_host
	LD_PRELOAD="$(ASAN_RT) $(UBSAN_RT)" \
	ASAN_OPTIONS=detect_leaks=1:abort_on_error=1:halt_on_error=1:intercept_tls_get_addr=0 \
	LSAN_OPTIONS=suppressions=$(CURDIR)/scripts/lsan.supp:print_suppressions=0 \
	UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
	CHATMAID_LUA=$(LUA) $(BUSTED) --cpath='$(ASAN_BUILD)/?.so' $(BUSTED_FLAGS) $(ASAN_SPECS)

valgrind: all
	CHATMAID_LUA=$(LUA) valgrind --quiet --error-exitcode=99 --leak-check=full \
	  --errors-for-leak-kinds=definite --show-leak-kinds=definite \
	  --suppressions=$(CURDIR)/scripts/valgrind.supp \
	  $(BUSTED) --cpath='$(BUILD)/?.so' $(BUSTED_FLAGS) $(VALGRIND_SPECS)

# busted itself loads the regular build (a stock interpreter cannot load a TSan object); only
# the host, which links the TSan runtime, loads the TSan core (CHATMAID_HOST_BUILD).
tsan: all
	$(MAKE) --no-print-directory BUILD=$(TSAN_BUILD) OPT="-O1 -g" \
	  SAN_CFLAGS="-fsanitize=thread" SAN_LDFLAGS="-fsanitize=thread" \
	  $(TSAN_BUILD)/chatmaid/core.so $(TSAN_BUILD)/chatmaid/redis/core.so \
	  $(TSAN_BUILD)/chatmaid_host
	CHATMAID_HOST_BUILD=$(TSAN_BUILD) TSAN_OPTIONS="halt_on_error=1 exitcode=66" \
	CHATMAID_LUA=$(LUA) $(BUSTED) --cpath='$(BUILD)/?.so' $(BUSTED_FLAGS) $(TSAN_SPECS)
