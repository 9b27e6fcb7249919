//! Text tables (Markdown, aligned for the terminal) and the SVG chart of a comparison.

use std::fmt::Write as _;

use super::compare::{Comparison, Metric, Row, Side};
use super::process::Flavor;
use super::{Report, WorkloadResult};

/// An aligned Markdown table; `right[i]` right-aligns column i.
pub fn table(headers: &[&str], right: &[bool], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = headers.iter().map(|h| h.chars().count()).collect();
    for r in rows {
        for (i, cell) in r.iter().enumerate() {
            if let Some(w) = widths.get_mut(i) {
                *w = (*w).max(cell.chars().count());
            }
        }
    }
    let line = |cells: &mut dyn Iterator<Item = &str>| {
        let mut s = String::from("|");
        for (i, cell) in cells.enumerate() {
            let w = widths.get(i).copied().unwrap_or(0);
            if right.get(i).copied().unwrap_or(false) {
                let _ = write!(s, " {cell:>w$} |");
            } else {
                let _ = write!(s, " {cell:<w$} |");
            }
        }
        s.push('\n');
        s
    };
    let mut out = line(&mut headers.iter().copied());
    out.push('|');
    for (i, w) in widths.iter().enumerate() {
        if right.get(i).copied().unwrap_or(false) {
            let _ = write!(out, "{}:|", "-".repeat(w + 1));
        } else {
            let _ = write!(out, "{}|", "-".repeat(w + 2));
        }
    }
    out.push('\n');
    for r in rows {
        out.push_str(&line(&mut r.iter().map(String::as_str)));
    }
    out
}

/// `12,345`; fractions below 100 keep one decimal.
pub fn fmt_count(v: f64) -> String {
    if !v.is_finite() {
        return "-".into();
    }
    if v.abs() < 100.0 && v.fract() != 0.0 {
        return format!("{v:.1}");
    }
    let n = v.round() as i64;
    let grouped = fmt_int(n.unsigned_abs());
    if n < 0 {
        format!("-{grouped}")
    } else {
        grouped
    }
}

