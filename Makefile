# Builds the C library the way C programs link and load it.
#
#   make        cargo build --release, then target/release/$(SONAME), a
#               symlink to libstagebus.so
#   make install  scripts/install.sh --prefix $(PREFIX) (default
#               /usr/local; DESTDIR stages the files for a package)
#
# The library records its SONAME, libstagebus.so.MAJOR.MINOR (see
# build.rs), and a program linked with -lstagebus records that name and
# loads it at start; cargo itself only makes libstagebus.so. The same
# pair of names is what an installed copy has (the real file under the
# SONAME, libstagebus.so for the link editor).

CARGO ?= cargo
# The version parts of the SONAME, from the package version in Cargo.toml.
MAJOR_MINOR := $(shell sed -n 's/^version *= *"\([0-9]*\)\.\([0-9]*\)\..*/\1.\2/p' Cargo.toml | head -n 1)
SONAME := libstagebus.so.$(MAJOR_MINOR)
# Where cargo puts the release build.
LIBDIR := $(or $(CARGO_TARGET_DIR),target)/release

# Where `make install` installs.
PREFIX ?= /usr/local

.PHONY: all lib install

all: lib

lib:
	$(CARGO) build --release
	ln -sf libstagebus.so $(LIBDIR)/$(SONAME)

install:
	scripts/install.sh --prefix "$(PREFIX)" $(if $(DESTDIR),--destdir "$(DESTDIR)")
