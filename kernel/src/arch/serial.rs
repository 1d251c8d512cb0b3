//! COM1 16550 UART, polled output only (115200 8N1).
//!
//! Owns the I/O ports 0x3F8..0x3FF. Not synchronised: callers serialise
//! through `crate::log`'s console lock. Must not block forever: if the
//! transmitter never becomes ready (no UART present), bytes are dropped after
//! a bounded wait.

use x86_64::instructions::port::Port;

const COM1: u16 = 0x3F8;
/// Polls of the line-status register before a byte is given up.
const TX_SPIN_LIMIT: u32 = 100_000;

/// Programs COM1 for 115200 baud, 8 data bits, no parity, one stop bit, FIFO on.
pub fn init() {
    // SAFETY: COM1 registers are owned by this module; these writes only
    // configure the UART and have no memory-safety effect.
    unsafe {
        Port::<u8>::new(COM1 + 1).write(0x00); // no UART interrupts
        Port::<u8>::new(COM1 + 3).write(0x80); // DLAB on: divisor follows
        Port::<u8>::new(COM1).write(0x01); // divisor 1 => 115200 baud
        Port::<u8>::new(COM1 + 1).write(0x00);
        Port::<u8>::new(COM1 + 3).write(0x03); // DLAB off, 8N1
        Port::<u8>::new(COM1 + 2).write(0xC7); // FIFO on, cleared, 14-byte threshold
        Port::<u8>::new(COM1 + 4).write(0x03); // DTR + RTS
    }
}

/// Sends one byte, waiting (bounded) for room in the transmitter.
pub fn write_byte(byte: u8) {
    // SAFETY: reading the line-status register and writing the data register
    // of COM1 have no effect beyond the UART.
    unsafe {
        let mut lsr = Port::<u8>::new(COM1 + 5);
        let mut spins = 0;
        while lsr.read() & 0x20 == 0 && spins < TX_SPIN_LIMIT {
            core::hint::spin_loop();
            spins += 1;
        }
        Port::<u8>::new(COM1).write(byte);
    }
}

/// Sends a string as is. Lines end in a bare `\n` (no `\r`) so that the
/// host tools can compare captured lines exactly.
pub fn write_str(s: &str) {
    for b in s.bytes() {
        write_byte(b);
    }
}
