//! COM1 serial output (115200 8N1) for the loader's messages, and the
//! isa-debug-exit port that ends QEMU.
//!
//! Invariants: every line the loader prints starts with `loader: ` (the
//! [`say!`] and [`fail!`] macros add it).  Output is polled, never
//! interrupt-driven.  Must not: print more than a few lines on success.

use crate::cpu::{inb, outb, outl};
use core::fmt;

const COM1: u16 = 0x3f8;
/// isa-debug-exit port (docs/CONTRACTS.md §5).
const DEBUG_EXIT_PORT: u16 = 0xf4;
/// Exit code for "the loader refused the input".
pub const EXIT_LOADER_ERROR: u32 = 3;
/// Offset added to every exit code written to the port, so that QEMU's exit
/// status `((code + 16) << 1) | 1` cannot be confused with QEMU's own errors
/// (docs/CONTRACTS.md §5): a loader error ends QEMU with status 39.
const EXIT_CODE_OFFSET: u32 = 16;

/// Program COM1 for 115200 baud, 8 data bits, no parity, 1 stop bit.
pub fn init() {
    // SAFETY: COM1's registers are standard on the PC platform QEMU emulates.
    unsafe {
        outb(COM1 + 1, 0x00); // no interrupts
        outb(COM1 + 3, 0x80); // DLAB on
        outb(COM1, 0x01); // divisor 1 = 115200 baud
        outb(COM1 + 1, 0x00);
        outb(COM1 + 3, 0x03); // 8N1, DLAB off
        outb(COM1 + 2, 0xc7); // FIFO on, cleared
        outb(COM1 + 4, 0x03); // DTR, RTS
    }
}

fn put_byte(byte: u8) {
    // SAFETY: polling the line status register and writing the data register
    // of COM1 has no effect beyond sending the byte.
    unsafe {
        let mut spins = 0u32;
        // Bounded wait: a missing UART must not hang the loader.
        while inb(COM1 + 5) & 0x20 == 0 && spins < 100_000 {
            spins += 1;
        }
        outb(COM1, byte);
    }
}

/// `fmt::Write` sink for COM1.
pub struct Serial;

impl fmt::Write for Serial {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        for byte in s.bytes() {
            if byte == b'\n' {
                put_byte(b'\r');
            }
            put_byte(byte);
        }
        Ok(())
    }
}

/// Print one `loader: ...` line.
pub fn say(args: fmt::Arguments<'_>) {
    let _ = fmt::Write::write_fmt(&mut Serial, format_args!("loader: {args}\n"));
}

/// Print `loader: error: ...` and end QEMU with exit code 3 (status 39).
pub fn fail(args: fmt::Arguments<'_>) -> ! {
    let _ = fmt::Write::write_fmt(&mut Serial, format_args!("loader: error: {args}\n"));
    // SAFETY: isa-debug-exit only ends the VM; without the device the write
    // is ignored and we halt below.
    unsafe { outl(DEBUG_EXIT_PORT, EXIT_LOADER_ERROR + EXIT_CODE_OFFSET) };
    crate::cpu::halt_forever()
}

/// `say!("...")` prints a `loader: ` line.
#[macro_export]
macro_rules! say {
    ($($arg:tt)*) => { $crate::serial::say(format_args!($($arg)*)) };
}

/// `fail!("...")` prints `loader: error: ...` and ends QEMU with code 3.
#[macro_export]
macro_rules! fail {
    ($($arg:tt)*) => { $crate::serial::fail(format_args!($($arg)*)) };
}
