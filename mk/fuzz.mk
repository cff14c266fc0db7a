# `make fuzz`: libFuzzer + ASan + UBSan over the webhook parser/verifier for FUZZ_SECONDS.
# The harness links csrc/webhook_core.c only (no Lua state); findings land in build/fuzz/.
FUZZ_SECONDS ?= 60
FUZZ_CC ?= clang
FUZZ_BIN := build/fuzz/webhook_fuzz
FUZZ_FLAGS ?=
FUZZ_SAN := -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined

.PHONY: fuzz fuzz-build
fuzz-build: $(FUZZ_BIN)

$(FUZZ_BIN): fuzz/webhook_fuzz.c csrc/webhook_core.c csrc/webhook_core.h mk/fuzz.mk
	@mkdir -p $(dir $@)
	$(FUZZ_CC) -std=c99 -g -O1 $(FUZZ_SAN) -D_POSIX_C_SOURCE=200809L $(CWARNS) -Werror \
	  -Icsrc $(shell $(PKG_CONFIG) --cflags libcrypto) -o $@ fuzz/webhook_fuzz.c \
	  csrc/webhook_core.c $(shell $(PKG_CONFIG) --libs libcrypto)

fuzz: $(FUZZ_BIN)
	@mkdir -p fuzz/corpus-run
	$(FUZZ_BIN) -max_total_time=$(FUZZ_SECONDS) -max_len=20000 -print_final_stats=1 \
	  -artifact_prefix=build/fuzz/ $(FUZZ_FLAGS) fuzz/corpus-run fuzz/corpus
