# SPDX-License-Identifier: MPL-2.0
# byok: the one build file. Non-recursive except for build variants
# (`make asan` re-enters with O=build/asan SAN=1). Quiet unless V=1.
#
#   make            build/vault-plugin-secrets-byok, build/byok-agent
#   make deps       install the Debian packages the build and tests need
#   make check      the whole suite; ends with "N passed, N failed"
#   make asan       the same binaries with ASan+UBSan under build/asan
#   make bench      benchmarks (figures go to README.md by hand)
#   make demo       build, start plugin under Vault (or the stand-in), agent, mock provider; one keyless call
#   make install    PREFIX=/usr/local DESTDIR= PLUGIN_DIR=/etc/vault/plugins; `make uninstall`
#   make deb        build/deb/byok-agent_*.deb and vault-plugin-secrets-byok_*.deb (dpkg-deb)
#   make format / lint / clean

O ?= build
GEN := build/gen
GOBUILD := build/go
# The one version: both binaries' --version (-DBYOK_VERSION), the plugin's version as
# Vault sees it (v$(VERSION)), its installed file name, the man page and the packages.
VERSION := 0.1.0

ifeq ($(V),1)
Q :=
else
Q := @
endif

CC ?= cc
WARN := -Wall -Wextra -Wshadow -Wmissing-prototypes -Wformat=2 -Wvla -Wno-unused-parameter
ifeq ($(CI),true)
WARN += -Werror
endif
CPPFLAGS_ALL := -I. -I$(GEN) -D_GNU_SOURCE -DBYOK_VERSION=\"$(VERSION)\" -MMD -MP
CFLAGS_ALL := -std=gnu11 -g -O2 -fPIE -fstack-protector-strong -D_FORTIFY_SOURCE=2 $(WARN)
LDFLAGS_ALL := -pie -Wl,-z,relro,-z,now
ifeq ($(SAN),1)
CFLAGS_ALL := -std=gnu11 -g -O1 -fno-omit-frame-pointer -fsanitize=address,undefined \
	-fno-sanitize-recover=undefined $(WARN) $(CFLAGS_EXTRA)
LDFLAGS_ALL := -fsanitize=address,undefined
endif

# ---- generated protobuf C ---------------------------------------------------
PROTOS := sdk/plugin/pb/backend.proto sdk/logical/identity.proto sdk/logical/plugin.proto \
	sdk/logical/event.proto sdk/logical/version.proto sdk/helper/pluginutil/multiplexing.proto \
	plugin/grpc_broker.proto plugin/grpc_controller.proto plugin/grpc_stdio.proto \
	grpc/health/v1/health.proto
WKT := google/protobuf/timestamp.proto google/protobuf/struct.proto google/protobuf/empty.proto
PROTO_C := $(addprefix $(GEN)/,$(PROTOS:.proto=.pb-c.c) $(WKT:.proto=.pb-c.c))
PROTO_H := $(PROTO_C:.c=.h)

# Plain `make` builds both programs (the generated-code rule below comes first).
.DEFAULT_GOAL := all

$(GEN)/.stamp: $(addprefix proto/,$(PROTOS))
	@mkdir -p $(GEN)
	@echo "  PROTOC-C proto/"
	$(Q)protoc-c --c_out=$(GEN) -Iproto -I/usr/include $(addprefix proto/,$(PROTOS))
	$(Q)protoc-c --c_out=$(GEN) -I/usr/include $(addprefix /usr/include/,$(WKT))
	$(Q)touch $@
$(PROTO_C) $(PROTO_H): $(GEN)/.stamp

