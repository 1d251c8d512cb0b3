//! Where the OS servers' serving threads run (`servers.placement=`, the
//! kernel passes `placement=` and `cpus=` in fsd's and netd's argv;
//! docs/SERVERS.md "Placement").
//!
//! Owns: the argv spelling, the plan (which server threads with which
//! worker index, pinned where) and pinning the calling thread.  The worker
//! index is the server's shard (fsd's handle table, netd's loopback
//! instance and handle shard): one per serving thread, 0..workers.
//!
//! Must not: start threads itself (the servers own their loops).

/// The placement the kernel asked for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Placement {
    /// One serving thread, unpinned (the kernel may migrate it).
    Single,
    /// One serving thread per CPU, thread `i` pinned to CPU `i`.
    PerCore,
    /// One serving thread pinned to the last CPU (the kernel passes
    /// `single` when there is only one).
    Dedicated,
}

impl Placement {
    pub fn from_name(name: &str) -> Option<Placement> {
        match name {
            "single" => Some(Placement::Single),
            "percore" => Some(Placement::PerCore),
            "dedicated" => Some(Placement::Dedicated),
            _ => None,
        }
    }
}

/// The serving threads to run: for each, its CPU to pin to (`None`:
/// unpinned); thread `i` of the list is worker `i`.
pub fn plan(placement: Placement, cpus: usize) -> Vec<Option<usize>> {
    let cpus = cpus.max(1);
    match placement {
        Placement::Single => vec![None],
        Placement::PerCore => (0..cpus).map(Some).collect(),
        Placement::Dedicated => vec![Some(cpus - 1)],
    }
}

/// Pins the calling thread to `cpu`; the errno on failure.
pub fn pin(cpu: usize) -> Result<(), i32> {
    if cpu >= libc::CPU_SETSIZE as usize {
        return Err(libc::EINVAL);
    }
    // SAFETY: a zeroed cpu_set_t is an empty set.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    // SAFETY: `cpu` < CPU_SETSIZE (checked above), so the bit is inside `set`.
    unsafe { libc::CPU_SET(cpu, &mut set) };
    // SAFETY: `set` is a valid cpu_set_t of the size passed.
    let r = unsafe { libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set) };
    if r == 0 {
        Ok(())
    } else {
        Err(crate::errno())
    }
}

/// `placement=` and `cpus=` from a server's arguments (defaults: single,
/// one CPU); other arguments are left to the caller.
pub fn from_args(args: &[String]) -> (Placement, usize) {
    let mut placement = Placement::Single;
    let mut cpus = 1;
    for arg in args {
        if let Some(v) = arg.strip_prefix("placement=") {
            placement = Placement::from_name(v).unwrap_or(Placement::Single);
        } else if let Some(v) = arg.strip_prefix("cpus=") {
            cpus = v.parse().unwrap_or(1);
        }
    }
    (placement, cpus)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plans() {
        assert_eq!(plan(Placement::Single, 4), vec![None]);
        assert_eq!(plan(Placement::PerCore, 2), vec![Some(0), Some(1)]);
        assert_eq!(plan(Placement::PerCore, 0), vec![Some(0)]);
        assert_eq!(plan(Placement::Dedicated, 2), vec![Some(1)]);
        let args = ["x=1", "placement=percore", "cpus=3"].map(String::from);
        assert_eq!(from_args(&args), (Placement::PerCore, 3));
        assert_eq!(from_args(&[]), (Placement::Single, 1));
    }
}
