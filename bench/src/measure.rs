//! Timing rounds and printing a table.

use std::time::Instant;

/// Runs `f` (which does `n` operations) `rounds` times and returns the median rate in
/// operations per second.
pub fn median_rate(rounds: usize, n: u64, mut f: impl FnMut()) -> f64 {
    let mut rates: Vec<f64> = (0..rounds.max(1))
        .map(|_| {
            let t = Instant::now();
            f();
            n as f64 / t.elapsed().as_secs_f64()
        })
        .collect();
    rates.sort_by(f64::total_cmp);
    rates[rates.len() / 2]
}

/// The median of `v` (the upper one of an even count).
pub fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// One row of a result table.
pub struct Row {
    pub what: String,
    pub rate: f64,
    pub unit: &'static str,
    pub baseline: Option<(String, f64)>,
}

pub fn print_table(title: &str, rows: &[Row]) {
    println!("\n## {title}\n");
    println!("| what | median rate | baseline (same run) | ratio |");
    println!("| --- | ---: | --- | ---: |");
    for r in rows {
        let (b, ratio) = match &r.baseline {
            Some((name, base)) => (
                format!("{name}: {}", human(*base)),
                format!("{:.3}", r.rate / base),
            ),
            None => ("".into(), "".into()),
        };
        println!(
            "| {} | {} {} | {} | {} |",
            r.what,
            human(r.rate),
            r.unit,
            b,
            ratio
        );
    }
}

pub fn human(x: f64) -> String {
    if x >= 1e6 {
        format!("{:.2}M", x / 1e6)
    } else if x >= 1e3 {
        format!("{:.1}k", x / 1e3)
    } else {
        format!("{x:.1}")
    }
}

/// Prints the line `mnemo-bench report` collects into its summary table:
/// `HEADLINE|figure|value|baseline (same run)|ratio|target`.
pub fn headline(what: &str, value: String, baseline: String, ratio: f64, target: &str) {
    println!("HEADLINE|{what}|{value}|{baseline}|{ratio:.3}|{target}");
}

/// A memory field of `/proc/<pid>/status` (`VmRSS:`, `VmHWM:`), in MiB; this process when
/// `pid` is `None` (Linux; 0 elsewhere).
pub fn status_mib(pid: Option<u32>, field: &str) -> f64 {
    let path = pid.map_or("/proc/self/status".to_owned(), |p| {
        format!("/proc/{p}/status")
    });
    std::fs::read_to_string(path)
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix(field))
                .and_then(|v| v.split_whitespace().next()?.parse::<f64>().ok())
        })
        .map_or(0.0, |kb| kb / 1024.0)
}

/// CPU time (user + system) of this process or of `pid`, in ms, from /proc (Linux; 0
/// elsewhere).
fn cpu_ms(pid: Option<u32>) -> f64 {
    let path = pid.map_or("/proc/self/stat".to_string(), |p| format!("/proc/{p}/stat"));
    let Ok(stat) = std::fs::read_to_string(path) else {
        return 0.0;
    };
    // fields after the command name (which is in parentheses and may hold spaces)
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks: f64 = f.get(11).and_then(|x| x.parse().ok()).unwrap_or(0.0)
        + f.get(12).and_then(|x| x.parse().ok()).unwrap_or(0.0);
    ticks * 10.0 // USER_HZ is 100 on Linux
}

/// CPU time so far (ms) of this process and of the server `pid`.
pub fn cpu_now(pid: u32) -> [f64; 2] {
    [cpu_ms(None), cpu_ms(Some(pid))]
}

/// CPU µs per operation between two [`cpu_now`] readings: this process, the server.
pub fn cpu_per_op(from: [f64; 2], to: [f64; 2], ops: usize) -> [f64; 2] {
    [0, 1].map(|i| (to[i] - from[i]) * 1e3 / ops as f64)
}

/// Creates users `<prefix>0 .. <prefix>{n-1}`, 64 at a time.
pub async fn create_users(
    ledger: &mnemo_ledger::Ledger,
    prefix: &str,
    n: usize,
) -> anyhow::Result<Vec<mnemo_core::UserId>> {
    use futures::StreamExt;
    let ids: Vec<mnemo_core::UserId> = (0..n)
        .map(|i| mnemo_core::UserId::new(format!("{prefix}{i}")).expect("valid"))
        .collect();
    {
        let mut creating = futures::stream::FuturesUnordered::new();
        for u in &ids {
            creating.push(ledger.create_user(u));
            if creating.len() >= 64 {
                creating.next().await.expect("non-empty")?;
            }
        }
        while let Some(r) = creating.next().await {
            r?;
        }
    }
    Ok(ids)
}
