# kioskd -- build, test, demo.  GNU make.
#
#   make            build the daemon, kioskctl and the HAL plugins into build/
#   make demo       install what is missing, build, run a scripted kiosk session
#   make check      install what is missing, build, run every test (also under ASan+UBSan)
#   make bench      run the benchmarks in tests/bench/
#   make fuzz       run each libFuzzer target for FUZZ_SECONDS (default 60)
#   make install    install into $(DESTDIR)$(PREFIX)
#
# SAN=1 builds with AddressSanitizer + UndefinedBehaviorSanitizer into build-asan/.

VERSION   := 0.1.0
PREFIX    ?= /usr/local
SYSCONFDIR ?= /etc
LIBDIR    ?= $(PREFIX)/lib
PLUGINDIR ?= $(LIBDIR)/kioskd/hal
INCLUDEDIR ?= $(PREFIX)/include
UDEVRULESDIR ?= $(SYSCONFDIR)/udev/rules.d
PYTHON    ?= /usr/bin/python3

PKGS      := libevent libevent_pthreads jansson sqlite3 libcurl openssl libsystemd inih libusb-1.0
TEST_PKGS := cmocka

ifeq ($(SAN),1)
BUILD     ?= build-asan
SANFLAGS  := -fsanitize=address,undefined -fno-sanitize-recover=undefined -fno-omit-frame-pointer
OPT       := -O1
else
BUILD     ?= build
SANFLAGS  :=
OPT       := -O2
endif

CC        ?= cc
WARN      := -Wall -Wextra -Werror -Wshadow -Wstrict-prototypes -Wmissing-prototypes \
             -Wno-missing-field-initializers
PKG_CFLAGS = $(shell pkg-config --cflags $(PKGS) 2>/dev/null)
PKG_LIBS   = $(shell pkg-config --libs $(PKGS) 2>/dev/null)
CFLAGS    ?= $(OPT) -g
ALL_CFLAGS = -std=gnu11 -D_GNU_SOURCE $(WARN) $(CFLAGS) $(SANFLAGS) -fPIC -MMD -MP \
             -Ihal/include -Isrc $(PKG_CFLAGS) \
             -DKIOSKD_VERSION='"$(VERSION)"' -DKIOSKD_PLUGINDIR='"$(PLUGINDIR)"' \
             -DKIOSKD_SYSCONFDIR='"$(SYSCONFDIR)"'
ALL_LDFLAGS = $(LDFLAGS) $(SANFLAGS)

