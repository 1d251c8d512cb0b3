//! Window markers for the sharing plugin (docs/SHARING.md): true NOPs that
//! carry a tag, `nop dword ptr [rax + DISP32]` (bytes `0F 1F 80` + disp32),
//! which the QEMU TCG plugin recognises when it translates them.
//!
//! Owns the marker protocol's user side: `begin`/`end` bracket one operation
//! on the calling CPU, `label` names the next dump, `dump` writes and resets
//! the plugin's table.  Invariants: every function is one NOP instruction
//! (two branches for `label`), touches no memory and no flags, so without
//! the plugin (on Linux, on KVM, on hardware) a marked run behaves and
//! measures as an unmarked one.  The displacement is part of the instruction
//! encoding, so each label value needs its own instruction: `label` has one
//! for each of 0..LABELS and refuses others.
//!
//! Shared by `wis` and `userland` (its `lib.rs` includes this file by path),
//! so both speak the same protocol; it must not depend on anything but core.

/// Labels `label` can set: 0..LABELS.
pub const LABELS: u16 = 128;

/// `nop dword ptr [rax + $disp]`, a 7-byte true NOP.
macro_rules! tagged_nop {
    ($disp:expr) => {
        // SAFETY: a NOP: reads no register value, touches no memory, no
        // stack, no flags.  Not `nomem`: the compiler must not move the
        // window's loads and stores across a marker.
        unsafe {
            core::arch::asm!(
                concat!(".byte 0x0f,0x1f,0x80\n.long ", $disp),
                options(nostack, preserves_flags)
            )
        }
    };
}

/// Begin a window on this CPU: the plugin counts its accesses from here.
#[inline(always)]
pub fn begin() {
    tagged_nop!("0x5CA10001");
}

/// End this CPU's window (the plugin counts one operation).
#[inline(always)]
pub fn end() {
    tagged_nop!("0x5CA10002");
}

/// Write one record of the table to the plugin's output, then reset it.
#[inline(always)]
pub fn dump() {
    tagged_nop!("0x5CA10003");
}

macro_rules! label_arms {
    ($value:expr; $($n:literal)*) => {
        match $value {
            $( $n => tagged_nop!(concat!("0x5CA20000 + ", stringify!($n))), )*
            _ => return false,
        }
    };
}

/// Set the label of the next dump; false (and no marker) if `value` is not
/// below `LABELS`.
#[inline(never)]
pub fn label(value: u16) -> bool {
    label_arms!(value; 0 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 19 20 21 22 23 24 25 26 27 28 29 30 31 32 33 34 35 36 37 38 39 40 41 42 43 44 45 46 47 48 49 50 51 52 53 54 55 56 57 58 59 60 61 62 63 64 65 66 67 68 69 70 71 72 73 74 75 76 77 78 79 80 81 82 83 84 85 86 87 88 89 90 91 92 93 94 95 96 97 98 99 100 101 102 103 104 105 106 107 108 109 110 111 112 113 114 115 116 117 118 119 120 121 122 123 124 125 126 127);
    true
}
