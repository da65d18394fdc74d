//! `mnemo-bench report`: runs every benchmark (each in its own process, one after the
//! other) and writes `docs/BENCHMARKS.md`: the machine, one summary table of the headline
//! figures with the baseline each was measured against in the same run and the ratio, every
//! benchmark's own tables, and a chart of append rate against users for both layouts.

use std::fmt::Write as _;
use std::path::PathBuf;
use std::process::{Command, Stdio};

/// Options of `mnemo-bench report`.
#[derive(clap::Args)]
pub struct Args {
    /// Smaller sizes (minutes instead of most of an hour); the figures are noisier.
    #[arg(long)]
    quick: bool,
    /// Where to write the report.
    #[arg(long, default_value = "docs/BENCHMARKS.md")]
    out: PathBuf,
    /// Where to write the chart (SVG), linked from the report.
    #[arg(long, default_value = "docs/benchmarks-scale.svg")]
    chart: PathBuf,
}

#[derive(serde::Deserialize)]
struct Point {
    layout: String,
    users: usize,
    append_rate: f64,
}

fn read(path: &str) -> String {
    std::fs::read_to_string(path).unwrap_or_default()
}

fn machine() -> String {
    let cpu = read("/proc/cpuinfo")
        .lines()
        .find_map(|l| {
            l.strip_prefix("model name")
                .map(|v| v.trim_start_matches([' ', '\t', ':']).to_owned())
        })
        .unwrap_or_else(|| "unknown CPU".into());
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let mem = read("/proc/meminfo")
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))
        .and_then(|v| v.split_whitespace().next()?.parse::<f64>().ok())
        .map_or("?".into(), |kb| format!("{:.0} GiB", kb / 1024.0 / 1024.0));
    let kernel = read("/proc/sys/kernel/osrelease").trim().to_owned();
    let nats = Command::new(mnemo_testkit::nats_server_binary())
        .arg("--version")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .unwrap_or_default();
    format!(
        "{cores} cores ({cpu}), {mem} RAM, Linux {kernel}, {nats}, PostgreSQL and anvil from `scripts/setup.sh`"
    )
}

/// A chart of append rate against users, one line per layout (log scale on users).
fn chart(points: &[Point]) -> String {
    let (w, h, left, bottom, top, right) = (720.0, 420.0, 80.0, 60.0, 40.0, 30.0);
    let max_rate = points.iter().map(|p| p.append_rate).fold(1.0, f64::max) * 1.1;
    let min_u = points.iter().map(|p| p.users).min().unwrap_or(1).max(1) as f64;
    let max_u = points.iter().map(|p| p.users).max().unwrap_or(10).max(10) as f64;
    let (lmin, lmax) = (
        min_u.log10().floor(),
        max_u.log10().ceil().max(min_u.log10().floor() + 1.0),
    );
    let x = |u: f64| left + (u.log10() - lmin) / (lmax - lmin) * (w - left - right);
    let y = |r: f64| h - bottom - r / max_rate * (h - bottom - top);
    let mut s = String::new();
    let _ = write!(
        s,
        r##"<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" font-family="sans-serif" font-size="12">
<rect width="100%" height="100%" fill="white"/>
<text x="{}" y="22" text-anchor="middle" font-size="15">Ledger appends/s against users on one server</text>
<line x1="{left}" y1="{}" x2="{}" y2="{}" stroke="black"/>
<line x1="{left}" y1="{top}" x2="{left}" y2="{}" stroke="black"/>
<text x="{}" y="{}" text-anchor="middle">users (log scale)</text>
<text x="18" y="{}" text-anchor="middle" transform="rotate(-90 18 {})">appends/s</text>
"##,
        w / 2.0,
        h - bottom,
        w - right,
        h - bottom,
        h - bottom,
        (w + left) / 2.0,
        h - 15.0,
        (h - bottom + top) / 2.0,
        (h - bottom + top) / 2.0,
    );
    let mut e = lmin;
    while e <= lmax {
        let u = 10f64.powf(e);
        let _ = writeln!(
            s,
            r#"<line x1="{0}" y1="{1}" x2="{0}" y2="{2}" stroke="black"/><text x="{0}" y="{3}" text-anchor="middle">{4}</text>"#,
            x(u),
            h - bottom,
            h - bottom + 5.0,
            h - bottom + 20.0,
            u as u64
        );
        e += 1.0;
    }
    for i in 0..=4 {
        let r = max_rate * f64::from(i) / 4.0;
        let _ = writeln!(
            s,
            r##"<line x1="{0}" y1="{1}" x2="{2}" y2="{1}" stroke="#ddd"/><text x="{3}" y="{4}" text-anchor="end">{5}</text>"##,
            left,
            y(r),
            w - right,
            left - 6.0,
            y(r) + 4.0,
            crate::measure::human(r)
        );
    }
    for (i, (layout, color)) in [("per-user", "#1f77b4"), ("sharded", "#d62728")]
        .iter()
        .enumerate()
    {
        let mut pts: Vec<&Point> = points.iter().filter(|p| p.layout == *layout).collect();
        pts.sort_by_key(|p| p.users);
        let line: Vec<String> = pts
            .iter()
            .map(|p| format!("{:.1},{:.1}", x(p.users as f64), y(p.append_rate)))
            .collect();
        let _ = writeln!(
            s,
            r#"<polyline fill="none" stroke="{color}" stroke-width="2" points="{}"/>"#,
            line.join(" ")
        );
        for p in &pts {
            let _ = writeln!(
                s,
                r#"<circle cx="{:.1}" cy="{:.1}" r="4" fill="{color}"/>"#,
                x(p.users as f64),
                y(p.append_rate)
            );
        }
        let ly = top + 10.0 + 18.0 * i as f64;
        let _ = writeln!(
            s,
            r#"<rect x="{}" y="{}" width="14" height="4" fill="{color}"/><text x="{}" y="{}">{layout}</text>"#,
            w - right - 120.0,
            ly - 4.0,
            w - right - 100.0,
            ly
        );
    }
    s.push_str("</svg>\n");
    s
}

