//! Memory at rest: when the process has gone quiet (start-up over, a storm passed), it gives
//! back what the busy period touched, so that an idle replica's resident set is its working set
//! ([`trim_when_idle`]).
//!
//! - **Code.** Start-up (configuration, migrations, rules and policies, clients, the first engine
//!   pass) runs code from all over the 16 MB text segment, and the kernel maps every page it
//!   touches plus its neighbours (fault-around, 64 KiB). Those pages stay resident for the
//!   process's life although an idle daemon runs a small fraction of them. `MADV_DONTNEED` on the
//!   executable's code mapping (read-only, never written: its pages are clean copies of the file)
//!   unmaps them; they stay in the page cache, and code that runs again is mapped back by a minor
//!   fault. Only the `r-xp` mapping of remedyd's own executable is touched: writable or relocated
//!   mappings hold private data and are never advised.
//! - **Heap.** `malloc_trim(0)` returns the free memory at the top of glibc's heaps.
//!
//! Both are advice: a failure is logged and changes nothing else.

use std::path::Path;

/// What [`release_idle_pages`] gave back: bytes of code unmapped, resident set before/after.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Released {
    /// Length of the executable's code mapping that was advised.
    pub code_bytes: usize,
    /// `VmRSS` before, in KiB (0 when unreadable).
    pub rss_before_kib: u64,
    /// `VmRSS` after, in KiB (0 when unreadable).
    pub rss_after_kib: u64,
}

/// The resident set size of this process, in KiB (`VmRSS` of `/proc/self/status`).
pub fn rss_kib() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    status.lines().find_map(|l| {
        l.strip_prefix("VmRSS:")?
            .trim()
            .trim_end_matches("kB")
            .trim()
            .parse()
            .ok()
    })
}

/// The `(start, end)` of the read-and-execute mappings of `exe` in a `/proc/self/maps` text.
pub fn code_mappings(maps: &str, exe: &Path) -> Vec<(usize, usize)> {
    let exe = exe.to_string_lossy();
    maps.lines()
        .filter_map(|line| {
            let mut f = line.split_whitespace();
            let range = f.next()?;
            let perms = f.next()?;
            // offset, device, inode, then the path (which may contain spaces).
            let path = f.skip(3).collect::<Vec<_>>().join(" ");
            if perms != "r-xp" || path != exe {
                return None;
            }
            let (a, b) = range.split_once('-')?;
            let start = usize::from_str_radix(a, 16).ok()?;
            let end = usize::from_str_radix(b, 16).ok()?;
            (end > start).then_some((start, end))
        })
        .collect()
}

/// How often [`trim_when_idle`] looks.
const LOOK_EVERY: std::time::Duration = std::time::Duration::from_secs(2);
/// CPU time (clock ticks, 1/100 s) at most in one [`LOOK_EVERY`] for the process to count as
/// quiet: 20 ms in 2 s, 1 % of a core (an idle replica's ticks use well under that). CPU alone
/// no longer tells a light load apart: 90 webhooks a second came to use less, were trimmed every
/// few seconds, and paid the code faults back in their p99 (2.5 → 4–6 ms). So no webhook may
/// have come in either ([`quiet`]).
const QUIET_TICKS: u64 = 2;
/// Growth of the resident set since the last trim (KiB) that makes a trim worth it.
const WORTH_KIB: u64 = 1024;

/// CPU ticks (user + system) this process has used (`/proc/self/stat`).
fn cpu_ticks() -> Option<u64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    let after = stat.rsplit_once(')')?.1;
    let f: Vec<&str> = after.split_whitespace().collect();
    Some(f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?)
}

/// Every [`LOOK_EVERY`], when the process was quiet over the last look and its resident set has
/// grown by [`WORTH_KIB`] since the last trim, gives back the code pages and free heap the busy
/// period left resident ([`release_idle_pages`]). The next burst maps back the code it runs
/// (minor faults from the page cache).
pub async fn trim_when_idle(
    cancel: tokio_util::sync::CancellationToken,
    webhooks_seen: impl Fn() -> u64 + Send + 'static,
) {
    let mut last_cpu = cpu_ticks();
    let mut last_seen = webhooks_seen();
    let mut after_trim = 0u64;
    loop {
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = tokio::time::sleep(LOOK_EVERY) => {}
        }
        let (cpu, seen) = (cpu_ticks(), webhooks_seen());
        let quiet = quiet((last_cpu, cpu), (last_seen, seen));
        (last_cpu, last_seen) = (cpu, seen);
        if !quiet || rss_kib().unwrap_or(0) < after_trim + WORTH_KIB {
            continue;
        }
        match release_idle_pages() {
            Ok(r) => {
                after_trim = r.rss_after_kib;
                tracing::debug!(
                    code_bytes = r.code_bytes,
                    rss_before_kib = r.rss_before_kib,
                    rss_after_kib = r.rss_after_kib,
                    "Idle: gave back memory"
                );
            }
            Err(e) => {
                // Advice only: nothing else depends on it. Said once, then no more tries.
                tracing::warn!(error = %e, "Idle: could not give back memory; not trying again");
                return;
            }
        }
        // The trim itself must not count as activity.
        last_cpu = cpu_ticks();
    }
}

