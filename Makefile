# The C core: library, command-line driver, tests and fuzzer. GNU make; everything is built under $(B).
#
#   make lib          build/libmfd.a (the core without json.c, as the Python extension uses it)
#   make mfdc         build/mfdc
#   make test-c       unit and golden tests
#   make test-c-san   the same under AddressSanitizer and UndefinedBehaviorSanitizer, in build/san
#   make fuzz         build/fuzz/fuzz_ir (clang, libFuzzer)
#   make fuzz-run     run it for FUZZ_SECONDS, seeded with the golden IRs (CI's short run)
#   make fuzz-long    run it for FUZZ_RUNS executions (10 million), same seeds and corpus (bench/RESULTS.md)
#   UPDATE_GOLDEN=1 make test-c   rewrite tests/golden/*.py and *.err from the current compiler

CC ?= cc
CLANG ?= clang
CFLAGS ?= -O2 -g
WARN = -std=c11 -Wall -Wextra -Werror
SAN = -fsanitize=address,undefined -fno-omit-frame-pointer
B ?= build
FUZZ_SECONDS ?= 30
FUZZ_RUNS ?= 10000000
RUNENV = UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1

ALL_CFLAGS = $(WARN) $(CFLAGS) $(EXTRA_CFLAGS) -Icore -MMD -MP
CORE_SRC = $(filter-out core/json.c,$(wildcard core/*.c))
CORE_OBJ = $(CORE_SRC:core/%.c=$(B)/core/%.o)
JSON_OBJ = $(B)/core/json.o
LIBS = -ljansson

.PHONY: lib mfdc test-c test-c-san fuzz fuzz-run fuzz-long clean

lib: $(B)/libmfd.a

mfdc: $(B)/mfdc

$(B)/core/%.o: core/%.c
	@mkdir -p $(@D)
	$(CC) $(ALL_CFLAGS) -c $< -o $@

$(B)/libmfd.a: $(CORE_OBJ)
	rm -f $@
	$(AR) rcs $@ $^

$(B)/mfdc: cli/mfdc.c $(JSON_OBJ) $(B)/libmfd.a
	$(CC) $(ALL_CFLAGS) $^ $(LIBS) -o $@

$(B)/unit $(B)/golden: $(B)/%: tests/c/%.c tests/c/test.h $(JSON_OBJ) $(B)/libmfd.a
	$(CC) $(ALL_CFLAGS) $(filter %.c %.o %.a,$^) $(LIBS) -o $@

test-c: $(B)/unit $(B)/golden
	$(RUNENV) $(B)/unit
	$(RUNENV) $(B)/golden tests/golden

test-c-san:
	$(MAKE) --no-print-directory B=$(B)/san EXTRA_CFLAGS="$(SAN)" test-c

fuzz: $(B)/fuzz/fuzz_ir

$(B)/fuzz/fuzz_ir: tests/c/fuzz_ir.c $(wildcard core/*.c core/*.h)
	@mkdir -p $(@D)
	$(CLANG) $(WARN) -g -O1 -fsanitize=fuzzer,address,undefined -fno-omit-frame-pointer -Icore \
		tests/c/fuzz_ir.c $(wildcard core/*.c) $(LIBS) -o $@

fuzz-run: $(B)/fuzz/fuzz_ir
	@mkdir -p $(B)/fuzz/corpus $(B)/fuzz/seed
	cp tests/golden/*.json $(B)/fuzz/seed/
	$(RUNENV) $(B)/fuzz/fuzz_ir -max_total_time=$(FUZZ_SECONDS) -timeout=10 -print_final_stats=1 \
		-artifact_prefix=$(B)/fuzz/ $(B)/fuzz/corpus $(B)/fuzz/seed

fuzz-long: $(B)/fuzz/fuzz_ir
	@mkdir -p $(B)/fuzz/corpus $(B)/fuzz/seed
	cp tests/golden/*.json $(B)/fuzz/seed/
	$(RUNENV) $(B)/fuzz/fuzz_ir -runs=$(FUZZ_RUNS) -timeout=10 -print_final_stats=1 \
		-artifact_prefix=$(B)/fuzz/ $(B)/fuzz/corpus $(B)/fuzz/seed

clean:
	rm -rf $(B)

-include $(wildcard $(B)/core/*.d $(B)/*.d)
