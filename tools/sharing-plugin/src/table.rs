//! The counting, without QEMU: marker decoding, per-vCPU line tables, and
//! the dump record (one JSON line) made by merging them.
//!
//! Owns the protocol's numbers (docs/SHARING.md) and the record's format.
//! Invariants: a line is one 64-byte guest-physical line (`pa >> 6`); a
//! vCPU's table holds only what that vCPU did inside its windows since the
//! last dump; `merge` never changes a table (the caller clears them).  It
//! must not call QEMU (lib.rs does), so it is tested on the host.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::hash::{BuildHasherDefault, Hasher};

/// Displacement of the begin-window marker.
pub const BEGIN: u32 = 0x5CA1_0001;
/// Displacement of the end-window marker (counts one operation).
pub const END: u32 = 0x5CA1_0002;
/// Displacement of the dump-and-reset marker.
pub const DUMP: u32 = 0x5CA1_0003;
/// High 16 bits of a set-label marker; the low 16 bits are the label.
pub const LABEL_BASE: u32 = 0x5CA2_0000;

/// The most vCPUs the masks hold.
pub const MAX_VCPUS: usize = 64;
/// Bytes per line.
pub const LINE_SHIFT: u32 = 6;

/// What a marker instruction asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Marker {
    Begin,
    End,
    Dump,
    Label(u16),
}

impl Marker {
    /// The marker a displacement encodes, if any.
    pub fn from_disp(disp: u32) -> Option<Marker> {
        match disp {
            BEGIN => Some(Marker::Begin),
            END => Some(Marker::End),
            DUMP => Some(Marker::Dump),
            d if d & 0xFFFF_0000 == LABEL_BASE => Some(Marker::Label(d as u16)),
            _ => None,
        }
    }

    /// The displacement that encodes this marker.
    pub fn disp(self) -> u32 {
        match self {
            Marker::Begin => BEGIN,
            Marker::End => END,
            Marker::Dump => DUMP,
            Marker::Label(l) => LABEL_BASE | u32::from(l),
        }
    }

    /// The marker an instruction's bytes encode: `nop dword ptr
    /// [rax + disp32]`, either `0F 1F 80 d32` (7 bytes, the assembler's
    /// choice) or `0F 1F 84 00 d32` (8 bytes, with a SIB byte).
    pub fn decode(insn: &[u8]) -> Option<Marker> {
        let disp = match insn {
            [0x0F, 0x1F, 0x80, d @ ..] if d.len() == 4 => d,
            [0x0F, 0x1F, 0x84, 0x00, d @ ..] if d.len() == 4 => d,
            _ => return None,
        };
        Marker::from_disp(u32::from_le_bytes([disp[0], disp[1], disp[2], disp[3]]))
    }
}

/// A multiplicative hasher for line numbers (the hot path hashes one u64;
/// SipHash would cost more than the rest of the callback).
#[derive(Default, Clone, Copy)]
pub struct LineHasher(u64);

impl Hasher for LineHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0.rotate_left(5) ^ u64::from(b)).wrapping_mul(0x517c_c1b7_2722_0a95);
        }
    }
    fn write_u64(&mut self, n: u64) {
        self.0 = (n ^ (n >> 29)).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    }
}

/// Writer PCs kept per line per vCPU.
pub const PCS_PER_VCPU: usize = 4;

/// What one vCPU did to one line.
#[derive(Debug, Clone, Copy, Default)]
pub struct LineUse {
    pub read: bool,
    pub written: bool,
    /// Windows (operations) of this vCPU that touched the line.
    pub windows: u32,
    last_window: u64,
    npcs: u8,
    pcs: [u64; PCS_PER_VCPU],
}

impl LineUse {
    /// The distinct writer PCs kept (the first `PCS_PER_VCPU` seen).
    pub fn pcs(&self) -> &[u64] {
        &self.pcs[..usize::from(self.npcs)]
    }
}

/// One vCPU's table: its operations and the lines it touched in windows.
#[derive(Debug, Default)]
pub struct VcpuTable {
    pub ops: u64,
    /// Windows begun on this vCPU (never reset: it only tells windows apart).
    pub window: u64,
    pub lines: HashMap<u64, LineUse, BuildHasherDefault<LineHasher>>,
}

