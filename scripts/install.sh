#!/usr/bin/env bash
# Installs stagebus: the C library (shared, with its SONAME and links,
# and static), its headers (C and C++), a pkg-config file, the
# `stagebus` command with its man page stagebus(1) and its bash, zsh
# and fish completions, and the Perl binding.
#
#   scripts/install.sh [--prefix DIR] [--destdir DIR] [--libdir DIR]
#                      [--from DIR] [--perl-dir DIR] [--no-perl]
#
#   --prefix DIR    where it is installed and looked for (default
#                   /usr/local): DIR/lib, DIR/include, DIR/bin,
#                   DIR/share/man/man1, DIR/share/... for completions
#   --destdir DIR   stage the files under DIR (DIR/PREFIX/...) for a
#                   package; the installed files still name PREFIX
#   --libdir DIR    the library directory (default PREFIX/lib)
#   --from DIR      install what is already built in DIR (a cargo
#                   profile directory such as target/release) instead
#                   of running `cargo build --release` first
#   --perl-dir DIR  where the Perl modules go (default: Perl's site
#                   directory when PREFIX is Perl's site prefix, else
#                   PREFIX/share/perl5)
#   --no-perl       leave the Perl binding out
#
# Files (PREFIX=/usr/local, version 0.1.0):
#   lib/libstagebus.so.0.1.0        the library
#   lib/libstagebus.so.0.1          -> libstagebus.so.0.1.0 (the SONAME,
#                                      what programs load)
#   lib/libstagebus.so              -> libstagebus.so.0.1 (for -lstagebus)
#   lib/libstagebus.a
#   lib/pkgconfig/stagebus.pc       from bindings/pkgconfig/stagebus.pc.in
#   include/stagebus.h, include/stagebus.hpp
#   bin/stagebus
#   share/man/man1/stagebus.1
#   share/bash-completion/completions/stagebus
#   share/zsh/site-functions/_stagebus
#   share/fish/vendor_completions.d/stagebus.fish
#   lib/systemd/system/stagebus-broker.service, stagebus-broker.socket
#                                      (Type=notify, socket activation)
#   PERL-DIR/StageBus.pm, PERL-DIR/StageBus/*.pm (loading the installed
#                                      library unless STAGEBUS_LIB says)
#
# A plain script rather than cargo-c (`cargo cinstall`): cargo-c is not
# part of a Rust toolchain and builds from source with a copy of cargo
# itself, a long build for what is here a handful of copies; the SONAME
# is already set by build.rs, the header is generated and committed,
# and the pkg-config file has a template. Everything the script installs
# is drawn from the build (the man page and completions from the
# binary's own command-line description), so nothing is kept twice.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

fail() {
    echo "scripts/install.sh: $*" >&2
    exit 2
}

usage() {
    sed -n '2,/^set -euo/p' "$0" | sed -e '/^set -euo/d' -e 's/^# \{0,1\}//'
}

prefix=/usr/local
destdir=
libdir=
from=
perl_dir=
perl=yes
while [ $# -gt 0 ]; do
    case "$1" in
    --prefix | --destdir | --libdir | --from | --perl-dir)
        [ $# -ge 2 ] && [ -n "$2" ] || fail "$1 needs a directory"
        case "$1" in
        --prefix) prefix=$2 ;;
        --destdir) destdir=$2 ;;
        --libdir) libdir=$2 ;;
        --from) from=$2 ;;
        --perl-dir) perl_dir=$2 ;;
        esac
        shift 2
        ;;
    --prefix=* | --destdir=* | --libdir=* | --from=* | --perl-dir=*)
        set -- "${1%%=*}" "${1#*=}" "${@:2}"
        ;;
    --no-perl)
        perl=no
        shift
        ;;
    -h | --help)
        usage
        exit 0
        ;;
    *)
        fail "unknown argument '$1' (see --help)"
        ;;
    esac
done

