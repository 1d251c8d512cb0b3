//! Aggregation of records: median and spread over runs, scaling efficiency,
//! ratios between systems, and the grouping every table and plot uses.
//!
//! Invariants: results of different accelerators are never in one `Group`
//! (the accelerator is part of the group key), nor are different units or
//! modes; a missing or zero baseline gives `None`, never a division by zero.
//! Pure functions on data: nothing here does I/O.

use super::record::Record;
use std::collections::BTreeMap;

/// Median, minimum and maximum of a non-empty sample.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Summary {
    pub median: f64,
    pub min: f64,
    pub max: f64,
    pub runs: usize,
}

/// The median (mean of the two middle values for an even count), minimum
/// and maximum; `None` for an empty sample.
pub fn summarize(values: &[f64]) -> Option<Summary> {
    if values.is_empty() {
        return None;
    }
    let mut v = values.to_vec();
    v.sort_by(|a, b| a.total_cmp(b));
    let n = v.len();
    let median = if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    };
    Some(Summary {
        median,
        min: v[0],
        max: v[n - 1],
        runs: n,
    })
}

/// Scaling efficiency ops(N) / (N · ops(1)): 1.0 is perfect scaling.
pub fn efficiency(ops_n: f64, n: u32, ops_1: f64) -> Option<f64> {
    if n == 0 || ops_1 <= 0.0 || !ops_1.is_finite() {
        return None;
    }
    Some(ops_n / (n as f64 * ops_1))
}

/// `a / b`, or `None` when `b` is not positive.
pub fn ratio(a: f64, b: f64) -> Option<f64> {
    (b > 0.0 && b.is_finite()).then(|| a / b)
}

/// What one table and one plot show: one workload in one mode and unit,
/// measured on one accelerator.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct GroupKey {
    pub accel: String,
    pub workload: String,
    pub mode: String,
    pub unit: String,
}

/// The aggregated results of one group: system -> cores -> summary.
#[derive(Debug, Clone, Default)]
pub struct Group {
    pub cells: BTreeMap<String, BTreeMap<u32, Summary>>,
}

impl Group {
    /// Every core count that any system has, ascending.
    pub fn core_counts(&self) -> Vec<u32> {
        let mut all: Vec<u32> = self
            .cells
            .values()
            .flat_map(|m| m.keys().copied())
            .collect();
        all.sort_unstable();
        all.dedup();
        all
    }

    pub fn get(&self, system: &str, cores: u32) -> Option<Summary> {
        self.cells.get(system)?.get(&cores).copied()
    }

    /// Scaling efficiency of `system` at `cores` (medians), if it has 1 core.
    pub fn efficiency(&self, system: &str, cores: u32) -> Option<f64> {
        efficiency(
            self.get(system, cores)?.median,
            cores,
            self.get(system, 1)?.median,
        )
    }

    /// Ratio of the medians of two systems at `cores`.
    pub fn ratio(&self, a: &str, b: &str, cores: u32) -> Option<f64> {
        ratio(self.get(a, cores)?.median, self.get(b, cores)?.median)
    }

    /// Systems in display order: ours, ours-global, linux, then the others
    /// (imported) by name.
    pub fn systems(&self) -> Vec<String> {
        let mut names: Vec<String> = self.cells.keys().cloned().collect();
        names.sort_by_key(|n| (system_rank(n), n.clone()));
        names
    }
}

/// Display rank of a system name (known systems first, in `options::ALL`'s order).
pub use super::options::system_rank;

