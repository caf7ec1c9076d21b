# kmilter - S/MIME gateway milter.  One plain GNU Makefile, no autotools.

VERSION    = 0.1.0

PREFIX     ?= /usr/local
SBINDIR    ?= $(PREFIX)/sbin
SYSCONFDIR ?= $(PREFIX)/etc
MANDIR     ?= $(PREFIX)/share/man
DATADIR    ?= $(PREFIX)/share/kmilter
LIBEXECDIR ?= $(PREFIX)/libexec/kmilter
UNITDIR    ?= $(PREFIX)/lib/systemd/system
TMPFILESDIR ?= $(PREFIX)/lib/tmpfiles.d
DEFAULTDIR ?= $(SYSCONFDIR)/default
INSTALL    ?= install

CC         ?= cc
PKG_CONFIG ?= pkg-config
CFLAGS     ?= -O2 -g

PKG_CFLAGS   := $(shell $(PKG_CONFIG) --cflags openssl hiredis libconfig 2>/dev/null)
PKG_LIBS     := $(shell $(PKG_CONFIG) --libs openssl hiredis libconfig 2>/dev/null)
MILTER_CFLAGS ?= $(shell $(PKG_CONFIG) --cflags milter 2>/dev/null)
MILTER_LIBS   ?= $(shell $(PKG_CONFIG) --libs milter 2>/dev/null || echo -lmilter)
# LDAP directories (keyclient/ldapdir.c): OpenLDAP's client library
LDAP_LIBS     ?= -lldap -llber
# libunbound: DNS SMIMEA lookups with DNSSEC validation (keyclient/smimea.c)
UNBOUND_LIBS ?= $(shell $(PKG_CONFIG) --libs libunbound 2>/dev/null || echo -lunbound)

WARNINGS = -Wall -Wextra -Wstrict-prototypes -Wmissing-prototypes -Wshadow \
	   -Wwrite-strings -Wpointer-arith -Wformat=2 -Wno-unused-parameter
ifeq ($(WERROR),1)
WARNINGS += -Werror
endif

# SANITIZE=1 builds everything (daemon, tools, tests) with ASan+UBSan.
# FUZZ=1 builds the library with clang for the libFuzzer targets.
ifeq ($(FUZZ),1)
CC        = clang
SAN_FLAGS = -fsanitize=fuzzer-no-link,address,undefined -fno-omit-frame-pointer
BUILD     = build-fuzz
else ifeq ($(SANITIZE),1)
SAN_FLAGS = -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined
BUILD     = build-asan
else
BUILD     = build
endif

REAL_CFLAGS = -std=c11 -D_GNU_SOURCE -DKMILTER_VERSION='"$(VERSION)"' \
	      -Ibase -Iconf -Ikeyclient -Imilter -Ikmctl $(WARNINGS) $(SAN_FLAGS) \
	      $(PKG_CFLAGS) $(MILTER_CFLAGS) $(CFLAGS) -MMD -MP
REAL_LDFLAGS = $(SAN_FLAGS) $(LDFLAGS)
LIBS = $(PKG_LIBS) $(MILTER_LIBS) $(LDAP_LIBS) $(UNBOUND_LIBS) -lpthread

