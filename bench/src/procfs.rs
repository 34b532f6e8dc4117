//! The server's cost as the kernel counts it: CPU time (utime + stime) and resident memory of a
//! process and all its descendants, read from `/proc`. wrangler dev is a node process with workerd
//! children, so the whole tree is what one system costs.

use std::collections::HashMap;
use std::fs;

/// Linux reports utime/stime in USER_HZ ticks, which is 100 on every architecture it supports.
const TICKS_PER_SECOND: f64 = 100.0;

/// `(ppid, utime + stime)` from one `/proc/<pid>/stat`.
fn stat(pid: u32) -> Option<(u32, u64)> {
    stat_split(pid).map(|(ppid, utime, stime)| (ppid, utime + stime))
}

/// `(ppid, utime, stime)` from one `/proc/<pid>/stat`.
fn stat_split(pid: u32) -> Option<(u32, u64, u64)> {
    let text = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name may hold spaces and parentheses: fields start after the last ')'.
    let rest = &text[text.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split(' ').collect();
    // After the name: state(0) ppid(1) … utime(11) stime(12).
    let ppid = fields.get(1)?.parse().ok()?;
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some((ppid, utime, stime))
}

/// `root` and every process below it.
pub fn tree(root: u32) -> Vec<u32> {
    let mut children: HashMap<u32, Vec<u32>> = HashMap::new();
    if let Ok(dir) = fs::read_dir("/proc") {
        for entry in dir.flatten() {
            let Some(pid) = entry.file_name().to_str().and_then(|n| n.parse::<u32>().ok()) else { continue };
            if let Some((ppid, _)) = stat(pid) {
                children.entry(ppid).or_default().push(pid);
            }
        }
    }
    let mut out = vec![root];
    let mut i = 0;
    while i < out.len() {
        if let Some(kids) = children.get(&out[i]) {
            out.extend(kids);
        }
        i += 1;
    }
    out
}

/// CPU seconds used so far by the tree under `root` (its processes alive now).
pub fn cpu_seconds(root: u32) -> f64 {
    tree(root).into_iter().filter_map(stat).map(|(_, ticks)| ticks as f64 / TICKS_PER_SECOND).sum()
}

/// Kernel-mode CPU seconds (stime) used so far by the tree under `root`. On loopback much of the
/// receiving side's TCP work runs in the sender's system calls, so this share grows with the
/// bytes sent as well as with the number of writes.
pub fn system_cpu_seconds(root: u32) -> f64 {
    tree(root).into_iter().filter_map(stat_split).map(|(_, _, stime)| stime as f64 / TICKS_PER_SECOND).sum()
}

/// CPU seconds used so far by this process.
pub fn own_cpu_seconds() -> f64 {
    stat(std::process::id()).map_or(0.0, |(_, ticks)| ticks as f64 / TICKS_PER_SECOND)
}

/// Resident memory of the tree under `root`, in KiB.
pub fn rss_kib(root: u32) -> u64 {
    tree(root)
        .into_iter()
        .filter_map(|pid| {
            let status = fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
            let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
            line.split_whitespace().nth(1)?.parse::<u64>().ok()
        })
        .sum()
}