CORE_SRCS := $(filter-out src/kioskd.c src/kioskctl.c src/kclient.c,$(wildcard src/*.c))
CORE_OBJS := $(CORE_SRCS:%.c=$(BUILD)/%.o)
PLUGINS   := $(notdir $(patsubst %/,%,$(filter-out hal/include/,$(wildcard hal/*/))))
PLUGIN_SOS := $(PLUGINS:%=$(BUILD)/hal/%.so)
TESTPLUG_SRCS := $(wildcard tests/plugins/*.c)
TESTPLUG_SOS := $(TESTPLUG_SRCS:tests/plugins/%.c=$(BUILD)/tests/plugins/%.so)
UNIT_SRCS := $(wildcard tests/unit/test_*.c)
UNIT_BINS := $(UNIT_SRCS:tests/unit/%.c=$(BUILD)/tests/%)
BENCH_SRCS := $(wildcard tests/bench/*.c)
BENCH_BINS := $(BENCH_SRCS:tests/bench/%.c=$(BUILD)/tests/bench/%)
# helper programs the tests start (virtual devices, listeners)
TOOL_SRCS := $(wildcard tests/tools/*.c)
TOOL_BINS := $(TOOL_SRCS:tests/tools/%.c=$(BUILD)/tests/tools/%)

# A test, bench, tool or fuzz program tests/<dir>/NAME.c may list extra
# sources (plugin files it tests) in NAME.srcs and pkg-config packages in
# NAME.pkgs, each on one line.
extra_srcs = $(if $(wildcard $(1).srcs),$(shell cat $(1).srcs))
extra_pkgs = $(if $(wildcard $(1).pkgs),$(shell pkg-config --cflags --libs $$(cat $(1).pkgs)))

.PHONY: all demo check test unit system endpoint-test fuzz fuzz-smoke soak bench install clean deps deps-test \
        format lint udev-rules

all: deps $(BUILD)/kioskd $(BUILD)/kioskctl $(PLUGIN_SOS) links

# Top-level links so the fixed command line './kioskd --config conf/kioskd.conf' works.
links: $(BUILD)/kioskd $(BUILD)/kioskctl
	@[ "$(BUILD)" != build ] || { ln -sf build/kioskd kioskd; ln -sf build/kioskctl kioskctl; }

# Install missing Debian packages (needs root; a no-op when all are present).
deps:
	@pkg-config --exists $(PKGS) || .ci/install-deps build
deps-test:
	@.ci/install-deps test --if-missing

$(BUILD)/%.o: %.c
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CFLAGS) -c $< -o $@

$(BUILD)/libkioskd.a: $(CORE_OBJS)
	@rm -f $@
	ar rcs $@ $^

$(BUILD)/libkclient.a: $(BUILD)/src/kclient.o
	@rm -f $@
	ar rcs $@ $^

# libcurl is not linked: src/curlso.c loads it when an endpoint needs it
$(BUILD)/kioskd: $(BUILD)/src/kioskd.o $(BUILD)/libkioskd.a
	$(CC) $(ALL_LDFLAGS) -o $@ $(filter %.o %.a,$^) $(filter-out -lcurl,$(PKG_LIBS)) -ldl -lpthread -lm

$(BUILD)/kioskctl: $(BUILD)/src/kioskctl.o $(BUILD)/libkclient.a
	$(CC) $(ALL_LDFLAGS) -o $@ $^ $(shell pkg-config --libs jansson)

# A plugin names the pkg-config packages it links in hal/<name>/pkgs (one
# line); its own headers (hal/<name>/*.h) are dependencies too.
.SECONDEXPANSION:
$(BUILD)/hal/%.so: $$(wildcard hal/%/*.c hal/%/*.h hal/%/pkgs) $(wildcard hal/include/kiosk/*.h)
	@mkdir -p $(dir $@)
	$(CC) $(filter-out -MMD -MP,$(ALL_CFLAGS)) -fvisibility=hidden -shared -o $@ \
	    $(filter %.c,$^) $(ALL_LDFLAGS) $(shell pkg-config --libs jansson) \
	    $(if $(wildcard hal/$*/pkgs),$(shell pkg-config --cflags --libs $$(cat hal/$*/pkgs))) -lm

$(BUILD)/tests/plugins/%.so: tests/plugins/%.c hal/include/kiosk/hal.h
	@mkdir -p $(dir $@)
	$(CC) $(filter-out -MMD -MP -Werror,$(ALL_CFLAGS)) -fvisibility=hidden -shared -o $@ $< \
	    $(ALL_LDFLAGS)

$(BUILD)/tests/test_%: tests/unit/test_%.c $$(call extra_srcs,tests/unit/test_$$*) \
		$$(wildcard tests/unit/test_%.pkgs) $(BUILD)/libkioskd.a $(BUILD)/libkclient.a
	@mkdir -p $(dir $@)
	$(CC) $(filter-out -MMD -MP,$(ALL_CFLAGS)) -o $@ $(filter %.c %.a,$^) $(ALL_LDFLAGS) \
	    $(PKG_LIBS) $(call extra_pkgs,tests/unit/test_$*) \
	    $(shell pkg-config --cflags --libs cmocka) -ldl -lpthread -lm