pub fn run(a: &Args) -> anyhow::Result<()> {
    let exe = std::env::current_exe()?;
    let scale_json = std::env::temp_dir().join(format!("mnemo-scale-{}.json", std::process::id()));
    let scale_json_s = scale_json.display().to_string();
    let runs: Vec<(&str, Vec<&str>)> = if a.quick {
        vec![
            (
                "Custody core",
                vec![
                    "core", "--events", "5000", "--rounds", "3", "--users", "10000",
                ],
            ),
            (
                "Audit: custody bundle verification",
                vec!["verify", "--events", "100000"],
            ),
            (
                "Ingest: ledger vs raw JetStream",
                vec![
                    "ingest",
                    "--events",
                    "5000",
                    "--events-fsync",
                    "1000",
                    "--rounds",
                    "1",
                ],
            ),
            (
                "Projection into PostgreSQL",
                vec!["project", "--events", "100000", "--users", "200"],
            ),
            (
                "Ingest over HTTP",
                vec!["http", "--events", "3000", "--rounds", "3"],
            ),
            (
                "Scale: users per server",
                vec![
                    "scale",
                    "--per-user",
                    "100,1000",
                    "--sharded",
                    "1000,10000",
                    "--appends",
                    "5000",
                    "--json",
                    &scale_json_s,
                ],
            ),
        ]
    } else {
        vec![
            ("Custody core", vec!["core"]),
            ("Audit: custody bundle verification", vec!["verify"]),
            ("Ingest: ledger vs raw JetStream", vec!["ingest"]),
            ("Projection into PostgreSQL", vec!["project"]),
            ("Ingest over HTTP", vec!["http"]),
            (
                "Scale: users per server",
                vec!["scale", "--json", &scale_json_s],
            ),
        ]
    };
    let mut headlines = Vec::new();
    let mut sections = String::new();
    for (title, args) in &runs {
        eprintln!(
            "mnemo-bench report: running `mnemo-bench {}` ...",
            args.join(" ")
        );
        let out = Command::new(&exe)
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .output()?;
        let text = String::from_utf8_lossy(&out.stdout);
        let mut body = String::new();
        for line in text.lines() {
            match line.strip_prefix("HEADLINE|") {
                Some(h) => headlines.push(h.split('|').map(str::to_owned).collect::<Vec<_>>()),
                None => {
                    body.push_str(line);
                    body.push('\n');
                }
            }
        }
        let status = if out.status.success() {
            String::new()
        } else {
            format!("\n**This benchmark failed ({}).**\n", out.status)
        };
        let _ = write!(
            sections,
            "\n## {title}\n\n`mnemo-bench {}`\n{status}\n{}\n",
            args.join(" ").replace(&scale_json_s, "FILE"),
            body.trim().replace("\n## ", "\n### ")
        );
    }
    let mut md = String::new();
    let _ = write!(
        md,
        "# mnemo benchmarks\n\nWritten by `mnemo-bench report{}` on {}.\n\nMachine: {}.\n\n\
         Every figure is the median of several rounds and is printed next to a baseline measured \
         in the same run on the same machine (raw JetStream publishes, raw ed25519-dalek batch \
         verification, raw PostgreSQL inserts, direct ledger appends); the ratio is what travels \
         between machines.\n\n## Summary\n\n| figure | value | baseline (same run) | ratio | target |\n| --- | ---: | --- | ---: | --- |\n",
        if a.quick { " --quick" } else { "" },
        date(),
        machine()
    );
    for h in &headlines {
        if h.len() == 5 {
            let _ = writeln!(
                md,
                "| {} | {} | {} | {} | {} |",
                h[0], h[1], h[2], h[3], h[4]
            );
        }
    }
    if let Ok(text) = std::fs::read_to_string(&scale_json) {
        let points: Vec<Point> = serde_json::from_str(&text)?;
        std::fs::write(&a.chart, chart(&points))?;
        let name = a
            .chart
            .file_name()
            .map_or("chart.svg".into(), |n| n.to_string_lossy().into_owned());
        let _ = write!(md, "\n![appends/s against users, both layouts]({name})\n");
        let _ = std::fs::remove_file(&scale_json);
    }
    md.push_str(&sections);
    std::fs::write(&a.out, md)?;
    eprintln!(
        "mnemo-bench report: wrote {} and {}",
        a.out.display(),
        a.chart.display()
    );
    Ok(())
}

fn date() -> String {
    Command::new("date")
        .args(["-u", "+%Y-%m-%d %H:%M UTC"])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .unwrap_or_default()
}