# The layers, from the bottom: base (log, secure memory, status codes,
# clock, paths, control protocol), conf, keyclient, then the programs:
# milter (the daemon) and kmctl (the admin tool).  Each layer is a library
# of its own, linked top to bottom, so a call that points up does not
# link; tests/tools/layercheck also refuses an #include that points up.
BASE_SRCS   = $(wildcard base/*.c)
CONF_SRCS   = $(wildcard conf/*.c)
KEY_SRCS    = $(wildcard keyclient/*.c)
MILTER_SRCS = $(filter-out milter/main.c, $(wildcard milter/*.c))
KMCTL_SRCS  = $(wildcard kmctl/*.c)
LIB_SRCS    = $(BASE_SRCS) $(CONF_SRCS) $(KEY_SRCS) $(MILTER_SRCS)
LIB_OBJS    = $(LIB_SRCS:%.c=$(BUILD)/obj/%.o)
KMCTL_OBJS  = $(KMCTL_SRCS:%.c=$(BUILD)/obj/%.o)
LAYER_LIBS  = $(BUILD)/libkmmilter.a $(BUILD)/libkmkey.a \
	      $(BUILD)/libkmconf.a $(BUILD)/libkmbase.a
UNIT_SRCS = $(wildcard tests/unit/test_*.c)
UNIT_BINS = $(UNIT_SRCS:tests/unit/%.c=$(BUILD)/tests/%)
TOOL_SRCS = $(wildcard tests/tools/*.c)
TOOL_BINS = $(TOOL_SRCS:tests/tools/%.c=$(BUILD)/tools/%)
FUZZ_SRCS = $(wildcard tests/fuzz/fuzz_*.c)
FUZZ_BINS = $(FUZZ_SRCS:tests/fuzz/%.c=$(BUILD)/fuzz/%)

KMILTER = $(BUILD)/kmilter
KMCTL   = $(BUILD)/kmctl

.PHONY: all test check check-asan unit bench soak fuzz fuzzers demo deps install uninstall deb clean tools

all: $(KMILTER) $(KMCTL) milter/kmilter kmctl/kmctl

# Convenience links so the programs are where the docs say they are.
milter/kmilter: $(KMILTER)
	ln -sf ../$(KMILTER) $@
kmctl/kmctl: $(KMCTL)
	ln -sf ../$(KMCTL) $@

$(BUILD)/libkmbase.a: $(BASE_SRCS:%.c=$(BUILD)/obj/%.o)
$(BUILD)/libkmconf.a: $(CONF_SRCS:%.c=$(BUILD)/obj/%.o)
$(BUILD)/libkmkey.a: $(KEY_SRCS:%.c=$(BUILD)/obj/%.o)
$(BUILD)/libkmmilter.a: $(MILTER_SRCS:%.c=$(BUILD)/obj/%.o)
$(LAYER_LIBS):
	@mkdir -p $(@D)
	rm -f $@
	$(AR) rcs $@ $^

$(KMILTER): $(BUILD)/obj/milter/main.o $(LAYER_LIBS)
	$(CC) $(REAL_LDFLAGS) -o $@ $^ $(LIBS)

$(KMCTL): $(KMCTL_OBJS) $(BUILD)/libkmkey.a $(BUILD)/libkmconf.a $(BUILD)/libkmbase.a
	$(CC) $(REAL_LDFLAGS) -o $@ $^ $(LIBS)

$(BUILD)/obj/%.o: %.c
	@mkdir -p $(@D)
	$(CC) $(REAL_CFLAGS) -c -o $@ $<

# Every unit test links the shared fixture (test PKI, fake key store).
FIXTURE_OBJ = $(BUILD)/obj/tests/unit/fixture.o
.SECONDARY: $(FIXTURE_OBJ)
$(BUILD)/tests/%: tests/unit/%.c tests/unit/harness.h $(FIXTURE_OBJ) $(LAYER_LIBS)
	@mkdir -p $(@D)
	$(CC) $(REAL_CFLAGS) -Itests/unit $(REAL_LDFLAGS) -o $@ $< $(FIXTURE_OBJ) \
	    $(LAYER_LIBS) $(LIBS)

$(BUILD)/tools/%: tests/tools/%.c $(LAYER_LIBS)
	@mkdir -p $(@D)
	$(CC) $(REAL_CFLAGS) $(REAL_LDFLAGS) -o $@ $< $(LAYER_LIBS) $(LIBS)

$(BUILD)/fuzz/%: tests/fuzz/%.c $(LAYER_LIBS)
	@mkdir -p $(@D)
	$(CC) $(REAL_CFLAGS) -fsanitize=fuzzer,address,undefined -o $@ $< $(LAYER_LIBS) $(LIBS)

fuzzers: $(FUZZ_BINS)
tools: $(TOOL_BINS)
unit: $(UNIT_BINS)

deps:
	@tests/install-deps

# Everything: unit, milter protocol and end-to-end tests through the lab.
test: deps
	$(MAKE) all unit tools
	tests/run --build $(BUILD) all

# Quick loop: unit and milter protocol tests only.
check: all unit tools
	tests/run --build $(BUILD) check

# Unit and protocol tests, then mail through the lab (sign, encrypt,
# decrypt, verify) with the sanitized daemon: tests/asan/t-asan.py.
check-asan:
	$(MAKE) SANITIZE=1 all unit tools
	tests/run --build build-asan asan

# Side-by-side throughput, latency, key lookups and crypto; memory under
# stalled sessions and big messages, without and with the budgets; then the
# soak (SOAK_SECONDS, default 600, of mixed mail, every message accounted for).
bench: deps
	$(MAKE) all tools
	tests/bench/run --build $(BUILD)
	tests/bench/memory --build $(BUILD)
	tests/bench/soak --build $(BUILD)

soak: deps
	$(MAKE) all tools
	tests/bench/soak --build $(BUILD)

# Each libFuzzer target for FUZZ_SECONDS (default 60) from its seed corpus.
fuzz: deps
	$(MAKE) FUZZ=1 fuzzers
	tests/fuzz/run

demo: deps
	$(MAKE) all
	tests/demo

# install: the programs, the man pages, the configuration (never over an
# existing one), the systemd unit and tmpfiles.d entry with this install's
# paths (kmilter.service, kmctl-maintain.service and .timer), and
# SYSCONFDIR/default/kmilter.  As root with DESTDIR empty it also
# does the system set-up (contrib/kmilter-setup: the user kmilter, its
# directories, the configuration root:kmilter 0640, /run/kmilter); run
# again, it changes nothing.  The Debian package (make deb) does the same
# set-up in its postinst.
UNIT_SED = -e 's|/usr/local/sbin/|$(SBINDIR)/|g' -e 's|/etc/kmilter/|$(SYSCONFDIR)/kmilter/|g' \
	   -e 's|/etc/default/kmilter|$(DEFAULTDIR)/kmilter|g'
install: all
	$(INSTALL) -d $(DESTDIR)$(SBINDIR) $(DESTDIR)$(SYSCONFDIR)/kmilter \
		$(DESTDIR)$(MANDIR)/man5 $(DESTDIR)$(MANDIR)/man8 $(DESTDIR)$(DATADIR) \
		$(DESTDIR)$(LIBEXECDIR) \
		$(DESTDIR)$(UNITDIR) $(DESTDIR)$(TMPFILESDIR) $(DESTDIR)$(DEFAULTDIR)
	$(INSTALL) -m 0755 $(KMILTER) $(DESTDIR)$(SBINDIR)/kmilter
	$(INSTALL) -m 0755 $(KMCTL) $(DESTDIR)$(SBINDIR)/kmctl
	$(INSTALL) -m 0644 conf/kmilter.conf $(DESTDIR)$(DATADIR)/kmilter.conf.sample
	[ -e $(DESTDIR)$(SYSCONFDIR)/kmilter/kmilter.conf ] || \
		$(INSTALL) -m 0640 conf/kmilter.conf $(DESTDIR)$(SYSCONFDIR)/kmilter/kmilter.conf
	[ -e $(DESTDIR)$(DEFAULTDIR)/kmilter ] || \
		$(INSTALL) -m 0644 contrib/default/kmilter $(DESTDIR)$(DEFAULTDIR)/kmilter
	$(INSTALL) -m 0755 contrib/kmilter-setup $(DESTDIR)$(LIBEXECDIR)/kmilter-setup
	sed $(UNIT_SED) contrib/systemd/kmilter.service > $(BUILD)/kmilter.service
	$(INSTALL) -m 0644 $(BUILD)/kmilter.service $(DESTDIR)$(UNITDIR)/kmilter.service
	sed $(UNIT_SED) contrib/systemd/kmctl-maintain.service > $(BUILD)/kmctl-maintain.service
	$(INSTALL) -m 0644 $(BUILD)/kmctl-maintain.service \
		$(DESTDIR)$(UNITDIR)/kmctl-maintain.service
	$(INSTALL) -m 0644 contrib/systemd/kmctl-maintain.timer \
		$(DESTDIR)$(UNITDIR)/kmctl-maintain.timer
	$(INSTALL) -m 0644 contrib/tmpfiles.d/kmilter.conf $(DESTDIR)$(TMPFILESDIR)/kmilter.conf
	$(INSTALL) -m 0644 conf/kmilter.conf.5 $(DESTDIR)$(MANDIR)/man5/kmilter.conf.5
	for m in milter/kmilter.8 kmctl/kmctl.8 keyclient/kmilter-hook.8; do \
		[ ! -f $$m ] || $(INSTALL) -m 0644 $$m $(DESTDIR)$(MANDIR)/man8/; done
	if [ -z "$(DESTDIR)" ] && [ "$$(id -u)" = 0 ]; then \
		contrib/kmilter-setup $(SYSCONFDIR)/kmilter/kmilter.conf \
			$(TMPFILESDIR)/kmilter.conf; \
		! command -v systemctl >/dev/null || [ ! -d /run/systemd/system ] || \
			systemctl daemon-reload; \
	fi

# uninstall: what install put in place, except the configuration, the
# default file, the user and the state (keys): remove those by hand.
uninstall:
	rm -f $(DESTDIR)$(SBINDIR)/kmilter $(DESTDIR)$(SBINDIR)/kmctl \
		$(DESTDIR)$(DATADIR)/kmilter.conf.sample \
		$(DESTDIR)$(LIBEXECDIR)/kmilter-setup \
		$(DESTDIR)$(UNITDIR)/kmilter.service \
		$(DESTDIR)$(UNITDIR)/kmctl-maintain.service \
		$(DESTDIR)$(UNITDIR)/kmctl-maintain.timer \
		$(DESTDIR)$(TMPFILESDIR)/kmilter.conf \
		$(DESTDIR)$(MANDIR)/man5/kmilter.conf.5 \
		$(DESTDIR)$(MANDIR)/man8/kmilter.8 $(DESTDIR)$(MANDIR)/man8/kmctl.8 \
		$(DESTDIR)$(MANDIR)/man8/kmilter-hook.8
	-rmdir $(DESTDIR)$(DATADIR) $(DESTDIR)$(LIBEXECDIR) 2>/dev/null

# deb: ../kmilter_VERSION_ARCH.deb from debian/ (dpkg-buildpackage, binary
# only, unsigned); DEB_OUT names another directory for the results.
DEB_OUT ?= ..
deb:
	dpkg-buildpackage -b -us -uc
	[ "$(DEB_OUT)" = ".." ] || mv ../kmilter_$(VERSION)_*.deb ../kmilter-dbgsym_$(VERSION)_*.deb \
		../kmilter_$(VERSION)_*.buildinfo ../kmilter_$(VERSION)_*.changes $(DEB_OUT)/

clean:
	rm -rf build build-asan build-fuzz milter/kmilter kmctl/kmctl

-include $(LIB_OBJS:.o=.d) $(KMCTL_OBJS:.o=.d) $(BUILD)/obj/milter/main.d $(FIXTURE_OBJ:.o=.d)