$(BUILD)/tests/bench/%: tests/bench/%.c $$(call extra_srcs,tests/bench/$$*) \
		$$(wildcard tests/bench/%.pkgs) $(BUILD)/libkclient.a
	@mkdir -p $(dir $@)
	$(CC) $(filter-out -MMD -MP,$(ALL_CFLAGS)) -o $@ $(filter %.c %.a,$^) $(ALL_LDFLAGS) \
	    $(PKG_LIBS) $(call extra_pkgs,tests/bench/$*) -lpthread -lm

$(BUILD)/tests/tools/%: tests/tools/%.c $$(call extra_srcs,tests/tools/$$*) $$(wildcard tests/tools/%.pkgs)
	@mkdir -p $(dir $@)
	$(CC) $(filter-out -MMD -MP,$(ALL_CFLAGS)) -o $@ $(filter %.c,$^) $(ALL_LDFLAGS) \
	    $(call extra_pkgs,tests/tools/$*) -lm

tests: all $(TESTPLUG_SOS) $(UNIT_BINS) $(BENCH_BINS) $(TOOL_BINS)

# A hung test must fail the run, not eat CI's time: every binary and the
# system suite run under a generous timeout.
unit: tests
	@set -e; for t in $(UNIT_BINS); do echo "== $$t"; timeout -k 10 300 $$t; done

system: tests
	KIOSKD_BUILD=$(abspath $(BUILD)) timeout -k 10 1200 \
	    $(PYTHON) -m pytest -q -p no:cacheprovider tests/system

test: unit system

# The long fault soaks, outside make check (which runs 200 kill -9 cycles
# and 150 power cuts): kill -9 of the real daemon mid-stream, then power
# cuts through the SQLite VFS shim, SOAK_CYCLES of each.  About 8 minutes
# for 1500 kill cycles, as the database grows every cycle.
SOAK_CYCLES ?= 1500
soak: tests
	KIOSKD_BUILD=$(abspath $(BUILD)) KIOSKD_SOAK_CYCLES=$(SOAK_CYCLES) timeout -k 10 7200 \
	    $(PYTHON) -m pytest -q -s -p no:cacheprovider tests/system/test_crash.py -k kill9_soak
	POWERLOSS_CYCLES=$(SOAK_CYCLES) timeout -k 10 7200 $(BUILD)/tests/test_powerloss

# The reference endpoint's own tests (Python only: run once, not per build).
endpoint-test:
	$(PYTHON) -m pytest -q -p no:cacheprovider tests/endpoint

# The whole suite twice: optimised, then under ASan+UBSan; then the fuzz smoke runs.
check: deps deps-test
	$(MAKE) lint
	$(MAKE) endpoint-test
	$(MAKE) BUILD=build test
	ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
	    $(MAKE) SAN=1 test
	$(MAKE) fuzz-smoke
	@echo "make check: all suites passed"

demo: deps all
	@.ci/install-deps demo
	$(PYTHON) tests/demo.py --build $(abspath $(BUILD))

bench: deps
	$(MAKE) all tests
	$(PYTHON) tests/bench/run.py --build $(abspath $(BUILD))

FUZZ_SECONDS ?= 60
FUZZ_BUILD := build-fuzz
FUZZ_SRCS := $(wildcard tests/fuzz/fuzz_*.c)
FUZZ_BINS := $(FUZZ_SRCS:tests/fuzz/%.c=$(FUZZ_BUILD)/%)
FUZZ_FLAGS := -std=gnu11 -D_GNU_SOURCE -g -O1 -fsanitize=fuzzer,address,undefined -Ihal/include -Isrc \
              $(PKG_CFLAGS) -DKIOSKD_VERSION='"$(VERSION)"' -DKIOSKD_PLUGINDIR='"$(PLUGINDIR)"' \
              -DKIOSKD_SYSCONFDIR='"$(SYSCONFDIR)"' -DKIOSKD_FUZZING=1

$(FUZZ_BUILD)/fuzz_%: tests/fuzz/fuzz_%.c $(CORE_SRCS) $$(call extra_srcs,tests/fuzz/fuzz_$$*)
	@mkdir -p $(dir $@)
	clang $(FUZZ_FLAGS) -o $@ $^ $(PKG_LIBS) $(call extra_pkgs,tests/fuzz/fuzz_$*) -ldl -lpthread -lm