case "$prefix" in
/*) ;;
*) fail "--prefix must be an absolute path, not '$prefix'" ;;
esac
prefix=${prefix%/}
[ -n "$prefix" ] || prefix=/
libdir=${libdir:-$prefix/lib}
case "$libdir" in
/*) ;;
*) fail "--libdir must be an absolute path, not '$libdir'" ;;
esac
includedir=$prefix/include
bindir=$prefix/bin
mandir=$prefix/share/man

version=$(sed -n 's/^version *= *"\([^"]*\)".*/\1/p' Cargo.toml | head -n 1)
major_minor=$(printf '%s' "$version" | sed -n 's/^\([0-9]*\.[0-9]*\)\..*/\1/p')
[ -n "$major_minor" ] || fail "cannot read the version from Cargo.toml"
soname=libstagebus.so.$major_minor

if [ -z "$from" ]; then
    command -v cargo >/dev/null 2>&1 || fail "cargo not found; install Rust from https://rustup.rs"
    echo "==> cargo build --release"
    cargo build --release --lib --bin stagebus
    from=${CARGO_TARGET_DIR:-target}/release
fi
for f in libstagebus.so libstagebus.a stagebus; do
    [ -f "$from/$f" ] || fail "$from/$f is missing (build with 'cargo build --release', or drop --from)"
done

# The SONAME the library records must be the one its links are named
# after, or programs linked against it would not load.
if command -v readelf >/dev/null 2>&1; then
    recorded=$(readelf -d "$from/libstagebus.so" | sed -n 's/.*(SONAME).*\[\(.*\)\].*/\1/p')
    [ "$recorded" = "$soname" ] ||
        fail "$from/libstagebus.so records SONAME '$recorded', not '$soname'"
fi

stage() {
    printf '%s%s' "$destdir" "$1"
}

echo "==> installing stagebus $version into ${destdir:+$destdir (staged) for }$prefix"
install -d "$(stage "$libdir")" "$(stage "$libdir/pkgconfig")" "$(stage "$includedir")" \
    "$(stage "$bindir")" "$(stage "$mandir/man1")" \
    "$(stage "$prefix/share/bash-completion/completions")" \
    "$(stage "$prefix/share/zsh/site-functions")" \
    "$(stage "$prefix/share/fish/vendor_completions.d")" \
    "$(stage "$prefix/lib/systemd/system")"

# The library under its full version, the SONAME and the link editor's
# name as links.
install -m 0755 "$from/libstagebus.so" "$(stage "$libdir/libstagebus.so.$version")"
ln -sfn "libstagebus.so.$version" "$(stage "$libdir/$soname")"
ln -sfn "$soname" "$(stage "$libdir/libstagebus.so")"
install -m 0644 "$from/libstagebus.a" "$(stage "$libdir/libstagebus.a")"

install -m 0644 include/stagebus.h "$(stage "$includedir/stagebus.h")"
install -m 0644 bindings/cpp/stagebus.hpp "$(stage "$includedir/stagebus.hpp")"

escape_sed() {
    printf '%s' "$1" | sed -e 's/[\/&|]/\\&/g'
}
sed -e "s|@PREFIX@|$(escape_sed "$prefix")|g" \
    -e "s|@LIBDIR@|$(escape_sed "$libdir")|g" \
    -e "s|@INCLUDEDIR@|$(escape_sed "$includedir")|g" \
    -e "s|@VERSION@|$(escape_sed "$version")|g" \
    bindings/pkgconfig/stagebus.pc.in >"$(stage "$libdir/pkgconfig/stagebus.pc")"
if grep -q '@[A-Z]*@' "$(stage "$libdir/pkgconfig/stagebus.pc")"; then
    fail "the pkg-config template has a name this script does not replace"
fi
chmod 0644 "$(stage "$libdir/pkgconfig/stagebus.pc")"