impl VcpuTable {
    /// Record an access of `size` bytes at guest-physical `pa` by the
    /// instruction at `pc`.
    pub fn access(&mut self, pa: u64, size: u64, store: bool, pc: u64) {
        let first = pa >> LINE_SHIFT;
        let last = pa.saturating_add(size.max(1) - 1) >> LINE_SHIFT;
        for line in first..=last {
            let u = self.lines.entry(line).or_default();
            if u.last_window != self.window {
                u.last_window = self.window;
                u.windows += 1;
            }
            if store {
                u.written = true;
                if usize::from(u.npcs) < PCS_PER_VCPU && !u.pcs().contains(&pc) {
                    u.pcs[usize::from(u.npcs)] = pc;
                    u.npcs += 1;
                }
            } else {
                u.read = true;
            }
        }
    }

    /// A window begins on this vCPU.
    pub fn begin(&mut self) {
        self.window += 1;
    }

    pub fn clear(&mut self) {
        self.ops = 0;
        self.lines.clear();
    }
}

/// One line of the merged table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MergedLine {
    pub line: u64,
    pub readers: u64,
    pub writers: u64,
    pub writer_pcs: Vec<u64>,
    /// Operations (windows, all vCPUs) that touched the line.
    pub ops: u64,
}

impl MergedLine {
    /// Written by one vCPU and read or written by another.
    pub fn is_conflict(&self) -> bool {
        self.writers != 0 && (self.readers | self.writers).count_ones() >= 2
    }
}

/// Writer PCs reported per line in a record.
pub const PCS_PER_LINE: usize = 8;

/// A dump: what every vCPU did since the last one.
#[derive(Debug, Clone, Default)]
pub struct Dump {
    pub label: u32,
    pub seq: u64,
    pub ops: u64,
    /// vCPUs that touched any line in a window.
    pub cpus: u32,
    pub lines_touched: u64,
    pub conflict_lines: u64,
    pub shared_written_lines: u64,
    /// Sum over conflict lines of the operations that touched each: the
    /// conflict lines an average operation touches is this over `ops`.
    pub conflict_op_lines: u64,
    /// The same sum over lines written by two or more vCPUs.
    pub shared_written_op_lines: u64,
    /// Conflict lines, most operations first.
    pub top: Vec<MergedLine>,
    /// Written at QEMU's exit (not by a dump marker).
    pub at_exit: bool,
}

/// Merge per-vCPU tables (index = vCPU) into a dump keeping `top` lines.
pub fn merge<'a>(tables: impl IntoIterator<Item = &'a VcpuTable>, top: usize) -> Dump {
    let mut merged: HashMap<u64, MergedLine, BuildHasherDefault<LineHasher>> = HashMap::default();
    let mut dump = Dump::default();
    let mut who = 0u64;
    for (cpu, table) in tables.into_iter().enumerate().take(MAX_VCPUS) {
        let bit = 1u64 << cpu;
        dump.ops += table.ops;
        if !table.lines.is_empty() {
            who |= bit;
        }
        for (&line, u) in &table.lines {
            let m = merged.entry(line).or_insert_with(|| MergedLine {
                line,
                readers: 0,
                writers: 0,
                writer_pcs: Vec::new(),
                ops: 0,
            });
            m.ops += u64::from(u.windows);
            if u.read {
                m.readers |= bit;
            }
            if u.written {
                m.writers |= bit;
                for &pc in u.pcs() {
                    if !m.writer_pcs.contains(&pc) && m.writer_pcs.len() < PCS_PER_LINE {
                        m.writer_pcs.push(pc);
                    }
                }
            }
        }
    }
    dump.cpus = who.count_ones();
    dump.lines_touched = merged.len() as u64;
    let mut conflicts: Vec<MergedLine> = merged
        .into_values()
        .filter(|m| {
            if m.writers.count_ones() >= 2 {
                dump.shared_written_lines += 1;
                dump.shared_written_op_lines += m.ops;
            }
            m.is_conflict()
        })
        .collect();
    dump.conflict_lines = conflicts.len() as u64;
    dump.conflict_op_lines = conflicts.iter().map(|m| m.ops).sum();
    conflicts.sort_by_key(|m| {
        (
            std::cmp::Reverse(m.ops),
            std::cmp::Reverse((m.readers | m.writers).count_ones()),
            std::cmp::Reverse(m.writers.count_ones()),
            m.line,
        )
    });
    conflicts.truncate(top);
    for m in &mut conflicts {
        m.writer_pcs.sort_unstable();
    }
    dump.top = conflicts;
    dump
}