/// Group the records and summarise each (system, cores) cell over its runs.
pub fn aggregate(records: &[Record]) -> BTreeMap<GroupKey, Group> {
    let mut raw: BTreeMap<GroupKey, BTreeMap<String, BTreeMap<u32, Vec<f64>>>> = BTreeMap::new();
    for r in records {
        let key = GroupKey {
            accel: r.accel.clone(),
            workload: r.workload.clone(),
            mode: r.mode.clone(),
            unit: r.unit.clone(),
        };
        raw.entry(key)
            .or_default()
            .entry(r.system.clone())
            .or_default()
            .entry(r.cores)
            .or_default()
            .push(r.ops_per_sec);
    }
    raw.into_iter()
        .map(|(key, systems)| {
            let cells = systems
                .into_iter()
                .map(|(sys, by_cores)| {
                    let m = by_cores
                        .into_iter()
                        .filter_map(|(c, v)| summarize(&v).map(|s| (c, s)))
                        .collect();
                    (sys, m)
                })
                .collect();
            (key, Group { cells })
        })
        .collect()
}

/// Geometric mean of positive values; `None` if there are none.
pub fn geomean(values: &[f64]) -> Option<f64> {
    let logs: Vec<f64> = values
        .iter()
        .filter(|v| **v > 0.0 && v.is_finite())
        .map(|v| v.ln())
        .collect();
    if logs.is_empty() {
        return None;
    }
    Some((logs.iter().sum::<f64>() / logs.len() as f64).exp())
}

#[cfg(test)]
mod tests {
    use super::super::record::sample;
    use super::*;

    #[test]
    fn median_and_spread() {
        assert_eq!(summarize(&[]), None);
        let s = summarize(&[3.0, 1.0, 2.0]).unwrap();
        assert_eq!((s.median, s.min, s.max, s.runs), (2.0, 1.0, 3.0, 3));
        let s = summarize(&[4.0, 1.0, 2.0, 10.0]).unwrap();
        assert_eq!((s.median, s.min, s.max), (3.0, 1.0, 10.0));
        assert_eq!(summarize(&[5.0]).unwrap().median, 5.0);
    }

    #[test]
    fn scaling_efficiency_and_ratios() {
        assert_eq!(efficiency(200.0, 2, 100.0), Some(1.0));
        assert_eq!(efficiency(100.0, 4, 100.0), Some(0.25));
        assert_eq!(efficiency(100.0, 2, 0.0), None);
        assert_eq!(efficiency(100.0, 0, 1.0), None);
        assert_eq!(ratio(3.0, 2.0), Some(1.5));
        assert_eq!(ratio(3.0, 0.0), None);
        assert!((geomean(&[1.0, 4.0]).unwrap() - 2.0).abs() < 1e-12);
        assert_eq!(geomean(&[0.0]), None);
    }

    #[test]
    fn aggregation_groups_by_accel_and_summarises_runs() {
        let mut recs = vec![
            sample("ours", "getppid", 1, 0, 100.0),
            sample("ours", "getppid", 1, 1, 120.0),
            sample("ours", "getppid", 1, 2, 80.0),
            sample("ours", "getppid", 2, 0, 150.0),
            sample("linux", "getppid", 1, 0, 50.0),
            sample("linux", "getppid", 2, 0, 100.0),
            sample("ours-global", "getppid", 2, 0, 75.0),
        ];
        let mut kvm = sample("ours", "getppid", 1, 0, 9999.0);
        kvm.accel = "kvm".into();
        recs.push(kvm);
        let groups = aggregate(&recs);
        assert_eq!(groups.len(), 2, "kvm and tcg never share a group");
        let tcg = groups.iter().find(|(k, _)| k.accel == "tcg").unwrap().1;
        let s = tcg.get("ours", 1).unwrap();
        assert_eq!((s.median, s.min, s.max, s.runs), (100.0, 80.0, 120.0, 3));
        assert_eq!(tcg.core_counts(), vec![1, 2]);
        assert_eq!(tcg.efficiency("ours", 2), Some(0.75));
        assert_eq!(tcg.efficiency("linux", 2), Some(1.0));
        assert_eq!(tcg.efficiency("ours-global", 2), None, "no 1-core baseline");
        assert_eq!(tcg.ratio("ours", "linux", 2), Some(1.5));
        assert_eq!(tcg.ratio("ours", "ours-global", 2), Some(2.0));
        assert_eq!(tcg.systems(), vec!["ours", "ours-global", "linux"]);
    }
}