install -m 0755 "$from/stagebus" "$(stage "$bindir/stagebus")"
"$from/stagebus" generate man >"$(stage "$mandir/man1/stagebus.1")"
"$from/stagebus" generate completions bash >"$(stage "$prefix/share/bash-completion/completions/stagebus")"
"$from/stagebus" generate completions zsh >"$(stage "$prefix/share/zsh/site-functions/_stagebus")"
"$from/stagebus" generate completions fish >"$(stage "$prefix/share/fish/vendor_completions.d/stagebus.fish")"
chmod 0644 "$(stage "$mandir/man1/stagebus.1")" \
    "$(stage "$prefix/share/bash-completion/completions/stagebus")" \
    "$(stage "$prefix/share/zsh/site-functions/_stagebus")" \
    "$(stage "$prefix/share/fish/vendor_completions.d/stagebus.fish")"

# The systemd units (not enabled: `systemctl enable --now
# stagebus-broker.socket` does that).
sed -e "s|@BINDIR@|$(escape_sed "$bindir")|g" bindings/systemd/stagebus-broker.service.in \
    >"$(stage "$prefix/lib/systemd/system/stagebus-broker.service")"
install -m 0644 bindings/systemd/stagebus-broker.socket \
    "$(stage "$prefix/lib/systemd/system/stagebus-broker.socket")"
chmod 0644 "$(stage "$prefix/lib/systemd/system/stagebus-broker.service")"

if [ "$perl" = yes ]; then
    if [ -z "$perl_dir" ]; then
        site_prefix=$(perl -MConfig -e 'print $Config{siteprefix}' 2>/dev/null || true)
        if [ -n "$site_prefix" ] && [ "$site_prefix" = "$prefix" ]; then
            perl_dir=$(perl -MConfig -e 'print $Config{installsitelib}')
        else
            perl_dir=$prefix/share/perl5
        fi
    fi
    install -d "$(stage "$perl_dir/StageBus")"
    for pm in bindings/perl/lib/StageBus/*.pm; do
        install -m 0644 "$pm" "$(stage "$perl_dir/StageBus/$(basename "$pm")")"
    done
    # The installed module loads the installed library (by its SONAME,
    # so an ABI-incompatible library is never picked up).
    marker='^my \$INSTALLED_LIBRARY;.*$'
    grep -q "$marker" bindings/perl/lib/StageBus.pm || fail "StageBus.pm lacks its INSTALLED_LIBRARY line"
    sed -e "s|$marker|my \$INSTALLED_LIBRARY = '$(escape_sed "$libdir/$soname")';|" \
        bindings/perl/lib/StageBus.pm >"$(stage "$perl_dir/StageBus.pm")"
    chmod 0644 "$(stage "$perl_dir/StageBus.pm")"
fi

echo "installed:"
echo "  $libdir/libstagebus.so.$version ($soname, libstagebus.so), libstagebus.a"
echo "  $libdir/pkgconfig/stagebus.pc, $includedir/stagebus.h, $includedir/stagebus.hpp"
echo "  $bindir/stagebus, $mandir/man1/stagebus.1, bash/zsh/fish completions"
echo "  $prefix/lib/systemd/system/stagebus-broker.{service,socket}"
[ "$perl" = yes ] && echo "  $perl_dir/StageBus.pm (Perl; needs FFI::Platypus)"
if [ -z "$destdir" ]; then
    case "$libdir" in
    /usr/lib | /usr/local/lib | /lib)
        if [ "$(id -u)" -eq 0 ] && command -v ldconfig >/dev/null 2>&1; then
            ldconfig
        fi
        ;;
    *)
        echo "note: $libdir is not on the loader's default path: link with"
        echo "  -Wl,-rpath,$libdir or set LD_LIBRARY_PATH=$libdir"
        ;;
    esac
    echo "build C programs with: cc prog.c \$(pkg-config --cflags --libs stagebus)"
    [ "$prefix" = /usr/local ] || [ "$prefix" = /usr ] ||
        echo "  (with PKG_CONFIG_PATH=$libdir/pkgconfig)"
fi
