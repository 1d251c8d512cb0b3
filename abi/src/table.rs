//! Linux errno values and their names: the one errno table of the tree.
//!
//! Owns: [`Errno`] (a positive Linux error number) with one associated
//! constant per code, [`Errno::name`] / [`Errno::from_name`], and the
//! [`errno`] module of the same constants as free items (for code that
//! imports them by name).
//!
//! Invariants: each code appears once in the `table!` below, which
//! generates the constants, the name lookup and the free constants, so a
//! value and its name cannot drift apart.  Aliases (`EWOULDBLOCK`,
//! `ENOTSUP`, `EDEADLOCK`) are constants only; `name()` gives the primary
//! name, as glibc's `strerrorname_np` does.
//!
//! Must not: hold codes Linux does not have.

/// A Linux error number (positive, as in `errno`).
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Debug)]
pub struct Errno(pub i32);

macro_rules! table {
    ($($name:ident = $val:literal,)*) => {
        impl Errno {
            $(pub const $name: Errno = Errno($val);)*
        }

        /// Every errno as a free constant (`use abi::errno::EINVAL`).
        pub mod errno {
            use super::Errno;
            $(pub const $name: Errno = Errno::$name;)*
            pub const EWOULDBLOCK: Errno = Errno::EAGAIN;
            pub const EDEADLOCK: Errno = Errno::EDEADLK;
            pub const ENOTSUP: Errno = Errno::EOPNOTSUPP;
        }

        const TABLE: &[(i32, &str)] = &[$(($val, stringify!($name)),)*];
    };
}

table! {
    EPERM = 1,
    ENOENT = 2,
    ESRCH = 3,
    EINTR = 4,
    EIO = 5,
    ENXIO = 6,
    E2BIG = 7,
    ENOEXEC = 8,
    EBADF = 9,
    ECHILD = 10,
    EAGAIN = 11,
    ENOMEM = 12,
    EACCES = 13,
    EFAULT = 14,
    ENOTBLK = 15,
    EBUSY = 16,
    EEXIST = 17,
    EXDEV = 18,
    ENODEV = 19,
    ENOTDIR = 20,
    EISDIR = 21,
    EINVAL = 22,
    ENFILE = 23,
    EMFILE = 24,
    ENOTTY = 25,
    ETXTBSY = 26,
    EFBIG = 27,
    ENOSPC = 28,
    ESPIPE = 29,
    EROFS = 30,
    EMLINK = 31,
    EPIPE = 32,
    EDOM = 33,
    ERANGE = 34,
    EDEADLK = 35,
    ENAMETOOLONG = 36,
    ENOLCK = 37,
    ENOSYS = 38,
    ENOTEMPTY = 39,
    ELOOP = 40,
    ENOMSG = 42,
    EIDRM = 43,
    ENOSTR = 60,
    ENODATA = 61,
    ETIME = 62,
    ENOSR = 63,
    ENOLINK = 67,
    EPROTO = 71,
    EMULTIHOP = 72,
    EBADMSG = 74,
    EOVERFLOW = 75,
    EBADFD = 77,
    EILSEQ = 84,
    ERESTART = 85,
    EUSERS = 87,
    ENOTSOCK = 88,
    EDESTADDRREQ = 89,
    EMSGSIZE = 90,
    EPROTOTYPE = 91,
    ENOPROTOOPT = 92,
    EPROTONOSUPPORT = 93,
    ESOCKTNOSUPPORT = 94,
    EOPNOTSUPP = 95,
    EPFNOSUPPORT = 96,
    EAFNOSUPPORT = 97,
    EADDRINUSE = 98,
    EADDRNOTAVAIL = 99,
    ENETDOWN = 100,
    ENETUNREACH = 101,
    ENETRESET = 102,
    ECONNABORTED = 103,
    ECONNRESET = 104,
    ENOBUFS = 105,
    EISCONN = 106,
    ENOTCONN = 107,
    ESHUTDOWN = 108,
    ETOOMANYREFS = 109,
    ETIMEDOUT = 110,
    ECONNREFUSED = 111,
    EHOSTDOWN = 112,
    EHOSTUNREACH = 113,
    EALREADY = 114,
    EINPROGRESS = 115,
    ESTALE = 116,
    EDQUOT = 122,
    ECANCELED = 125,
    EOWNERDEAD = 130,
    ENOTRECOVERABLE = 131,
}

impl Errno {
    /// Alias of `EAGAIN`.
    pub const EWOULDBLOCK: Errno = Errno::EAGAIN;
    /// Alias of `EDEADLK`.
    pub const EDEADLOCK: Errno = Errno::EDEADLK;
    /// Alias of `EOPNOTSUPP` (the same number on Linux).
    pub const ENOTSUP: Errno = Errno::EOPNOTSUPP;

    /// The Linux name (`"EINVAL"`), or `None` for a number not in the table.
    pub fn name(self) -> Option<&'static str> {
        TABLE.iter().find(|&&(v, _)| v == self.0).map(|&(_, n)| n)
    }

    /// The code of a Linux name (`"EINVAL"`), aliases included.
    pub fn from_name(name: &str) -> Option<Errno> {
        match name {
            "EWOULDBLOCK" => return Some(Errno::EWOULDBLOCK),
            "EDEADLOCK" => return Some(Errno::EDEADLOCK),
            "ENOTSUP" => return Some(Errno::ENOTSUP),
            _ => {}
        }
        TABLE
            .iter()
            .find(|&&(_, n)| n == name)
            .map(|&(v, _)| Errno(v))
    }

    /// The value a system call places in `rax` for this error (`-errno`).
    pub const fn to_return(self) -> usize {
        (-(self.0 as isize)) as usize
    }

    /// The error a system call's raw return value stands for, if it is one
    /// (`-4095..=-1`, as Linux's `IS_ERR_VALUE`).
    pub const fn from_return(ret: isize) -> Option<Errno> {
        if ret < 0 && ret >= -4095 {
            Some(Errno(-ret as i32))
        } else {
            None
        }
    }
}

impl core::fmt::Display for Errno {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self.name() {
            Some(n) => f.write_str(n),
            None => write!(f, "errno {}", self.0),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_are_unique() {
        for &(v, n) in TABLE {
            assert_eq!(Errno(v).name(), Some(n));
            assert_eq!(Errno::from_name(n), Some(Errno(v)));
            assert_eq!(TABLE.iter().filter(|&&(w, _)| w == v).count(), 1, "{n}");
        }
    }

    #[test]
    fn well_known_values() {
        assert_eq!(Errno::EINVAL.0, 22);
        assert_eq!(Errno::EOVERFLOW.0, 75);
        assert_eq!(Errno::ENOTSUP, Errno::EOPNOTSUPP);
        assert_eq!(Errno::ETIMEDOUT.0, 110);
        assert_eq!(errno::EINPROGRESS, Errno(115));
        assert_eq!(Errno(95).name(), Some("EOPNOTSUPP"));
        assert_eq!(Errno(11).name(), Some("EAGAIN"));
        assert_eq!(Errno(41).name(), None);
        assert_eq!(Errno::from_name("ENOTSUP"), Some(Errno(95)));
        assert_eq!(Errno::from_name("EBOGUS"), None);
    }

    #[test]
    fn return_values() {
        assert_eq!(Errno::ENOENT.to_return(), (-2isize) as usize);
        assert_eq!(Errno::from_return(-22), Some(Errno::EINVAL));
        assert_eq!(Errno::from_return(0), None);
        assert_eq!(Errno::from_return(-4096), None);
    }
}
