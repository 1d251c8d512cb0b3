//! Boot-time formats shared by the loader, the kernel and the host CLI:
//! cpio (newc) archives, the Limine configuration file, ELF64 headers.
//! (Being written.)
#![no_std]
