# health-checker: the commands a new user and CI need. `make run` and `make test` work on a
# fresh machine with only the Rust toolchain.

PREFIX ?= /usr/local
CARGO ?= cargo
VERSION := $(shell sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -n 1)
MUSL := x86_64-unknown-linux-musl
# 64-bit Raspberry Pi OS, Graviton: linked by the rust-lld that ships with the toolchain.
ARM64 := aarch64-unknown-linux-musl
# 32-bit Raspberry Pi OS on every ARMv7 Pi (2, 3, 4, 5, Zero 2 W): rustup has no musl std for
# 32-bit ARM here, so glibc is linked statically. Thumb-2 rather than armv7-unknown-linux-
# gnueabihf: the same CPUs, and 1,002,928 bytes against 1,203,632 (1,097,136 even at
# opt-level "z"), which keeps it under the 1 MiB budget. Static glibc is ~750 KiB of that.
ARMV7 := thumbv7neon-unknown-linux-gnueabihf
ARMV7_CC := arm-linux-gnueabihf-gcc
DIST := target/dist
# Largest release binary we ship.
SIZE_BUDGET := 1048576
# A target triple as cargo's environment variables spell it: upper case, dashes as underscores.
UPPER = $(shell echo $(1) | tr 'a-z-' 'A-Z_')
# Port for `make run`; the demo listens on loopback only.
RUN_LISTENER ?= 127.0.0.1:5000

# How long each fuzz property runs under `make fuzz` (seconds); FUZZ_SEED picks the inputs.
FUZZ_SECONDS ?= 60

.PHONY: build test run static install clean fuzz bench release release-deps release-test

build:
	$(CARGO) build --release

# Formatting, lints as errors, then unit and black-box tests.
test:
	$(CARGO) fmt --check
	$(CARGO) clippy --all-targets -- -D warnings
	$(CARGO) test

# A demo a new user can curl at once: a check that passes (`true` exits 0) and one of our
# own listening port, so `curl -i localhost:5000` answers 200.
run: build
	@echo "health-checker on http://$(RUN_LISTENER)/ -- try: curl -i localhost:5000   (Ctrl-C stops it)"
	./target/release/health-checker --listener $(RUN_LISTENER) --port $(lastword $(subst :, ,$(RUN_LISTENER))) --script true

# A static x86_64 binary (musl), with the rustup target added when missing.
static:
	rustup target list --installed | grep -qx $(MUSL) || rustup target add $(MUSL)
	$(CARGO) build --release --target $(MUSL)
	@echo "built target/$(MUSL)/release/health-checker"

# Property fuzzing of the request parser and the option parser with generated inputs, for
# FUZZ_SECONDS each (cargo-fuzz needs a nightly toolchain, which these machines lack). The
# same properties run for half a second in `make test`.
fuzz:
	FUZZ_SECONDS=$(FUZZ_SECONDS) $(CARGO) test --release --bin health-checker fuzz_ -- --nocapture

# The benchmark table (not part of `make test`): the release binary under load on loopback,
# plus start-up and idle RSS of the static build. BENCH_SECONDS sets each scenario's length.
bench: static
	BENCH_STATIC_BIN=$(CURDIR)/target/$(MUSL)/release/health-checker $(CARGO) test --release --test bench -- --ignored --nocapture

# What `make release` needs, installed when missing: rustup targets, the 32-bit ARM C
# toolchain and static glibc (Debian), and qemu-user for release-test.
release-deps:
	@for t in $(MUSL) $(ARM64) $(ARMV7); do \
	  rustup target list --installed | grep -qx $$t || rustup target add $$t || exit 1; \
	done
	@missing=""; \
	command -v $(ARMV7_CC) >/dev/null || missing="$$missing gcc-arm-linux-gnueabihf"; \
	[ -f /usr/arm-linux-gnueabihf/lib/libc.a ] || missing="$$missing libc6-dev-armhf-cross"; \
	command -v qemu-aarch64-static >/dev/null && command -v qemu-arm-static >/dev/null || missing="$$missing qemu-user-static"; \
	if [ -n "$$missing" ]; then \
	  echo "installing$$missing"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing; \
	fi

# Stripped static binaries for every target in $(DIST), named health-checker-VERSION-TARGET,
# with SHA256SUMS.
release: release-deps
	$(CARGO) build --release --target $(MUSL)
	CARGO_TARGET_$(call UPPER,$(ARM64))_LINKER=rust-lld $(CARGO) build --release --target $(ARM64)
	CARGO_TARGET_$(call UPPER,$(ARMV7))_LINKER=$(ARMV7_CC) \
	CARGO_TARGET_$(call UPPER,$(ARMV7))_RUSTFLAGS="-C target-feature=+crt-static" \
	  $(CARGO) build --release --target $(ARMV7)
	rm -rf $(DIST) && mkdir -p $(DIST)
	for t in $(MUSL) $(ARM64) $(ARMV7); do \
	  cp target/$$t/release/health-checker $(DIST)/health-checker-$(VERSION)-$$t || exit 1; \
	done
	cd $(DIST) && sha256sum health-checker-* > SHA256SUMS
	@cd $(DIST) && for f in health-checker-*; do printf '%-60s %9s bytes\n' $$f $$(stat -c %s $$f); done

# Each release binary run as on its host (natively or under qemu-user): --version, a TCP
# check by name that passes (200) and a script that fails (504); the x86_64 one must be
# static; every one must fit the size budget; SHA256SUMS must verify.
release-test: release
	HC_DIST=$(CURDIR)/$(DIST) HC_SIZE_BUDGET=$(SIZE_BUDGET) $(CARGO) test --release --test release -- --ignored --nocapture

install: build
	install -D -m 0755 target/release/health-checker $(DESTDIR)$(PREFIX)/bin/health-checker

clean:
	$(CARGO) clean
