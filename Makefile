# health-checker: the commands a new user and CI need. `make run` and `make test` work on a
# fresh machine with only the Rust toolchain.

PREFIX ?= /usr/local
CARGO ?= cargo
MUSL := x86_64-unknown-linux-musl
# Port for `make run`; the demo listens on loopback only.
RUN_LISTENER ?= 127.0.0.1:5000

# How long each fuzz property runs under `make fuzz` (seconds); FUZZ_SEED picks the inputs.
FUZZ_SECONDS ?= 60

.PHONY: build test run static install clean fuzz bench

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

install: build
	install -D -m 0755 target/release/health-checker $(DESTDIR)$(PREFIX)/bin/health-checker

clean:
	$(CARGO) clean