/// An integer with thousands separators.
pub fn fmt_int(v: u64) -> String {
    let digits = v.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// Milliseconds with three significant figures or so.
pub fn fmt_ms(ms: f64) -> String {
    if !ms.is_finite() {
        "-".into()
    } else if ms < 10.0 {
        format!("{ms:.3}")
    } else if ms < 1000.0 {
        format!("{ms:.1}")
    } else {
        fmt_count(ms)
    }
}

/// A ratio as `2.35×`.
pub fn fmt_ratio(r: f64) -> String {
    if !r.is_finite() {
        "∞".into()
    } else if r >= 100.0 {
        format!("{r:.0}×")
    } else if r >= 10.0 {
        format!("{r:.1}×")
    } else {
        format!("{r:.2}×")
    }
}

fn fmt_value(metric: Metric, v: f64) -> String {
    match metric {
        Metric::OpsPerSec => fmt_count(v),
        Metric::Rss | Metric::IdleRss | Metric::ServerCpu => format!("{v:.1}"),
        _ => fmt_ms(v),
    }
}

/// The table of one server's results: ops, ops/s, latency percentiles, RSS.
pub fn results_table(results: &[WorkloadResult]) -> String {
    let ms = |us: u64| fmt_ms(us as f64 / 1000.0);
    let rows: Vec<Vec<String>> = results
        .iter()
        .map(|r| {
            vec![
                r.workload.to_string(),
                fmt_int(r.ops),
                r.ops_per_sec.map_or_else(|| "-".into(), fmt_count),
                ms(r.latency.p50_us),
                ms(r.latency.p90_us),
                ms(r.latency.p99_us),
                ms(r.latency.max_us),
                r.rss_kib
                    .map_or_else(|| "-".into(), |k| format!("{:.1}", k as f64 / 1024.0)),
            ]
        })
        .collect();
    table(
        &[
            "workload", "ops", "ops/s", "p50 ms", "p90 ms", "p99 ms", "max ms", "RSS MiB",
        ],
        &[false, true, true, true, true, true, true, true],
        &rows,
    )
}

/// What each workload's operation is, and its extra figures, one line each.
pub fn notes(results: &[WorkloadResult]) -> String {
    let mut out = String::new();
    for r in results {
        let _ = write!(out, "- {}: one op = {}", r.workload, r.workload.unit());
        for (k, v) in &r.extra {
            let _ = write!(out, "; {k} {}", fmt_count(*v));
        }
        out.push('\n');
    }
    out
}

/// `rookery bench`'s output.
pub fn bench_report(report: &Report) -> String {
    let o = &report.options;
    let mut out = format!(
        "rookery bench against {}: {} sessions × {} in flight, {:?} measured after {:?} of \
         warm-up, {}-byte values\n\n",
        report.server, o.sessions, o.in_flight, o.duration, o.warmup, o.value_size
    );
    out.push_str(&results_table(&report.results));
    out.push('\n');
    out.push_str(&notes(&report.results));
    out
}

fn goal_text(row: &Row) -> String {
    match row.goal {
        None => "info".into(),
        Some(g) => {
            let op = if row.metric.higher_is_better() {
                "≥"
            } else {
                "≤"
            };
            let r = if g.ratio >= 1.0 {
                format!("{:.0}", g.ratio)
            } else {
                format!("{}", g.ratio)
            };
            if g.target {
                format!("{op}{r}× (target)")
            } else {
                format!("{op}{r}×")
            }
        }
    }
}

/// The side-by-side table of a comparison.
pub fn comparison_table(rows: &[Row]) -> String {
    let cells: Vec<Vec<String>> = rows
        .iter()
        .map(|r| {
            vec![
                r.label(),
                fmt_value(r.metric, r.rookery),
                fmt_value(r.metric, r.zookeeper),
                fmt_ratio(r.ratio),
                goal_text(r),
                match r.met {
                    Some(true) => "yes".into(),
                    Some(false) => "**no**".into(),
                    None => "".into(),
                },
            ]
        })
        .collect();
    table(
        &[
            "metric",
            "Rookery",
            "ZooKeeper",
            "Rookery/ZooKeeper",
            "goal",
            "met",
        ],
        &[false, true, true, true, false, false],
        &cells,
    )
}

fn side_title(s: &Side) -> String {
    let version = s.version.as_deref().unwrap_or("version unknown");
    let startup = s.startup_median_ms().map_or_else(|| "-".into(), fmt_ms);
    let idle = s
        .idle_rss_kib
        .map_or_else(|| "-".into(), |k| format!("{:.1}", k as f64 / 1024.0));
    format!(
        "{} ({version}): start-up {startup} ms (median of {}), idle RSS {idle} MiB",
        s.flavor,
        s.startup_ms.len()
    )
}

/// The failover runs of one server: the medians and every run, and each failed run's reason.
pub fn failover_text(s: &Side) -> String {
    if s.failover.is_empty() {
        return String::new();
    }
    let ok = s.failover.iter().filter(|r| r.error.is_none()).count();
    let list = |pick: fn(&super::failover::FailoverRun) -> Option<f64>| {
        s.failover
            .iter()
            .map(|r| pick(r).map_or_else(|| "failed".to_owned(), fmt_ms))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let mut out = format!(
        "{} failover (leader killed with SIGKILL, {ok} of {} runs finished): kill to first \
         write {} ms (median; runs: {}), kill to new leader in srvr {} ms (median; runs: {})\n",
        s.flavor,
        s.failover.len(),
        s.failover_write_median_ms()
            .map_or_else(|| "-".into(), fmt_ms),
        list(|r| r.write_ms),
        s.failover_leader_median_ms()
            .map_or_else(|| "-".into(), fmt_ms),
        list(|r| r.leader_ms),
    );
    for (i, r) in s.failover.iter().enumerate() {
        if let Some(e) = &r.error {
            let _ = writeln!(out, "FAILOVER FAILED ({}, run {}): {e}", s.flavor, i + 1);
        }
    }
    out
}

/// `rookery bench compare`'s output: the ratio table, then each server's own table.
pub fn comparison_report(c: &Comparison) -> String {
    let mut out = format!(
        "rookery bench compare ({}; {} cores; data on {}; load average {} at the start): {} \
         sessions × {} in flight, {:?} measured after {:?} of warm-up, {}-byte values; {}\n\n",
        c.topology,
        c.machine.cores,
        c.machine.filesystem.as_deref().unwrap_or("unknown fs"),
        c.load_average
            .map_or_else(|| "unknown".into(), |l| format!("{l:.2}")),
        c.options.sessions,
        c.options.in_flight,
        c.options.duration,
        c.options.warmup,
        c.options.value_size,
        if c.rounds > 1 {
            format!("the median of {} runs per workload and server", c.rounds)
        } else {
            "one run per workload and server".to_owned()
        },
    );
    if !c.rows.is_empty() {
        out.push_str(&comparison_table(&c.rows));
        let missed: Vec<String> = c
            .rows
            .iter()
            .filter(|r| r.met == Some(false))
            .map(Row::label)
            .collect();
        if missed.is_empty() {
            out.push_str("\nEvery goal is met.\n");
        } else {
            let _ = writeln!(out, "\nGoals missed: {}.", missed.join(", "));
        }
        out.push('\n');
    }
    for s in &c.sides {
        let _ = writeln!(out, "{}\n", side_title(s));
        if !s.results.is_empty() {
            out.push_str(&results_table(&s.results));
            out.push('\n');
        }
        let failover = failover_text(s);
        if !failover.is_empty() {
            out.push_str(&failover);
            out.push('\n');
        }
    }
    if let Some(s) = c.sides.first() {
        out.push_str(&notes(&s.results));
    }
    out
}

fn xml_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// A horizontal bar chart of Rookery's advantage per headline row (throughput, p99, RSS,
/// start-up, and for ensembles the failover until the first write), on a log scale from 0.1× to 100×, with each goal marked. Written by hand: plain
/// SVG 1.1, no scripts, no external fonts.
pub fn svg(c: &Comparison) -> String {
    let rows: Vec<&Row> = c
        .rows
        .iter()
        .filter(|r| {
            r.goal.is_some()
                && matches!(
                    r.metric,
                    Metric::OpsPerSec
                        | Metric::P99
                        | Metric::ServerCpu
                        | Metric::Rss
                        | Metric::IdleRss
                        | Metric::Startup
                        | Metric::FailoverWrite
                )
        })
        .collect();
    let (lo, hi) = (0.1f64, 100.0f64);
    let (left, right) = (190.0, 690.0);
    let x = |v: f64| {
        let v = v.clamp(lo, hi);
        left + (v.log10() - lo.log10()) / (hi.log10() - lo.log10()) * (right - left)
    };
    let top = 70.0;
    let bar = 16.0;
    let step = 24.0;
    let height = top + step * rows.len() as f64 + 60.0;
    let width = 780.0;
    let zk_version = c
        .sides
        .iter()
        .find(|s| s.flavor == Flavor::Zookeeper)
        .and_then(|s| s.version.as_deref())
        .map(|v| v.split([',', '-']).next().unwrap_or(v).trim().to_owned())
        .unwrap_or_else(|| "3.8".into());
    let mut s = String::new();
    let _ = writeln!(
        s,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" viewBox="0 0 {width} {height}" font-family="sans-serif" font-size="12">"#
    );
    let _ = writeln!(s, r##"<rect width="100%" height="100%" fill="#ffffff"/>"##);
    let _ = writeln!(
        s,
        r#"<text x="20" y="22" font-size="15" font-weight="bold">Rookery vs Apache ZooKeeper {} ({})</text>"#,
        xml_escape(&zk_version),
        xml_escape(&c.topology)
    );
    let _ = writeln!(
        s,
        r##"<text x="20" y="40" fill="#555555">How many times better Rookery is: log scale, the ratio inverted where lower is better; the black tick is the goal.</text>"##
    );
    // Grid and axis labels.
    for t in [0.1, 0.2, 0.5, 1.0, 2.0, 5.0, 10.0, 20.0, 50.0, 100.0] {
        let gx = x(t);
        let (stroke, w) = if t == 1.0 {
            ("#333333", 1.5)
        } else {
            ("#dddddd", 1.0)
        };
        let _ = writeln!(
            s,
            r#"<line x1="{gx:.1}" y1="{}" x2="{gx:.1}" y2="{}" stroke="{stroke}" stroke-width="{w}"/>"#,
            top - 8.0,
            height - 45.0
        );
        let _ = writeln!(
            s,
            r##"<text x="{gx:.1}" y="{}" text-anchor="middle" fill="#555555">{}×</text>"##,
            height - 30.0,
            t
        );
    }
    for (i, r) in rows.iter().enumerate() {
        let y = top + step * i as f64;
        let adv = r.advantage;
        let (x0, x1) = if adv >= 1.0 {
            (x(1.0), x(adv))
        } else {
            (x(adv), x(1.0))
        };
        let color = match r.met {
            Some(true) => "#2e8b57",
            Some(false) => "#d9534f",
            None => "#999999",
        };
        let _ = writeln!(
            s,
            r#"<text x="{}" y="{:.1}" text-anchor="end">{}</text>"#,
            left - 10.0,
            y + bar - 4.0,
            xml_escape(&r.label())
        );
        let _ = writeln!(
            s,
            r#"<rect x="{x0:.1}" y="{y:.1}" width="{:.1}" height="{bar}" fill="{color}"/>"#,
            (x1 - x0).max(1.0)
        );
        let mut goal_x = None;
        if let Some(g) = r.goal {
            let goal_adv = if r.metric.higher_is_better() {
                g.ratio
            } else {
                1.0 / g.ratio
            };
            let gx = x(goal_adv);
            goal_x = Some(gx);
            let _ = writeln!(
                s,
                r##"<line x1="{gx:.1}" y1="{:.1}" x2="{gx:.1}" y2="{:.1}" stroke="#000000" stroke-width="2"/>"##,
                y - 2.0,
                y + bar + 2.0
            );
        }
        // The figure goes past the end of the bar, and past the goal tick when that is further.
        let (tx, anchor) = if adv >= 1.0 {
            (x1.max(goal_x.unwrap_or(x1)) + 6.0, "start")
        } else {
            (x0.min(goal_x.unwrap_or(x0)) - 6.0, "end")
        };
        let _ = writeln!(
            s,
            r#"<text x="{tx:.1}" y="{:.1}" text-anchor="{anchor}">{}</text>"#,
            y + bar - 4.0,
            xml_escape(&fmt_ratio(adv))
        );
    }
    let _ = writeln!(
        s,
        r##"<text x="20" y="{}" fill="#555555">Green: goal met; red: missed. {} cores, the load generator on the same machine.</text>"##,
        height - 10.0,
        c.machine.cores
    );
    s.push_str("</svg>\n");
    s
}

#[cfg(test)]
mod tests {
    use super::super::compare::{row, Machine};
    use super::super::process::Settings;
    use super::super::{Options, Workload};
    use super::*;

    #[test]
    fn numbers_format() {
        assert_eq!(fmt_count(1234567.4), "1,234,567");
        assert_eq!(fmt_count(999.0), "999");
        assert_eq!(fmt_count(12.34), "12.3");
        assert_eq!(fmt_count(6.0), "6");
        assert_eq!(fmt_int(1234), "1,234");
        assert_eq!(fmt_int(0), "0");
        assert_eq!(fmt_ms(0.1234), "0.123");
        assert_eq!(fmt_ms(123.45), "123.5");
        assert_eq!(fmt_ms(4012.0), "4,012");
        assert_eq!(fmt_ratio(2.345), "2.35×");
        assert_eq!(fmt_ratio(123.0), "123×");
    }

    #[test]
    fn tables_align() {
        let t = table(
            &["a", "bb"],
            &[false, true],
            &[vec!["xyz".into(), "1".into()]],
        );
        assert_eq!(t, "| a   | bb |\n|-----|---:|\n| xyz |  1 |\n");
    }

    fn comparison() -> Comparison {
        Comparison {
            command: "rookery bench compare".into(),
            unix_time: 0,
            topology: "standalone".into(),
            machine: Machine {
                cores: 2,
                ..Machine::default()
            },
            settings: Settings {
                tick_time_ms: 2000,
                rookery_bin: "rookery".into(),
                java: "java".into(),
                zookeeper_classpath: String::new(),
                zookeeper_heap_mb: 1000,
                work_dir: "/tmp".into(),
                ready_timeout: std::time::Duration::from_secs(60),
            },
            shared_config: vec![],
            options: Options::default(),
            load_average: None,
            rounds: 1,
            sides: vec![],
            rows: vec![
                row(None, Metric::Startup, 5.0, 600.0),
                row(
                    Some(Workload::Create),
                    Metric::OpsPerSec,
                    30_000.0,
                    10_000.0,
                ),
                row(Some(Workload::Get), Metric::P99, 2.0, 1.0),
                row(Some(Workload::Get), Metric::P50, 2.0, 1.0),
                row(Some(Workload::Expiry), Metric::P99, 4000.0, 4100.0),
                row(None, Metric::FailoverWrite, 800.0, 2000.0),
                row(None, Metric::FailoverLeader, 500.0, 1000.0),
            ],
        }
    }

    #[test]
    fn comparison_table_and_svg() {
        let c = comparison();
        let t = comparison_report(&c);
        assert!(t.contains("| create ops/s"), "{t}");
        assert!(t.contains("3.00×"), "{t}");
        assert!(t.contains("Goals missed: get p99 ms, get p50 ms."), "{t}");
        let svg = svg(&c);
        assert!(svg.starts_with("<svg ") && svg.ends_with("</svg>\n"));
        // Headline rows only: start-up, create ops/s, get p99, failover to the first write (not
        // p50, not expiry, not the failover until srvr shows a leader).
        assert_eq!(svg.matches("<rect x=").count(), 4, "{svg}");
        assert!(svg.contains("failover: kill to first write ms"), "{svg}");
        assert!(t.contains("| failover: kill to new leader ms"), "{t}");
        assert!(t.contains("| failover: kill to first write ms"), "{t}");
        assert!(svg.contains("120×"), "{svg}");
        assert!(svg.contains("#d9534f"), "the missed p99 is red");
        // Every tag opened is closed (a cheap well-formedness check).
        assert_eq!(svg.matches("<text").count(), svg.matches("</text>").count());
    }

    #[test]
    fn failover_runs_are_summarized_and_failures_shown() {
        use super::super::failover::FailoverRun;
        let side = Side {
            flavor: Flavor::Rookery,
            version: None,
            startup_ms: vec![],
            ready_ms: vec![],
            idle_rss_kib: None,
            results: vec![],
            failover: vec![
                FailoverRun {
                    write_ms: Some(700.0),
                    leader_ms: Some(400.0),
                    ..FailoverRun::default()
                },
                FailoverRun {
                    error: Some("no survivor became leader".into()),
                    ..FailoverRun::default()
                },
            ],
        };
        let t = failover_text(&side);
        assert!(t.contains("1 of 2 runs finished"), "{t}");
        assert!(
            t.contains("first write 700.0 ms (median; runs: 700.0, failed)"),
            "{t}"
        );
        assert!(
            t.contains("FAILOVER FAILED (Rookery, run 2): no survivor became leader"),
            "{t}"
        );
        let none = Side {
            failover: vec![],
            ..side
        };
        assert_eq!(failover_text(&none), "");
    }
}
