# `make fuzz`: libFuzzer + ASan + UBSan, FUZZ_SECONDS each, over the webhook parser/verifier
# (csrc/webhook_core.c alone, no Lua) and over the envelope decoder (csrc/envelope.c in an
# embedded Lua 5.4 state with the system lua-cjson), and over Redis replies (csrc/redis.c with
# the system hiredis, through a real socket). Findings land in build/fuzz/.
FUZZ_SECONDS ?= 60
FUZZ_CC ?= clang
FUZZ_BIN := build/fuzz/webhook_fuzz
ENV_FUZZ_BIN := build/fuzz/envelope_fuzz
REDIS_FUZZ_BIN := build/fuzz/redis_fuzz
FUZZ_FLAGS ?=
FUZZ_SAN := -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined

.PHONY: fuzz fuzz-build
fuzz-build: $(FUZZ_BIN) $(ENV_FUZZ_BIN) $(REDIS_FUZZ_BIN)

$(FUZZ_BIN): fuzz/webhook_fuzz.c csrc/webhook_core.c csrc/webhook_core.h mk/fuzz.mk
	@mkdir -p $(dir $@)
	$(FUZZ_CC) -std=c99 -g -O1 $(FUZZ_SAN) -D_POSIX_C_SOURCE=200809L $(CWARNS) -Werror \
	  -Icsrc $(shell $(PKG_CONFIG) --cflags libcrypto) -o $@ fuzz/webhook_fuzz.c \
	  csrc/webhook_core.c $(shell $(PKG_CONFIG) --libs libcrypto)

$(ENV_FUZZ_BIN): fuzz/envelope_fuzz.c csrc/envelope.c csrc/envelope.h csrc/compat.h mk/fuzz.mk
	@mkdir -p $(dir $@)
	$(FUZZ_CC) -std=c99 -g -O1 $(FUZZ_SAN) -D_POSIX_C_SOURCE=200809L $(CWARNS) -Werror \
	  -Icsrc $(shell $(PKG_CONFIG) --cflags lua5.4) -o $@ fuzz/envelope_fuzz.c \
	  csrc/envelope.c $(shell $(PKG_CONFIG) --libs lua5.4) -lm -ldl

$(REDIS_FUZZ_BIN): fuzz/redis_fuzz.c csrc/redis.c csrc/redis.h csrc/compat.h mk/fuzz.mk
	@mkdir -p $(dir $@)
	$(FUZZ_CC) -std=c99 -g -O1 $(FUZZ_SAN) -D_POSIX_C_SOURCE=200809L $(CWARNS) -Werror \
	  -Icsrc $(shell $(PKG_CONFIG) --cflags lua5.4 hiredis) -o $@ fuzz/redis_fuzz.c \
	  csrc/redis.c $(shell $(PKG_CONFIG) --libs lua5.4 hiredis) -lm -ldl

# The fuzzers are independent targets: `make -j2 fuzz` runs them side by side (CI does, on
# two cores: each still gets FUZZ_SECONDS of its own core); plain `make fuzz` one after the other.
fuzz: fuzz-webhook fuzz-envelope fuzz-redis

.PHONY: fuzz-webhook fuzz-envelope fuzz-redis
fuzz-webhook: $(FUZZ_BIN)
	@mkdir -p fuzz/corpus-run
	$(FUZZ_BIN) -max_total_time=$(FUZZ_SECONDS) -max_len=20000 -print_final_stats=1 \
	  -artifact_prefix=build/fuzz/ $(FUZZ_FLAGS) fuzz/corpus-run fuzz/corpus

fuzz-envelope: $(ENV_FUZZ_BIN)
	@mkdir -p fuzz/corpus-envelope-run
	$(ENV_FUZZ_BIN) -max_total_time=$(FUZZ_SECONDS) -max_len=65536 -print_final_stats=1 \
	  -artifact_prefix=build/fuzz/envelope- $(FUZZ_FLAGS) fuzz/corpus-envelope-run \
	  fuzz/corpus-envelope

fuzz-redis: $(REDIS_FUZZ_BIN)
	@mkdir -p fuzz/corpus-redis-run
	$(REDIS_FUZZ_BIN) -max_total_time=$(FUZZ_SECONDS) -max_len=65536 -print_final_stats=1 \
	  -artifact_prefix=build/fuzz/redis- $(FUZZ_FLAGS) fuzz/corpus-redis-run fuzz/corpus-redis