/// Whether the last look was quiet: CPU ticks (before, now) within [`QUIET_TICKS`], and webhooks
/// answered (before, now) none.
fn quiet(cpu: (Option<u64>, Option<u64>), webhooks: (u64, u64)) -> bool {
    let idle_cpu = matches!(cpu, (Some(a), Some(b)) if b.saturating_sub(a) <= QUIET_TICKS);
    idle_cpu && webhooks.1 == webhooks.0
}

/// Gives back the code pages and free heap a busy period (start-up, a storm) left resident (see the module).
pub fn release_idle_pages() -> Result<Released, String> {
    let rss_before_kib = rss_kib().unwrap_or(0);
    let exe = std::fs::read_link("/proc/self/exe").map_err(|e| format!("/proc/self/exe: {e}"))?;
    let maps =
        std::fs::read_to_string("/proc/self/maps").map_err(|e| format!("/proc/self/maps: {e}"))?;
    let mut code_bytes = 0;
    for (start, end) in code_mappings(&maps, &exe) {
        // SAFETY: the range is a whole mapping of the executable's own code, read-only and
        // private, as the kernel lists it; its pages are never written, so dropping them loses
        // nothing (the next access maps the file's page again). No Rust reference points into
        // it as data.
        let r =
            unsafe { libc::madvise(start as *mut libc::c_void, end - start, libc::MADV_DONTNEED) };
        if r != 0 {
            return Err(format!(
                "madvise(MADV_DONTNEED) on the code mapping {start:#x}-{end:#x}: {}",
                std::io::Error::last_os_error()
            ));
        }
        code_bytes += end - start;
    }
    // SAFETY: malloc_trim only returns free memory to the system; it takes no pointer.
    unsafe {
        libc::malloc_trim(0);
    }
    Ok(Released {
        code_bytes,
        rss_before_kib,
        rss_after_kib: rss_kib().unwrap_or(0),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_look_with_a_webhook_or_busy_cpu_is_not_quiet() {
        assert!(quiet((Some(100), Some(102)), (7, 7)), "idle");
        assert!(
            !quiet((Some(100), Some(101)), (7, 8)),
            "one cheap webhook: a light load goes on, its code must stay mapped"
        );
        assert!(
            !quiet((Some(100), Some(103)), (7, 7)),
            "busy without webhooks"
        );
        assert!(
            !quiet((None, Some(100)), (7, 7)),
            "CPU unreadable: never trimmed"
        );
    }

    #[test]
    fn only_the_executables_read_execute_mappings_are_chosen() {
        let maps = "\
55e0a000-55e0b000 r--p 00000000 fe:00 42 /usr/bin/remedyd
55e0b000-55e2b000 r-xp 00001000 fe:00 42 /usr/bin/remedyd
55e2b000-55e2c000 rw-p 00021000 fe:00 42 /usr/bin/remedyd
7f00000-7f10000 r-xp 00000000 fe:00 7 /usr/lib/x86_64-linux-gnu/libc.so.6
7f20000-7f30000 r-xp 00000000 fe:00 43 /usr/bin/remedyd (deleted)
7f40000-7f41000 rw-p 00000000 00:00 0 [heap]
";
        assert_eq!(
            code_mappings(maps, Path::new("/usr/bin/remedyd")),
            vec![(0x55e0b000, 0x55e2b000)]
        );
        assert!(code_mappings(maps, Path::new("/usr/bin/other")).is_empty());
    }

    #[test]
    fn releasing_keeps_the_process_running_and_does_not_grow_it() {
        let exe = std::fs::read_link("/proc/self/exe").unwrap();
        let mapped = || code_mappings(&std::fs::read_to_string("/proc/self/maps").unwrap(), &exe);
        let before = mapped();
        let r = release_idle_pages().unwrap();
        assert!(
            r.code_bytes > 0,
            "the test binary has a code mapping: {r:?}"
        );
        // The advice drops pages, never the mapping: the code is still there, and runs (this
        // very closure is in it).
        assert_eq!(mapped(), before);
        assert!(r.rss_after_kib <= r.rss_before_kib, "{r:?}");
    }
}
