//! The `#[repr(C)]` structures user programs pass to the kernel by pointer,
//! laid out as Linux x86_64 lays them out (the header each one comes from is
//! named on it), with every padding byte a named field.
//!
//! Invariants: each structure's size equals Linux's (asserted at compile
//! time below) and it has no implicit padding, so all of its bytes are
//! initialised and any byte pattern is a valid value (plain data).
//!
//! Must not: hold pointers or references (user addresses are `u64`).

use core::mem::size_of;

/// `struct timespec` (`linux/time_types.h`, `__kernel_timespec`).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Timespec {
    pub tv_sec: i64,
    pub tv_nsec: i64,
}

/// `struct timeval` (`linux/time_types.h`, `__kernel_old_timeval`).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Timeval {
    pub tv_sec: i64,
    pub tv_usec: i64,
}

/// `struct itimerval` (`linux/time.h`).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Itimerval {
    pub it_interval: Timeval,
    pub it_value: Timeval,
}

/// `struct itimerspec` (`linux/time_types.h`).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Itimerspec {
    pub it_interval: Timespec,
    pub it_value: Timespec,
}

/// `struct stat` (`asm/stat.h`, x86_64).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Stat {
    pub st_dev: u64,
    pub st_ino: u64,
    pub st_nlink: u64,
    pub st_mode: u32,
    pub st_uid: u32,
    pub st_gid: u32,
    pub __pad0: u32,
    pub st_rdev: u64,
    pub st_size: i64,
    pub st_blksize: i64,
    pub st_blocks: i64,
    pub st_atime: i64,
    pub st_atime_nsec: i64,
    pub st_mtime: i64,
    pub st_mtime_nsec: i64,
    pub st_ctime: i64,
    pub st_ctime_nsec: i64,
    pub __unused: [i64; 3],
}

/// `struct statx_timestamp` (`linux/stat.h`).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct StatxTimestamp {
    pub tv_sec: i64,
    pub tv_nsec: u32,
    pub __reserved: i32,
}

/// `struct statx` (`linux/stat.h`).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Statx {
    pub stx_mask: u32,
    pub stx_blksize: u32,
    pub stx_attributes: u64,
    pub stx_nlink: u32,
    pub stx_uid: u32,
    pub stx_gid: u32,
    pub stx_mode: u16,
    pub __spare0: u16,
    pub stx_ino: u64,
    pub stx_size: u64,
    pub stx_blocks: u64,
    pub stx_attributes_mask: u64,
    pub stx_atime: StatxTimestamp,
    pub stx_btime: StatxTimestamp,
    pub stx_ctime: StatxTimestamp,
    pub stx_mtime: StatxTimestamp,
    pub stx_rdev_major: u32,
    pub stx_rdev_minor: u32,
    pub stx_dev_major: u32,
    pub stx_dev_minor: u32,
    pub stx_mnt_id: u64,
    pub stx_dio_mem_align: u32,
    pub stx_dio_offset_align: u32,
    pub __spare3: [u64; 12],
}

/// `struct statfs` (`asm-generic/statfs.h`, 64-bit).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Statfs {
    pub f_type: i64,
    pub f_bsize: i64,
    pub f_blocks: u64,
    pub f_bfree: u64,
    pub f_bavail: u64,
    pub f_files: u64,
    pub f_ffree: u64,
    pub f_fsid: [i32; 2],
    pub f_namelen: i64,
    pub f_frsize: i64,
    pub f_flags: i64,
    pub f_spare: [i64; 4],
}

/// `struct iovec` (`linux/uio.h`).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Iovec {
    pub iov_base: u64,
    pub iov_len: u64,
}

/// `struct sockaddr_in` (`linux/in.h`); port and address in network order.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SockaddrIn {
    pub sin_family: u16,
    pub sin_port: u16,
    pub sin_addr: u32,
    pub sin_zero: [u8; 8],
}

/// `struct sockaddr_un` (`linux/un.h`).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SockaddrUn {
    pub sun_family: u16,
    pub sun_path: [u8; crate::socket::UNIX_PATH_MAX],
}

impl Default for SockaddrUn {
    fn default() -> Self {
        SockaddrUn {
            sun_family: 0,
            sun_path: [0; crate::socket::UNIX_PATH_MAX],
        }
    }
}

/// `struct user_msghdr` (`linux/socket.h`).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Msghdr {
    pub msg_name: u64,
    pub msg_namelen: u32,
    pub __pad0: u32,
    pub msg_iov: u64,
    pub msg_iovlen: u64,
    pub msg_control: u64,
    pub msg_controllen: u64,
    pub msg_flags: u32,
    pub __pad1: u32,
}

/// `struct cmsghdr` (`linux/socket.h`), the header of one control message.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Cmsghdr {
    pub cmsg_len: u64,
    pub cmsg_level: i32,
    pub cmsg_type: i32,
}