impl Dump {
    /// The record: one JSON object, no newline (docs/SHARING.md).
    pub fn to_json(&self) -> String {
        let mut s = String::new();
        let _ = write!(
            s,
            "{{\"label\":{},\"seq\":{},\"ops\":{},\"cpus\":{},\"lines_touched\":{},\
             \"conflict_lines\":{},\"shared_written_lines\":{},\
             \"conflict_op_lines\":{},\"shared_written_op_lines\":{},",
            self.label,
            self.seq,
            self.ops,
            self.cpus,
            self.lines_touched,
            self.conflict_lines,
            self.shared_written_lines,
            self.conflict_op_lines,
            self.shared_written_op_lines
        );
        if self.at_exit {
            s.push_str("\"at_exit\":true,");
        }
        s.push_str("\"lines\":[");
        for (i, m) in self.top.iter().enumerate() {
            if i > 0 {
                s.push(',');
            }
            let _ = write!(
                s,
                "{{\"pa\":\"{:#x}\",\"readers\":{},\"writers\":{},\"ops\":{},\"writer_pcs\":[",
                m.line << LINE_SHIFT,
                m.readers,
                m.writers,
                m.ops
            );
            for (j, pc) in m.writer_pcs.iter().enumerate() {
                if j > 0 {
                    s.push(',');
                }
                let _ = write!(s, "\"{pc:#x}\"");
            }
            s.push_str("]}");
        }
        s.push_str("]}");
        s
    }
}

/// The plugin's arguments.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// Where records go (`out=PATH`).
    pub out: String,
    /// Linear maps `(virtual base, size)` whose physical address is
    /// `vaddr - base` (`direct=BASE[:SIZE]`, repeatable; SIZE default 4 GiB).
    pub direct: Vec<(u64, u64)>,
    /// Conflict lines listed per record (`top=N`, default 16).
    pub top: usize,
}

fn number(text: &str) -> Option<u64> {
    let text = text.trim().replace('_', "");
    match text.strip_prefix("0x").or_else(|| text.strip_prefix("0X")) {
        Some(hex) => u64::from_str_radix(hex, 16).ok(),
        None => text.parse().ok(),
    }
}