fuzz: deps deps-test $(FUZZ_BINS)
	@set -e; for f in $(FUZZ_BINS); do n=$$(basename $$f); mkdir -p $(FUZZ_BUILD)/corpus/$$n; \
	  echo "== $$n for $(FUZZ_SECONDS)s"; \
	  $$f -max_total_time=$(FUZZ_SECONDS) -max_len=4096 $(FUZZ_BUILD)/corpus/$$n tests/fuzz/corpus/$$n; done

fuzz-smoke:
	$(MAKE) fuzz FUZZ_SECONDS=20

install: all
	install -d $(DESTDIR)$(PREFIX)/sbin $(DESTDIR)$(PREFIX)/bin $(DESTDIR)$(PLUGINDIR) \
	    $(DESTDIR)$(INCLUDEDIR)/kiosk $(DESTDIR)$(LIBDIR)/pkgconfig $(DESTDIR)$(SYSCONFDIR)/kioskd/conf.d
	install -m 0755 $(BUILD)/kioskd $(DESTDIR)$(PREFIX)/sbin/kioskd
	install -m 0755 $(BUILD)/kioskctl $(DESTDIR)$(PREFIX)/bin/kioskctl
	install -m 0755 $(PLUGIN_SOS) $(DESTDIR)$(PLUGINDIR)/
	install -m 0644 hal/include/kiosk/hal.h hal/include/kiosk/hex.h $(DESTDIR)$(INCLUDEDIR)/kiosk/
	install -D -m 0644 systemd/70-kioskd.rules $(DESTDIR)$(UDEVRULESDIR)/70-kioskd.rules
	install -d $(DESTDIR)$(PREFIX)/share/doc/kioskd/examples
	install -m 0644 conf/examples/*.conf $(DESTDIR)$(PREFIX)/share/doc/kioskd/examples/
	sed -e 's|@PREFIX@|$(PREFIX)|;s|@INCLUDEDIR@|$(INCLUDEDIR)|;s|@PLUGINDIR@|$(PLUGINDIR)|;s|@VERSION@|$(VERSION)|' \
	    hal/kiosk-hal.pc.in > $(DESTDIR)$(LIBDIR)/pkgconfig/kiosk-hal.pc
	[ -e $(DESTDIR)$(SYSCONFDIR)/kioskd/kioskd.conf ] || \
	    install -m 0644 conf/kioskd.conf $(DESTDIR)$(SYSCONFDIR)/kioskd/kioskd.conf

# systemd/70-kioskd.rules comes from the plugins' match tables (a test
# checks the committed file is current).
UDEV_RULES ?= systemd/70-kioskd.rules
udev-rules: $(BUILD)/kioskd $(PLUGIN_SOS)
	$(BUILD)/kioskd --udev-rules --plugin-path $(BUILD)/hal > $(UDEV_RULES).tmp
	mv $(UDEV_RULES).tmp $(UDEV_RULES)

FORMAT_FILES = $(wildcard src/*.[ch] hal/include/kiosk/*.h hal/*/*.[ch] tests/plugins/*.c tests/tools/*.c)

format:
	clang-format -i $(FORMAT_FILES)

# clang-format clean and cppcheck clean (part of make check)
lint:
	clang-format --dry-run --Werror $(FORMAT_FILES)
	cppcheck --quiet --error-exitcode=1 --enable=warning,performance,portability \
	    --inline-suppr -D__GNUC__ -D_GNU_SOURCE \
	    --include=/usr/include/x86_64-linux-gnu/sys/queue.h --include=/usr/include/jansson.h \
	    -Ihal/include -Isrc src hal

clean:
	rm -rf build build-asan build-fuzz kioskd kioskctl

-include $(shell find build build-asan -name '*.d' 2>/dev/null)