# ---- sources -------------------------------------------------------------------
COMMON_SRCS := $(sort $(wildcard common/*.c))
PLUGIN_SRCS := $(filter-out plugin/main.c,$(sort $(wildcard plugin/*.c)))
AGENT_SRCS := $(filter-out agent/main.c,$(sort $(wildcard agent/*.c)))
UNIT_SRCS := $(sort $(wildcard tests/unit/test_*.c))
TEST_HELPER_SRCS := $(sort $(wildcard tests/unit/helpers/*.c))
FUZZ_SRCS := $(sort $(wildcard tests/fuzz/fuzz_*.c))
BENCH_C_SRCS := $(sort $(wildcard tests/bench/*.c))

obj = $(patsubst %.c,$(O)/obj/%.o,$(1))
COMMON_OBJS := $(call obj,$(COMMON_SRCS))
PLUGIN_OBJS := $(call obj,$(PLUGIN_SRCS)) $(patsubst $(GEN)/%.c,$(O)/obj/gen/%.o,$(PROTO_C))
AGENT_OBJS := $(call obj,$(AGENT_SRCS))

PLUGIN := $(O)/vault-plugin-secrets-byok
AGENT := $(O)/byok-agent
UNIT_BINS := $(patsubst tests/unit/%.c,$(O)/tests/unit/%,$(UNIT_SRCS))
BENCH_C_BINS := $(patsubst tests/bench/%.c,$(O)/tests/bench/%,$(BENCH_C_SRCS))
FUZZ_BINS := $(patsubst tests/fuzz/%.c,$(O)/tests/fuzz/%,$(FUZZ_SRCS))

# ---- libraries -----------------------------------------------------------------
# The plugin is one file an administrator copies into Vault's plugin directory:
# gRPC, absl, protobuf-c, jansson and OpenSSL are linked statically from Debian's
# archives; only glibc (libc, libm) stays dynamic.
GRPC_STATIC := $(filter-out -pthread -ldl -lrt -latomic -Wl%,$(shell pkg-config --static --libs grpc 2>/dev/null))
# libstdc++ is linked statically too: only the parts gRPC uses are kept, which
# lowers idle RSS by about 0.6 MiB and leaves glibc as the only dependency.
PLUGIN_LIBS_STATIC := -Wl,-Bstatic -Wl,--start-group $(GRPC_STATIC) -lprotobuf-c -ljansson -lssl -lcrypto \
	-latomic -lstdc++ -Wl,--end-group -Wl,-Bdynamic -static-libgcc -lm -lpthread -ldl -lrt
PLUGIN_LIBS_DYNAMIC := $(shell pkg-config --libs grpc libprotobuf-c jansson openssl 2>/dev/null) -lpthread -lm
AGENT_LIBS := $(shell pkg-config --libs libevent libevent_pthreads libcurl jansson openssl 2>/dev/null) -lpthread -lm
UNIT_LIBS := $(shell pkg-config --libs cmocka 2>/dev/null) $(PLUGIN_LIBS_DYNAMIC) $(AGENT_LIBS)

ifeq ($(SAN),1)
PLUGIN_LIBS := $(PLUGIN_LIBS_DYNAMIC)
else
PLUGIN_LIBS := $(PLUGIN_LIBS_STATIC)
endif

# ---- rules -----------------------------------------------------------------------
# Objects built by pattern rules are not intermediates to delete: keeping them is
# what makes a second `make` do nothing.
.SECONDARY:
.PHONY: all plugin agent unit fuzzbins fuzz tools deps check asan bench demo format lint clean go vaultsim mockprovider \
	install install-plugin install-agent uninstall deb
all: plugin agent

plugin: $(PLUGIN)
agent: $(AGENT)
unit: $(UNIT_BINS)
fuzzbins: $(FUZZ_BINS)

$(O)/obj/%.o: %.c $(GEN)/.stamp
	@mkdir -p $(dir $@)
	@echo "  CC      $<"
	$(Q)$(CC) $(CPPFLAGS_ALL) $(CFLAGS_ALL) -c -o $@ $<

# Generated code is not ours to warn about.
$(O)/obj/gen/%.o: $(GEN)/%.c $(GEN)/.stamp
	@mkdir -p $(dir $@)
	@echo "  CC      $<"
	$(Q)$(CC) $(CPPFLAGS_ALL) $(filter-out -W%,$(CFLAGS_ALL)) -w -c -o $@ $<

$(O)/libcommon.a: $(COMMON_OBJS)
	$(Q)rm -f $@ && ar rcs $@ $^
$(O)/libplugin.a: $(PLUGIN_OBJS)
	$(Q)rm -f $@ && ar rcs $@ $^
$(O)/libagent.a: $(AGENT_OBJS)
	$(Q)rm -f $@ && ar rcs $@ $^

$(PLUGIN): $(call obj,plugin/main.c) $(O)/libplugin.a $(O)/libcommon.a
	@echo "  LINK    $@"
	$(Q)$(CC) $(LDFLAGS_ALL) -o $@ $^ $(PLUGIN_LIBS)

$(AGENT): $(call obj,agent/main.c) $(O)/libagent.a $(O)/libcommon.a
	@echo "  LINK    $@"
	$(Q)$(CC) $(LDFLAGS_ALL) -o $@ $^ $(AGENT_LIBS)

# Shared test helpers (tests/unit/helpers/) are linked into every unit test.
TEST_HELPER_OBJS = $(call obj,$(TEST_HELPER_SRCS))
$(O)/tests/unit/%: $(O)/obj/tests/unit/%.o $(TEST_HELPER_OBJS) $(O)/libplugin.a $(O)/libagent.a $(O)/libcommon.a
	@mkdir -p $(dir $@)
	@echo "  LINK    $@"
	$(Q)$(CC) $(LDFLAGS_ALL) -o $@ $< $(TEST_HELPER_OBJS) -Wl,--start-group $(O)/libplugin.a $(O)/libagent.a $(O)/libcommon.a -Wl,--end-group $(UNIT_LIBS)

$(O)/tests/bench/%: $(O)/obj/tests/bench/%.o $(O)/libplugin.a $(O)/libagent.a $(O)/libcommon.a
	@mkdir -p $(dir $@)
	@echo "  LINK    $@"
	$(Q)$(CC) $(LDFLAGS_ALL) -o $@ $< -Wl,--start-group $(O)/libplugin.a $(O)/libagent.a $(O)/libcommon.a -Wl,--end-group $(UNIT_LIBS)

# Fuzz targets linked with a replay driver (gcc; what `make check` runs over the corpora).
$(O)/tests/fuzz/%: $(O)/obj/tests/fuzz/%.o $(O)/obj/tests/fuzz/driver.o $(O)/libplugin.a $(O)/libagent.a $(O)/libcommon.a
	@mkdir -p $(dir $@)
	@echo "  LINK    $@"
	$(Q)$(CC) $(LDFLAGS_ALL) -o $@ $< $(O)/obj/tests/fuzz/driver.o -Wl,--start-group $(O)/libplugin.a $(O)/libagent.a $(O)/libcommon.a -Wl,--end-group $(UNIT_LIBS)

# Real fuzzing with libFuzzer (clang; needs Debian's libclang-rt-14-dev):
#   make fuzz FUZZ_TARGET=fuzz_fw_request FUZZ_SECONDS=60
FUZZ_TARGET ?= fuzz_fw_request
FUZZ_SECONDS ?= 60
fuzz:
	$(Q)$(MAKE) --no-print-directory O=build/fuzz SAN=1 CC=clang \
		CFLAGS_EXTRA=-fsanitize=fuzzer-no-link build/fuzz/libplugin.a build/fuzz/libagent.a build/fuzz/libcommon.a
	$(Q)clang -g -O1 -fsanitize=fuzzer,address,undefined $(CPPFLAGS_ALL) -o build/fuzz/$(FUZZ_TARGET) \
		tests/fuzz/$(FUZZ_TARGET).c -Wl,--start-group build/fuzz/libplugin.a build/fuzz/libagent.a \
		build/fuzz/libcommon.a -Wl,--end-group $(UNIT_LIBS)
	$(Q)mkdir -p build/fuzz/corpus-$(FUZZ_TARGET) && build/fuzz/$(FUZZ_TARGET) \
		-max_total_time=$(FUZZ_SECONDS) build/fuzz/corpus-$(FUZZ_TARGET) tests/fuzz/corpus/$(FUZZ_TARGET)

# ---- Go: the Vault stand-in and the mock provider (GOPATH mode, Debian's packages) ----
GOENV := GO111MODULE=off GOPATH=$(CURDIR)/$(GOBUILD):/usr/share/gocode GOCACHE=$(CURDIR)/build/go-cache GOFLAGS=-mod=mod
GO_PROTOS := sdk/plugin/pb/backend.proto sdk/logical/identity.proto sdk/logical/plugin.proto \
	sdk/logical/event.proto sdk/logical/version.proto sdk/helper/pluginutil/multiplexing.proto
$(GOBUILD)/.stamp: $(addprefix proto/,$(GO_PROTOS))
	@mkdir -p $(GOBUILD)/src/byok
	@echo "  PROTOC-GO proto/"
	$(Q)protoc --go_out=$(GOBUILD)/src --go-grpc_out=$(GOBUILD)/src -Iproto -I/usr/include \
		$(addprefix proto/,$(GO_PROTOS))
	$(Q)ln -sfn $(CURDIR)/tests/vaultsim $(GOBUILD)/src/byok/vaultsim
	$(Q)ln -sfn $(CURDIR)/tests/mockprovider $(GOBUILD)/src/byok/mockprovider
	$(Q)touch $@

GO_SRCS := $(wildcard tests/vaultsim/*.go tests/vaultsim/*/*.go tests/vaultsim/*/*/*.go tests/mockprovider/*.go)
build/vaultsim: $(GOBUILD)/.stamp $(GO_SRCS)
	@echo "  GO      $@"
	$(Q)$(GOENV) go build -o $@ byok/vaultsim/cmd/vaultsim
build/mockprovider: $(GOBUILD)/.stamp $(GO_SRCS)
	@echo "  GO      $@"
	$(Q)$(GOENV) go build -o $@ byok/mockprovider
build/vaultbench: $(GOBUILD)/.stamp $(GO_SRCS)
	@echo "  GO      $@"
	$(Q)$(GOENV) go build -o $@ byok/vaultsim/cmd/vaultbench
vaultsim: build/vaultsim
mockprovider: build/mockprovider
go: vaultsim mockprovider build/vaultbench

# ---- variants, checks, tools ----------------------------------------------------------
asan:
	$(Q)$(MAKE) --no-print-directory O=build/asan SAN=1 plugin agent unit fuzzbins

tools: all unit go $(BENCH_C_BINS)

deps:
	$(Q)tests/deps.sh

check: deps
	$(Q)$(MAKE) --no-print-directory tools
	$(Q)$(MAKE) --no-print-directory asan
	$(Q)tests/run-all.sh

bench: deps
	$(Q)$(MAKE) --no-print-directory tools
	$(Q)tests/bench/run.sh

demo: deps
	$(Q)$(MAKE) --no-print-directory tools
	$(Q)tests/demo.sh

# ---- install, uninstall, Debian packages -------------------------------------------------
# `make install` copies the built programs; it creates no user and writes nothing under /etc
# but the plugin into PLUGIN_DIR (Vault's plugin_directory). The agent's config is the
# administrator's: the example goes to DOCDIR/examples, never over /etc/byok/agent.json.
PREFIX ?= /usr/local
BINDIR ?= $(PREFIX)/bin
DATADIR ?= $(PREFIX)/share
MANDIR ?= $(DATADIR)/man
DOCDIR ?= $(DATADIR)/doc/byok-agent
POLICYDIR ?= $(DATADIR)/byok/policies
# systemd reads /usr/local/lib/systemd/system too (systemd-analyze unit-paths).
SYSTEMDUNITDIR ?= $(PREFIX)/lib/systemd/system
PLUGIN_DIR ?= /etc/vault/plugins
PLUGIN_FILE := vault-plugin-secrets-byok-v$(VERSION)
# A registered plugin file is pinned by its SHA-256: a different file of the same version is
# never written over it unless PLUGIN_OVERWRITE=1 (docs/admin-guide.md, "Upgrading the plugin").
PLUGIN_OVERWRITE ?= 0
# Commands printed for the administrator, with the path Vault sees (without DESTDIR).
REGISTER_CMD = vault plugin register -sha256=$$sha -command=$(PLUGIN_FILE) -version=v$(VERSION) secret vault-plugin-secrets-byok

install-plugin: $(PLUGIN)
	$(Q)install -d -m 0755 $(DESTDIR)$(PLUGIN_DIR) $(DESTDIR)$(POLICYDIR)
	$(Q)dst=$(DESTDIR)$(PLUGIN_DIR)/$(PLUGIN_FILE); \
	    if [ -e "$$dst" ] && ! cmp -s $(PLUGIN) "$$dst" && [ "$(PLUGIN_OVERWRITE)" != 1 ]; then \
	        echo "install: $$dst exists and differs: Vault pins a registered version by its SHA-256." >&2; \
	        echo "install: bump VERSION in the Makefile, or remove the file (PLUGIN_OVERWRITE=1 replaces it)." >&2; \
	        exit 1; fi; \
	    install -m 0755 $(PLUGIN) "$$dst"
	$(Q)install -m 0644 policies/byok-admin.hcl policies/byok-agent.hcl policies/byok-tenant.hcl \
	    policies/README.md $(DESTDIR)$(POLICYDIR)/
	$(Q)install -m 0755 policies/render-tenant-policy.sh $(DESTDIR)$(POLICYDIR)/

install-agent: $(AGENT)
	$(Q)install -d -m 0755 $(DESTDIR)$(BINDIR) $(DESTDIR)$(MANDIR)/man8 $(DESTDIR)$(SYSTEMDUNITDIR) \
	    $(DESTDIR)$(DOCDIR)/examples
	$(Q)install -m 0755 $(AGENT) $(DESTDIR)$(BINDIR)/byok-agent
	$(Q)sed 's/"byok [0-9][^"]*"/"byok $(VERSION)"/' agent/byok-agent.8 >$(DESTDIR)$(MANDIR)/man8/byok-agent.8
	$(Q)chmod 0644 $(DESTDIR)$(MANDIR)/man8/byok-agent.8
	$(Q)sed 's|/usr/local/bin/byok-agent|$(BINDIR)/byok-agent|g' agent/byok-agent.service \
	    >$(DESTDIR)$(SYSTEMDUNITDIR)/byok-agent.service
	$(Q)chmod 0644 $(DESTDIR)$(SYSTEMDUNITDIR)/byok-agent.service
	$(Q)install -m 0644 agent/example-config.json $(DESTDIR)$(DOCDIR)/examples/agent.json

install: install-plugin install-agent
	$(Q)sha=$$(sha256sum $(DESTDIR)$(PLUGIN_DIR)/$(PLUGIN_FILE) | cut -d' ' -f1); \
	    echo "installed: $(PLUGIN_DIR)/$(PLUGIN_FILE), $(BINDIR)/byok-agent, $(SYSTEMDUNITDIR)/byok-agent.service,"; \
	    echo "  $(MANDIR)/man8/byok-agent.8, $(POLICYDIR)/, $(DOCDIR)/examples/agent.json"; \
	    echo "sha256 $$sha  $(PLUGIN_FILE)"; \
	    echo "register it (once the file is in every Vault node's plugin_directory):"; \
	    echo "  $(REGISTER_CMD)"; \
	    echo "agent: create the byok-agent user and /etc/byok/agent.json (docs/admin-guide.md), then"; \
	    echo "  systemctl daemon-reload && systemctl enable --now byok-agent"

# Removes what `make install` wrote with the same variables; directories only when empty.
# /etc/byok and /var/lib/byok-agent are the administrator's and stay.
uninstall:
	$(Q)rm -f $(DESTDIR)$(PLUGIN_DIR)/$(PLUGIN_FILE) $(DESTDIR)$(BINDIR)/byok-agent \
	    $(DESTDIR)$(MANDIR)/man8/byok-agent.8 $(DESTDIR)$(SYSTEMDUNITDIR)/byok-agent.service \
	    $(DESTDIR)$(DOCDIR)/examples/agent.json \
	    $(addprefix $(DESTDIR)$(POLICYDIR)/,byok-admin.hcl byok-agent.hcl byok-tenant.hcl README.md render-tenant-policy.sh)
	$(Q)for d in $(DESTDIR)$(DOCDIR)/examples $(DESTDIR)$(DOCDIR) $(DESTDIR)$(POLICYDIR) $(dir $(DESTDIR)$(POLICYDIR)); do \
	    rmdir "$$d" 2>/dev/null || true; done
	$(Q)echo "removed $(PLUGIN_DIR)/$(PLUGIN_FILE): deregister it if Vault still lists it" \
	    "(vault plugin deregister -version=v$(VERSION) secret vault-plugin-secrets-byok)"

# Two binary packages made with dpkg-deb alone (no debhelper): each tree is staged by
# install-plugin/install-agent with Debian's paths, stripped, its man page gzipped, a
# control file written here and the scripts of packaging/deb/ added. Depends comes from
# dpkg-shlibdeps (dpkg-dev, part of build-essential) run on the staged binaries: the
# packages of the shared libraries they link and the lowest versions whose symbols they
# use. The plugin's directory is /usr/lib/vault-plugins (no executables under /etc);
# docs/admin-guide.md says why and what to set plugin_directory to.
DEB_OUT ?= $(O)/deb
# xz is Debian's default; tests/e2e/42-install.sh takes gzip -1, several times faster on the plugin.
DEB_COMPRESS ?= xz
DEB_ZLEVEL ?=
comma := ,
DEB_ARCH = $(shell dpkg --print-architecture)
DEB_MAINTAINER ?= byok maintainers <byok@example.invalid>
DEB_PLUGIN_DIR := /usr/lib/vault-plugins
# The staging tree is the build directory's own (rm -rf'd on each run), never under DEB_OUT,
# which may be any existing directory.
DEB_WORK = $(O)/deb-stage
DEB_AGENT_ROOT = $(DEB_WORK)/debian/byok-agent
DEB_PLUGIN_ROOT = $(DEB_WORK)/debian/vault-plugin-secrets-byok

# deb-control PACKAGE ROOT BINARY EXTRA-DEPENDS: writes ROOT/DEBIAN/control, its Description
# from packaging/deb/PACKAGE.description (the first line is the synopsis).
define deb-control
	$(Q)cd $(DEB_WORK) && dep=$$(dpkg-shlibdeps -O -e$(3) | sed -n 's/^shlibs:Depends=//p') && [ -n "$$dep" ] \
	    || { echo "deb: dpkg-shlibdeps gave no Depends for $(1) (dpkg-dev is installed by make deps)" >&2; exit 1; }; \
	    cd $(CURDIR) && { echo "Package: $(1)"; echo "Version: $(VERSION)"; echo "Architecture: $(DEB_ARCH)"; \
	      echo "Maintainer: $(DEB_MAINTAINER)"; echo "Installed-Size: $$(du -sk --exclude=DEBIAN $(2) | cut -f1)"; \
	      echo "Depends: $$dep$(4)"; echo "Section: admin"; echo "Priority: optional"; \
	      sed -n '1s/^/Description: /p' packaging/deb/$(1).description; \
	      sed '1d; s/^$$/./; s/^/ /' packaging/deb/$(1).description; } >$(2)/DEBIAN/control
endef

define deb-finish
	$(Q)for s in preinst postinst prerm postrm; do [ -f packaging/deb/$(1).$$s ] || continue; \
	    sed -e 's|@VERSION@|$(VERSION)|g' -e 's|@PLUGIN_DIR@|$(DEB_PLUGIN_DIR)|g' packaging/deb/$(1).$$s >$(2)/DEBIAN/$$s; \
	    chmod 0755 $(2)/DEBIAN/$$s; done
	$(Q)install -d -m 0755 $(2)/usr/share/doc/$(1)
	$(Q){ echo "byok $(VERSION): $(1)"; echo "License: MPL-2.0 (/usr/share/common-licenses/MPL-2.0)"; echo; cat LICENSE; } \
	    >$(2)/usr/share/doc/$(1)/copyright && chmod 0644 $(2)/usr/share/doc/$(1)/copyright
	$(Q)cd $(2) && find . -path ./DEBIAN -prune -o -type f -printf '%P\0' | LC_ALL=C sort -z | xargs -0r md5sum >DEBIAN/md5sums
	$(Q)chmod 0644 $(2)/DEBIAN/control $(2)/DEBIAN/md5sums
	$(Q)dpkg-deb --root-owner-group -Z$(DEB_COMPRESS) $(if $(DEB_ZLEVEL),-z$(DEB_ZLEVEL)) --build $(2) $(DEB_OUT)/$(1)_$(VERSION)_$(DEB_ARCH).deb >/dev/null
	@echo "  DEB     $(DEB_OUT)/$(1)_$(VERSION)_$(DEB_ARCH).deb"
endef

deb: $(PLUGIN) $(AGENT)
	$(Q)[ -n "$(strip $(O))" ] && [ -n "$(strip $(DEB_OUT))" ] \
	    || { echo "deb: O and DEB_OUT must not be empty" >&2; exit 1; }
	$(Q)rm -rf $(DEB_WORK) && mkdir -p -m 0755 $(DEB_OUT) $(DEB_AGENT_ROOT)/DEBIAN $(DEB_PLUGIN_ROOT)/DEBIAN
	$(Q)printf 'Source: byok\n\nPackage: byok-agent\nArchitecture: any\n\nPackage: vault-plugin-secrets-byok\nArchitecture: any\n' \
	    >$(DEB_WORK)/debian/control
	$(Q)$(MAKE) --no-print-directory -o $(AGENT) install-agent DESTDIR=$(abspath $(DEB_AGENT_ROOT)) PREFIX=/usr \
	    SYSTEMDUNITDIR=/lib/systemd/system
	$(Q)$(MAKE) --no-print-directory -o $(PLUGIN) install-plugin DESTDIR=$(abspath $(DEB_PLUGIN_ROOT)) PREFIX=/usr \
	    PLUGIN_DIR=$(DEB_PLUGIN_DIR)
	$(Q)strip --strip-unneeded --remove-section=.comment --remove-section=.note \
	    $(DEB_AGENT_ROOT)/usr/bin/byok-agent $(DEB_PLUGIN_ROOT)$(DEB_PLUGIN_DIR)/$(PLUGIN_FILE)
	$(Q)gzip -9n $(DEB_AGENT_ROOT)/usr/share/man/man8/byok-agent.8
	$(call deb-control,byok-agent,$(DEB_AGENT_ROOT),debian/byok-agent/usr/bin/byok-agent,$(comma) adduser)
	$(call deb-finish,byok-agent,$(DEB_AGENT_ROOT))
	$(call deb-control,vault-plugin-secrets-byok,$(DEB_PLUGIN_ROOT),debian/vault-plugin-secrets-byok$(DEB_PLUGIN_DIR)/$(PLUGIN_FILE))
	$(call deb-finish,vault-plugin-secrets-byok,$(DEB_PLUGIN_ROOT))

FORMAT_SRCS = $(shell git ls-files '*.c' '*.h')
format:
	$(Q)clang-format -i $(FORMAT_SRCS)

# One clang-tidy per file, LINT_JOBS at a time: given several files at once, clang-tidy 14
# reports false "uninitialized va_list" findings (llvm/llvm-project#40656). Findings go to
# stdout and $(O)/lint.txt; fails on any finding or on a file clang-tidy cannot analyse.
LINT_JOBS ?= 2
LINT_DIR = $(O)/lint-out
LINT_ARGS = -- $(CPPFLAGS_ALL) -std=gnu11 $(shell pkg-config --cflags jansson libevent libcurl cmocka 2>/dev/null)
lint: $(GEN)/.stamp
	$(Q)rm -rf $(LINT_DIR) && mkdir -p $(LINT_DIR)
	$(Q)printf '%s\n' $(filter %.c,$(FORMAT_SRCS)) | xargs -P$(LINT_JOBS) -n1 sh -c \
	    'o=$(LINT_DIR)/$$(echo "$$1" | tr / _); clang-tidy --quiet "$$1" $(LINT_ARGS) >"$$o.txt" 2>"$$o.err" \
	     || { echo "lint: clang-tidy failed on $$1:"; cat "$$o.err"; } >"$$o.fail"' sh
	$(Q)cat $(LINT_DIR)/*.txt >$(O)/lint.txt; cat $(O)/lint.txt $(LINT_DIR)/*.fail 2>/dev/null; \
	    n=$$(grep -Ec '^[^ ]+:[0-9]+:[0-9]+: (warning|error): ' $(O)/lint.txt); \
	    f=$$(cat $(LINT_DIR)/*.fail 2>/dev/null | grep -c '^lint: clang-tidy failed'); \
	    echo "lint: $$n findings, clang-tidy failed on $$f files"; [ "$$n" -eq 0 ] && [ "$$f" -eq 0 ]

clean:
	rm -rf build

-include $(shell find $(O)/obj -name '*.d' 2>/dev/null)
