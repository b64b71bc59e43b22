# halloc - one Makefile, read top to bottom.
#
#   make            build everything into build/
#   make deps       install the Debian packages the build and the tests need
#   make check      every test: unit (Criterion) and end-to-end
#   make example    build and trace the bundled leaky example
#   make bench      the reference benchmarks (../shared/bench/run)
#   make install PREFIX=/usr/local
#   make V=1        show the commands

PREFIX  ?= /usr/local
BUILD   ?= build
CC      ?= cc
CXX     ?= c++

ifeq ($(V),1)
Q :=
else
Q := @
endif

WARN     := -Wall -Wextra -Werror -Wno-unused-parameter
CPPFLAGS := -Iinclude -I. -D_GNU_SOURCE
CFLAGS   ?= -O2 -g
CFLAGS   += -std=gnu11 $(WARN) -fno-omit-frame-pointer

# ---- the agent: libhalloc.so ---------------------------------------------
# initial-exec TLS: a preloaded library gets static TLS, and the agent must
# never reach __tls_get_addr (which may call malloc) from inside malloc.
AGENT_SRC  := $(wildcard agent/*.c)
AGENT_OBJ  := $(AGENT_SRC:%.c=$(BUILD)/obj/%.o)
AGENT_LIB  := $(BUILD)/lib/libhalloc.so
AGENT_CFLAGS := -fPIC -fvisibility=hidden -ftls-model=initial-exec
AGENT_LIBS := -ldl -pthread

# ---- the analyzer: libhalloc-analyzer.a ----------------------------------
ANALYZER_SRC := $(wildcard analyzer/*.c)
ANALYZER_OBJ := $(ANALYZER_SRC:%.c=$(BUILD)/obj/%.o)
ANALYZER_LIB := $(BUILD)/lib/libhalloc-analyzer.a
ANALYZER_LIBS := -ldw -lelf -lz -lzstd -lstdc++ -lm -pthread
# The commands link these statically: a traced run starts halloc-trace once,
# and resolving a dozen shared libraries (libstdc++ for one demangler) cost
# ~3 ms of a 15 ms start here. libc and libm stay shared. $(1): more first.
STATIC_LIBS = -Wl,-Bstatic $(1) -ldw -lelf -lzstd -llzma -lbz2 -lz -lstdc++ \
	      -Wl,-Bdynamic -lm -pthread

# ---- the tracer: libhalloc-tracer.a (spawn, collect, finish a log) --------
TRACER_SRC := $(wildcard tracer/*.c)
TRACER_OBJ := $(TRACER_SRC:%.c=$(BUILD)/obj/%.o)
TRACER_LIB := $(BUILD)/lib/libhalloc-tracer.a

# ---- the commands -----------------------------------------------------------
BINS := $(BUILD)/bin/halloc-trace $(BUILD)/bin/halloc-report

# ---- examples and tests -----------------------------------------------------
EXAMPLES := $(patsubst examples/%.c,$(BUILD)/examples/%,$(wildcard examples/*.c))
UNIT_SRC := $(wildcard tests/unit/*.c)
UNIT_BIN := $(BUILD)/tests/unit-tests
# The in-process API's tests: linked against libhalloc, as a program is.
API_SRC  := $(wildcard tests/api/*.c)
API_BIN  := $(BUILD)/tests/api-tests
# Examples that use the in-process API link it (examples/API_EXAMPLES.c).
API_EXAMPLES := typed
LINK_HALLOC = -Iinclude -L$(BUILD)/lib -lhalloc -Wl,-rpath,'$$ORIGIN/../lib'

.PHONY: all deps check unit e2e example bench install clean check-style
all: $(AGENT_LIB) $(ANALYZER_LIB) $(TRACER_LIB) $(BINS) $(EXAMPLES) $(API_BIN)

$(BUILD)/obj/agent/%.o: agent/%.c $(wildcard agent/*.h include/halloc/*.h)
	@mkdir -p $(dir $@)
	@$(if $(Q),echo "  CC      $<")
	$(Q)$(CC) $(CPPFLAGS) $(CFLAGS) $(AGENT_CFLAGS) -c $< -o $@

$(AGENT_LIB): $(AGENT_OBJ)
	@mkdir -p $(dir $@)
	@$(if $(Q),echo "  LD      $@")
	$(Q)$(CC) -shared -o $@ $^ $(AGENT_LIBS) -Wl,-soname,libhalloc.so -Wl,-z,nodelete

$(BUILD)/obj/%.o: %.c $(wildcard include/halloc/*.h analyzer/*.h tracer/*.h agent/*.h cli/*.h)
	@mkdir -p $(dir $@)
	@$(if $(Q),echo "  CC      $<")
	$(Q)$(CC) $(CPPFLAGS) $(CFLAGS) -c $< -o $@

$(ANALYZER_LIB): $(ANALYZER_OBJ)
	@mkdir -p $(dir $@)
	@$(if $(Q),echo "  AR      $@")
	$(Q)rm -f $@ && ar rcs $@ $^

$(TRACER_LIB): $(TRACER_OBJ)
	@mkdir -p $(dir $@)
	@$(if $(Q),echo "  AR      $@")
	$(Q)rm -f $@ && ar rcs $@ $^

# ---- the eBPF attach: libhalloc-bpf.a (agent/bpf/, halloc-trace -p/--bpf) ----
# CO-RE: vmlinux.h from the running kernel's BTF (made once), the BPF object
# compiled by clang, its skeleton by bpftool; the user side links libbpf.
# tests/bpf/driver.c drives the API for tests/e2e/bpf_run.
BPF_DIR    := $(BUILD)/bpf
BPF_SRC    := $(filter-out %.bpf.c,$(wildcard agent/bpf/*.c))
BPF_OBJ    := $(BPF_SRC:%.c=$(BUILD)/obj/%.o)
BPF_LIB    := $(BUILD)/lib/libhalloc-bpf.a
BPF_LIBS   := -lbpf -lelf -lz
BPF_SKEL   := $(BPF_DIR)/halloc.skel.h
BPF_DRIVER := $(BUILD)/tests/halloc-bpf-driver

all: $(BPF_LIB) $(BPF_DRIVER)

$(BPF_DIR)/vmlinux.h:
	@mkdir -p $(dir $@)
	@$(if $(Q),echo "  GEN     $@")
	$(Q)bpftool btf dump file /sys/kernel/btf/vmlinux format c > $@.tmp && mv $@.tmp $@

$(BPF_DIR)/halloc.bpf.o: agent/bpf/halloc.bpf.c agent/bpf/halloc.h include/halloc/log.h $(BPF_DIR)/vmlinux.h
	@$(if $(Q),echo "  CLANG   $<")
	$(Q)clang -g -O2 -target bpf -mcpu=v3 -D__TARGET_ARCH_x86 -I$(BPF_DIR) -Iinclude -Wall -Werror -c $< -o $@

$(BPF_SKEL): $(BPF_DIR)/halloc.bpf.o
	@$(if $(Q),echo "  GEN     $@")
	$(Q)bpftool gen skeleton $< name halloc_bpf > $@.tmp && mv $@.tmp $@

$(BUILD)/obj/agent/bpf/%.o: agent/bpf/%.c $(wildcard agent/bpf/*.h include/halloc/*.h agent/*.h) tracer/frames.h $(BPF_SKEL)
	@mkdir -p $(dir $@)
	@$(if $(Q),echo "  CC      $<")
	$(Q)$(CC) $(CPPFLAGS) -I$(BPF_DIR) $(CFLAGS) -c $< -o $@

$(BPF_LIB): $(BPF_OBJ)
	@mkdir -p $(dir $@)
	@$(if $(Q),echo "  AR      $@")
	$(Q)rm -f $@ && ar rcs $@ $^

$(BPF_DRIVER): tests/bpf/driver.c agent/bpf/attach.h $(BPF_LIB) $(TRACER_LIB) $(ANALYZER_LIB)
	@mkdir -p $(dir $@)
	@$(if $(Q),echo "  LD      $@")
	$(Q)$(CC) $(CPPFLAGS) $(CFLAGS) -o $@ $< $(BPF_LIB) $(TRACER_LIB) $(ANALYZER_LIB) $(BPF_LIBS) $(ANALYZER_LIBS)
# ---- end of the eBPF attach --------------------------------------------------

$(BUILD)/bin/halloc-trace: $(BUILD)/obj/cli/halloc-trace.o $(BPF_LIB) $(TRACER_LIB) $(ANALYZER_LIB)
	@mkdir -p $(dir $@)
	@$(if $(Q),echo "  LD      $@")
	$(Q)$(CC) -o $@ $^ $(call STATIC_LIBS,-lbpf)

$(BUILD)/bin/halloc-report: $(BUILD)/obj/cli/halloc-report.o $(ANALYZER_LIB)
	@mkdir -p $(dir $@)
	@$(if $(Q),echo "  LD      $@")
	$(Q)$(CC) -o $@ $^ $(call STATIC_LIBS)

# Examples are built the way users build: -O0 -g, no frame pointers forced.
$(BUILD)/examples/%: examples/%.c
	@mkdir -p $(dir $@)
	@$(if $(Q),echo "  CC      $<")
	$(Q)$(CC) -O0 -g -o $@ $< -pthread

$(API_EXAMPLES:%=$(BUILD)/examples/%): $(BUILD)/examples/%: examples/%.c include/halloc/halloc.h $(AGENT_LIB)
	@mkdir -p $(dir $@)
	@$(if $(Q),echo "  CC      $<")
	$(Q)$(CC) -O0 -g -o $@ $< -pthread $(LINK_HALLOC)

$(API_BIN): $(API_SRC) include/halloc/halloc.h $(AGENT_LIB)
	@mkdir -p $(dir $@)
	@$(if $(Q),echo "  LD      $@")
	$(Q)$(CC) $(CPPFLAGS) $(CFLAGS) -o $@ $(API_SRC) -lcriterion -pthread $(LINK_HALLOC)

$(UNIT_BIN): $(UNIT_SRC) $(ANALYZER_LIB) $(TRACER_LIB)
	@mkdir -p $(dir $@)
	@$(if $(Q),echo "  LD      $@")
	$(Q)$(CC) $(CPPFLAGS) $(CFLAGS) -o $@ $(UNIT_SRC) $(TRACER_LIB) $(ANALYZER_LIB) -lcriterion $(ANALYZER_LIBS)

deps:
	sh scripts/install-deps.sh

# Unit tests keep their symbol and debug-file caches in the build tree, not
# in the user's ~/.cache/halloc (each rebuilt test binary is a new
# symbolizer); e2e cases run with a HOME of their own.
TEST_ENV := HALLOC_CACHE_DIR=$(abspath $(BUILD))/tests/cache

unit: $(UNIT_BIN) $(API_BIN)
	$(TEST_ENV) $(UNIT_BIN) --jobs 2
	$(TEST_ENV) $(API_BIN) --jobs 1

e2e: all
	tests/e2e/run
	tests/e2e/bpf_run

check: all unit e2e

example: all
	$(BUILD)/bin/halloc-trace -o $(BUILD)/leaky.hlog $(BUILD)/examples/leaky

bench: all
	../shared/bench/run

install: all
	install -d $(DESTDIR)$(PREFIX)/bin $(DESTDIR)$(PREFIX)/lib \
	    $(DESTDIR)$(PREFIX)/include/halloc $(DESTDIR)$(PREFIX)/share/man/man1 \
	    $(DESTDIR)$(PREFIX)/share/man/man3 $(DESTDIR)$(PREFIX)/share/man/man5
	install -m 755 $(BINS) $(DESTDIR)$(PREFIX)/bin
	install -m 755 $(AGENT_LIB) $(DESTDIR)$(PREFIX)/lib
	install -m 644 include/halloc/*.h $(DESTDIR)$(PREFIX)/include/halloc
	install -m 644 man/*.1 $(DESTDIR)$(PREFIX)/share/man/man1
	install -m 644 man/*.3 $(DESTDIR)$(PREFIX)/share/man/man3
	install -m 644 man/*.5 $(DESTDIR)$(PREFIX)/share/man/man5

check-style:
	cppcheck --quiet --error-exitcode=1 --enable=warning,performance,portability \
	    --suppress=missingIncludeSystem -Iinclude -I. agent analyzer tracer cli

clean:
	rm -rf $(BUILD)