/// The kernel's `struct sigaction` as rt_sigaction takes it
/// (`kernel/signal.c`, x86_64 `struct sigaction` with `SA_RESTORER`).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Sigaction {
    pub sa_handler: u64,
    pub sa_flags: u64,
    pub sa_restorer: u64,
    pub sa_mask: u64,
}

/// `stack_t` of sigaltstack (`asm-generic/signal.h`... x86_64 `uapi/asm/signal.h`).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct StackT {
    pub ss_sp: u64,
    pub ss_flags: i32,
    pub __pad0: u32,
    pub ss_size: u64,
}

/// `struct epoll_event` (`linux/eventpoll.h`): packed on x86_64.
#[repr(C, packed)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct EpollEvent {
    pub events: u32,
    pub data: u64,
}

/// `struct pollfd` (`asm-generic/poll.h`).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Pollfd {
    pub fd: i32,
    pub events: i16,
    pub revents: i16,
}

/// `struct rlimit` (`linux/resource.h`, 64-bit).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Rlimit {
    pub rlim_cur: u64,
    pub rlim_max: u64,
}

/// `struct rusage` (`linux/resource.h`).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Rusage {
    pub ru_utime: Timeval,
    pub ru_stime: Timeval,
    pub rest: [i64; 14],
}

/// `struct winsize` (`asm-generic/termios.h`).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Winsize {
    pub ws_row: u16,
    pub ws_col: u16,
    pub ws_xpixel: u16,
    pub ws_ypixel: u16,
}

/// Length of each field of `struct utsname`, NUL included.
pub const UTSNAME_LEN: usize = 65;

/// `struct new_utsname` (`linux/utsname.h`).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Utsname {
    pub sysname: [u8; UTSNAME_LEN],
    pub nodename: [u8; UTSNAME_LEN],
    pub release: [u8; UTSNAME_LEN],
    pub version: [u8; UTSNAME_LEN],
    pub machine: [u8; UTSNAME_LEN],
    pub domainname: [u8; UTSNAME_LEN],
}

/// `struct linux_dirent64` (`linux/dirent.h`): bytes before `d_name`.
/// (Not a Rust structure: the record is packed and its name variable-sized.)
pub const DIRENT64_HEADER: usize = 19;

// Linux's sizes, checked when this crate compiles.
const _: () = {
    assert!(size_of::<Timespec>() == 16);
    assert!(size_of::<Timeval>() == 16);
    assert!(size_of::<Itimerval>() == 32);
    assert!(size_of::<Itimerspec>() == 32);
    assert!(size_of::<Stat>() == 144);
    assert!(size_of::<StatxTimestamp>() == 16);
    assert!(size_of::<Statx>() == 256);
    assert!(size_of::<Statfs>() == 120);
    assert!(size_of::<Iovec>() == 16);
    assert!(size_of::<SockaddrIn>() == 16);
    assert!(size_of::<SockaddrUn>() == 110);
    assert!(size_of::<Msghdr>() == 56);
    assert!(size_of::<Cmsghdr>() == 16);
    assert!(size_of::<Sigaction>() == 32);
    assert!(size_of::<StackT>() == 24);
    assert!(size_of::<EpollEvent>() == 12);
    assert!(size_of::<Pollfd>() == 8);
    assert!(size_of::<Rlimit>() == 16);
    assert!(size_of::<Rusage>() == 144);
    assert!(size_of::<Winsize>() == 8);
    assert!(size_of::<Utsname>() == 390);
};

#[cfg(test)]
mod tests {
    use super::*;
    use core::mem::offset_of;

    /// Field offsets user programs depend on (from Linux's headers).
    #[test]
    fn offsets_match_linux() {
        assert_eq!(offset_of!(Stat, st_mode), 24);
        assert_eq!(offset_of!(Stat, st_rdev), 40);
        assert_eq!(offset_of!(Stat, st_size), 48);
        assert_eq!(offset_of!(Stat, st_atime), 72);
        assert_eq!(offset_of!(Statx, stx_mode), 28);
        assert_eq!(offset_of!(Statx, stx_ino), 32);
        assert_eq!(offset_of!(Statx, stx_atime), 64);
        assert_eq!(offset_of!(Statx, stx_rdev_major), 128);
        assert_eq!(offset_of!(Msghdr, msg_namelen), 8);
        assert_eq!(offset_of!(Msghdr, msg_controllen), 40);
        assert_eq!(offset_of!(Msghdr, msg_flags), 48);
        assert_eq!(offset_of!(StackT, ss_size), 16);
        assert_eq!(offset_of!(EpollEvent, data), 4);
        assert_eq!(offset_of!(Statfs, f_namelen), 64);
    }
}
