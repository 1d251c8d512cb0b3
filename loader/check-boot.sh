#!/bin/sh
# Boot checks of the built-in loader (run from anywhere; needs QEMU, python3).
#
# 1. The kernel boots through the loader with -smp 1, 2, 4, 8 and reports
#    "cpus online: N".
# 2. Bad inputs are refused with "loader: error: ..." and QEMU status 39
#    (loader error code 3, docs/CONTRACTS.md §5): bundle not a cpio, missing
#    limine.conf, kernel not ELF64, kernel without Limine requests,
#    unsupported base revision, overlapping segments, PIE kernel, no initrd.
# Exits non-zero on the first failure.  Uses its own target dir unless
# CARGO_TARGET_DIR is set; works in a temporary directory.
set -eu
ROOT=$(cd "$(dirname "$0")/.." && pwd)
TARGET=${CARGO_TARGET_DIR:-$ROOT/target}
export CARGO_TARGET_DIR=$TARGET
cd "$ROOT"
cargo build -q --release -p kernel -p loader --target x86_64-unknown-none
cargo build -q -p bootfmt --features alloc --example mkbundle
BIN=$TARGET/x86_64-unknown-none/release
MK=$TARGET/debug/examples/mkbundle
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
cd "$WORK"

cat > limine.conf <<'CONF'
timeout: 0
serial: yes

/percpu-kernel
    protocol: limine
    path: boot():/boot/kernel.elf
    cmdline: run=selfcheck
CONF

qemu() { # qemu BUNDLE SMP -> output in out.txt, status in $status
    status=0
    timeout 60 qemu-system-x86_64 -accel tcg -smp "$2" -m 256 -display none \
        -serial stdio -no-reboot -device isa-debug-exit,iobase=0xf4,iosize=0x04 \
        -kernel "$BIN/loader" ${1:+-initrd "$1"} > out.txt 2>&1 || status=$?
}

"$MK" good.cpio limine.conf=limine.conf boot/kernel.elf="$BIN/kernel"
for n in 1 2 4 8; do
    qemu good.cpio "$n"
    if ! grep -q "cpus online: $n" out.txt; then
        echo "FAIL: -smp $n did not bring $n CPUs online:"; cat out.txt; exit 1
    fi
    echo "ok: -smp $n: $(grep -o 'loader: booting.*' out.txt | tr -d '\r')"
done

python3 - "$BIN/kernel" <<'PY'
import struct, sys
k = open(sys.argv[1], 'rb').read()
def patched(pattern, fn):
    b = bytearray(k)
    for i in range(0, len(b) - 8 * len(pattern) + 1, 8):
        if all(struct.unpack_from('<Q', b, i + 8 * j)[0] == p for j, p in enumerate(pattern)):
            fn(b, i)
    return bytes(b)
BR = [0xf9562b2d5c95a6c8, 0x6a7b384944536bdc]
CM = [0xc7b1dd30df4c8b88, 0x0a82e883a194f07b]
open('rev3.elf', 'wb').write(patched(BR, lambda b, i: struct.pack_into('<Q', b, i + 16, 3)))
kill = lambda b, i: struct.pack_into('<Q', b, i, 0)
k2 = k; k = patched(BR, kill); k = patched(CM, kill); open('noreq.elf', 'wb').write(k); k = k2
b = bytearray(k); ph = struct.unpack_from('<Q', b, 32)[0]
struct.pack_into('<Q', b, ph + 56 + 16, struct.unpack_from('<Q', b, ph + 16)[0] + 0x1000)
open('overlap.elf', 'wb').write(bytes(b))
b = bytearray(k); struct.pack_into('<H', b, 16, 3); open('pie.elf', 'wb').write(bytes(b))
open('text.elf', 'wb').write(b'not an ELF file\n' * 8)
open('garbage.cpio', 'wb').write(b'garbage' * 64)
PY
for k in rev3 noreq overlap pie text; do
    "$MK" "$k.cpio" limine.conf=limine.conf boot/kernel.elf="$k.elf"
done
"$MK" noconf.cpio boot/kernel.elf="$BIN/kernel"

expect_refusal() { # expect_refusal BUNDLE MESSAGE-FRAGMENT
    qemu "$1" 2
    if [ "$status" -ne 39 ] || ! grep -q "loader: error: .*$2" out.txt; then
        echo "FAIL: ${1:-no initrd}: expected status 39 and '$2', got status $status:"; cat out.txt; exit 1
    fi
    echo "ok: ${1:-no initrd}: $(tr -d '\r' < out.txt)"
}
expect_refusal garbage.cpio "bad magic"
expect_refusal noconf.cpio "limine.conf not found"
expect_refusal text.cpio "not an ELF file"
expect_refusal noreq.cpio "no Limine base revision tag and no Limine requests"
expect_refusal rev3.cpio "unsupported base revision 3"
expect_refusal overlap.cpio "overlap in virtual memory"
expect_refusal pie.cpio "ET_DYN"
expect_refusal "" "no boot bundle"
echo "all loader boot checks passed"