impl Config {
    /// Parse `KEY=VALUE` arguments; unknown keys are errors.
    pub fn parse<'a>(args: impl IntoIterator<Item = &'a str>) -> Result<Config, String> {
        let mut config = Config {
            out: String::new(),
            direct: Vec::new(),
            top: 16,
        };
        for arg in args {
            let (key, value) = arg
                .split_once('=')
                .ok_or_else(|| format!("argument {arg:?} is not KEY=VALUE"))?;
            match key {
                "out" => config.out = value.to_string(),
                "top" => {
                    config.top = number(value)
                        .filter(|&n| n <= 4096)
                        .ok_or_else(|| format!("top={value}: want 0..=4096"))?
                        as usize
                }
                "direct" => {
                    let (base, size) = match value.split_once(':') {
                        Some((b, s)) => (number(b), number(s)),
                        None => (number(value), Some(1 << 32)),
                    };
                    match (base, size) {
                        (Some(b), Some(s)) if s > 0 && b.checked_add(s - 1).is_some() => {
                            config.direct.push((b, s))
                        }
                        _ => return Err(format!("direct={value}: want BASE[:SIZE]")),
                    }
                }
                _ => return Err(format!("unknown argument {key:?} (out, direct, top)")),
            }
        }
        if config.out.is_empty() {
            return Err("out=PATH is required".into());
        }
        Ok(config)
    }

    /// The physical address of `vaddr` if it lies in a declared linear map.
    pub fn direct_phys(&self, vaddr: u64) -> Option<u64> {
        self.direct
            .iter()
            .find(|&&(base, size)| vaddr.wrapping_sub(base) < size)
            .map(|&(base, _)| vaddr - base)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn markers_decode_in_both_encodings() {
        assert_eq!(
            Marker::decode(&[0x0F, 0x1F, 0x80, 0x01, 0x00, 0xA1, 0x5C]),
            Some(Marker::Begin)
        );
        assert_eq!(
            Marker::decode(&[0x0F, 0x1F, 0x84, 0x00, 0x03, 0x00, 0xA1, 0x5C]),
            Some(Marker::Dump)
        );
        assert_eq!(
            Marker::decode(&[0x0F, 0x1F, 0x80, 0x07, 0x00, 0xA2, 0x5C]),
            Some(Marker::Label(7))
        );
        // Another displacement, a short read, another instruction.
        assert_eq!(Marker::decode(&[0x0F, 0x1F, 0x80, 0, 0, 0, 0]), None);
        assert_eq!(Marker::decode(&[0x0F, 0x1F, 0x80, 1, 0, 0xA1]), None);
        assert_eq!(Marker::decode(&[0x90]), None);
        for m in [
            Marker::Begin,
            Marker::End,
            Marker::Dump,
            Marker::Label(0xFFFF),
        ] {
            assert_eq!(Marker::from_disp(m.disp()), Some(m));
        }
    }

    #[test]
    fn one_line_written_by_two_cpus_is_one_conflict() {
        let mut t = [VcpuTable::default(), VcpuTable::default()];
        t[0].begin();
        t[1].begin();
        t[0].access(0x1000, 8, true, 0xa);
        t[1].access(0x1008, 8, true, 0xb);
        t[0].access(0x2000, 8, true, 0xc); // private
        t[1].access(0x3000, 8, false, 0xd); // private read
        t[0].ops = 1;
        t[1].ops = 1;
        let d = merge(&t, 16);
        assert_eq!(
            (d.ops, d.cpus, d.conflict_lines, d.shared_written_lines),
            (2, 2, 1, 1)
        );
        assert_eq!(d.lines_touched, 3);
        assert_eq!((d.conflict_op_lines, d.shared_written_op_lines), (2, 2));
        // A second operation on CPU 0 touching the line again counts once more.
        t[0].begin();
        t[0].access(0x1010, 8, false, 0xa);
        t[0].access(0x1018, 8, false, 0xa);
        assert_eq!(merge(&t, 16).conflict_op_lines, 3);
        assert_eq!(d.top[0].writers, 0b11);
        assert_eq!(d.top[0].writer_pcs, vec![0xa, 0xb]);
        assert!(d.to_json().contains("\"pa\":\"0x1000\""), "{}", d.to_json());
    }

    #[test]
    fn read_by_one_written_by_other_conflicts_reads_alone_do_not() {
        let mut t = [VcpuTable::default(), VcpuTable::default()];
        t[0].access(0x40, 4, true, 1);
        t[1].access(0x44, 4, false, 2);
        t[0].access(0x80, 4, false, 1);
        t[1].access(0x80, 4, false, 2);
        let d = merge(&t, 16);
        assert_eq!((d.conflict_lines, d.shared_written_lines), (1, 0));
    }

    #[test]
    fn an_access_across_a_line_boundary_touches_both() {
        let mut t = VcpuTable::default();
        t.access(0x3c, 8, true, 1);
        assert_eq!(t.lines.len(), 2);
    }

    #[test]
    fn arguments() {
        let c = Config::parse(["out=/tmp/x", "direct=0xffff800000000000", "top=3"]).unwrap();
        assert_eq!(c.direct, vec![(0xffff_8000_0000_0000, 1 << 32)]);
        assert_eq!(c.direct_phys(0xffff_8000_0012_3456), Some(0x12_3456));
        assert_eq!(c.direct_phys(0xffff_8001_0000_0000), None);
        assert_eq!(c.direct_phys(0x1000), None);
        assert!(Config::parse(["direct=1"]).is_err());
        assert!(Config::parse(["out=x", "bogus=1"]).is_err());
        assert!(Config::parse(["out=x", "direct=0xffffffffffffffff:2"]).is_err());
    }
}
