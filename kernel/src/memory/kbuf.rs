//! Kernel buffers whose size comes from user space.
//!
//! Owns the one rule for them: a system call never allocates a size a user
//! chose without a bound, and a failed allocation on a system-call path is
//! `ENOMEM` for the caller, never the global allocator's panic.  Callers
//! clamp first (as Linux clamps to `MAX_RW_COUNT` or a socket buffer), then
//! ask here.
//!
//! Must not: be used for sizes the kernel chose itself (plain `Vec` is fine
//! there), or hand out more than `MAX_KBUF` bytes.

use alloc::vec::Vec;

use abi::Errno;

/// Largest buffer handed out (a bound on top of the caller's own; 1 MiB is
/// the largest any system call here moves through one kernel buffer).
pub const MAX_KBUF: usize = 1 << 20;

/// A zeroed buffer of `len` bytes (`len <= MAX_KBUF`, else `EINVAL`: a
/// caller forgot to clamp); `ENOMEM` when the heap cannot give it.
pub fn zeroed(len: usize) -> Result<Vec<u8>, Errno> {
    if len > MAX_KBUF {
        debug_assert!(false, "kbuf::zeroed({len}): clamp before allocating");
        return Err(Errno::EINVAL);
    }
    let mut buf = Vec::new();
    buf.try_reserve_exact(len).map_err(|_| Errno::ENOMEM)?;
    buf.resize(len, 0);
    Ok(buf)
}

/// An empty vector with room for `n` elements, for a buffer whose size the
/// caller has already bounded by `max_bytes` (its own limit, such as
/// exec's argument bytes, which may exceed `MAX_KBUF`): `E2BIG`-style
/// limits are the caller's, so a size above `max_bytes` is `ENOMEM` here
/// only as a last guard; `ENOMEM` when the heap cannot give it.
pub fn with_capacity<T>(n: usize, max_bytes: usize) -> Result<Vec<T>, Errno> {
    if n.saturating_mul(core::mem::size_of::<T>()) > max_bytes {
        debug_assert!(false, "kbuf::with_capacity({n}): bound before allocating");
        return Err(Errno::ENOMEM);
    }
    let mut v = Vec::new();
    v.try_reserve_exact(n).map_err(|_| Errno::ENOMEM)?;
    Ok(v)
}
