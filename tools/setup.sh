#!/usr/bin/env bash
# Install what a fresh Debian machine with only rustup/cargo lacks, and say
# what was installed.  Idempotent: a second run changes nothing.
#   - the pinned Rust toolchain with its targets (rust-toolchain.toml)
#   - QEMU (Debian's qemu-system-x86) and xorriso (for Limine ISOs)
#   - a TrueType font for the suite's plots (Debian's fonts-dejavu-core)
#   - iproute2 (`ip`, for the tap tests) and the Linux kernel image the
#     differential tests compare with (fetched as the harness does)
# Limine itself is not packaged by Debian: the built-in loader is used unless
# LIMINE_DIR (or /usr/share/limine) holds Limine's BIOS files.  This script
# only says which Limine it sees (LIMINE_DIR, else ../shared/limine next to
# the repository); it never copies Limine into the repository, and says
# nothing when there is none.
set -euo pipefail
cd "$(dirname "$0")/.."

say() { echo "setup: $*" >&2; }

# rustup reads rust-toolchain.toml and adds the pinned targets/components.
if ! rustup toolchain install >/tmp/setup-rustup.log 2>&1; then
    cat /tmp/setup-rustup.log >&2
    say "rustup could not install the pinned toolchain"; exit 1
fi
for target in x86_64-unknown-none x86_64-unknown-linux-musl; do
    if ! rustup target list --installed | grep -qx "$target"; then
        say "adding Rust target $target"
        rustup target add "$target" >&2
    fi
done

missing=()
command -v qemu-system-x86_64 >/dev/null || missing+=(qemu-system-x86)
command -v xorriso >/dev/null || missing+=(xorriso)
command -v ip >/dev/null || missing+=(iproute2) # the tap tests' namespaces
[ -f /usr/share/fonts/truetype/dejavu/DejaVuSans.ttf ] || [ -n "${COMPARISON_FONT:-}" ] \
    || missing+=(fonts-dejavu-core)
[ -x /usr/sbin/mke2fs ] && [ -x /usr/sbin/e2fsck ] && [ -x /usr/sbin/debugfs ] \
    || missing+=(e2fsprogs) # ext2 images in the fs tests and disk tests
if ((${#missing[@]})); then
    SUDO=""
    if [ "$(id -u)" != 0 ]; then SUDO="sudo"; fi
    say "installing Debian packages: ${missing[*]}"
    $SUDO apt-get update -qq >&2
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >&2
fi
say "ready: $(qemu-system-x86_64 --version | head -1); $(rustc --version)"

# The Linux side of the differential tests: fetched once (apt-get download,
# cached under target/linux/) exactly as the harness does, so no test skips
# for it.  A failure here is reported; under CI those tests then fail.
if linux=$(cargo run -q -p comparison --example fetch_linux); then
    say "Linux for the differential tests: $linux"
else
    say "the Linux kernel image cannot be had: the Linux side of the tests will skip (fail under CI)"
fi
# Limine (optional): report what the CLI (LIMINE_DIR) and the tests
# (LIMINE_DIR, else ../shared/limine) will boot through.
limine_files() { [ -f "$1/limine-bios.sys" ] && [ -f "$1/limine-bios-cd.bin" ]; }
limine_version() { grep -aoE -m1 'Limine [0-9]+\.[0-9]+(\.[0-9]+)?' "$1/limine-bios.sys" | head -1; }
if [ -n "${LIMINE_DIR:-}" ]; then
    if limine_files "$LIMINE_DIR"; then
        say "Limine: $(limine_version "$LIMINE_DIR") in LIMINE_DIR=$LIMINE_DIR"
    else
        say "LIMINE_DIR=$LIMINE_DIR lacks limine-bios.sys or limine-bios-cd.bin; the built-in loader is used"
    fi
elif [ -d ../shared/limine ]; then
    found=()
    for dir in ../shared/limine ../shared/limine/*/; do
        dir="${dir%/}"
        if limine_files "$dir"; then found+=("$(limine_version "$dir") ($(cd "$dir" && pwd))"); fi
    done
    if ((${#found[@]})); then
        say "Limine found for the tests: ${found[*]}; for the CLI: export LIMINE_DIR=<one of those folders>"
    fi
fi
