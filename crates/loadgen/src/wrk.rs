//! Running wrk (Debian's `wrk`) and reading what it prints.

use anyhow::Context;
use std::path::Path;
use std::process::Command;

/// What wrk reported for one run.
pub struct WrkResult {
    pub requests_per_second: f64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub non_2xx: u64,
    /// `status <code> <count>` lines a script's `done` printed, when it counts statuses.
    pub statuses: Vec<(u16, u64)>,
}

/// `wrk` with `threads` threads and `connections` connections for `duration_s` seconds,
/// running `script` against `url`; `script_args` follow `--`.
pub fn run(
    threads: u32,
    connections: u32,
    duration_s: u32,
    script: &Path,
    url: &str,
    script_args: &[String],
) -> anyhow::Result<WrkResult> {
    let output = Command::new("wrk")
        .args(["-t", &threads.to_string(), "-c", &connections.to_string(), "-d", &format!("{duration_s}s")])
        .args(["--latency", "-s"])
        .arg(script)
        .arg(url)
        .args(if script_args.is_empty() { &[][..] } else { &["--"][..] })
        .args(script_args)
        .output()
        .context("running wrk (apt-get install -y wrk)")?;
    let text = String::from_utf8_lossy(&output.stdout);
    anyhow::ensure!(output.status.success(), "wrk failed: {text}{}", String::from_utf8_lossy(&output.stderr));
    let value_after = |label: &str| -> Option<String> {
        text.lines()
            .find(|line| line.trim_start().starts_with(label))
            .and_then(|line| line.split_whitespace().nth(1).map(str::to_string))
    };
    let requests_per_second: f64 =
        value_after("Requests/sec:").and_then(|v| v.parse().ok()).context("no Requests/sec in wrk output")?;
    let p50_ms = value_after("50%").map(|v| parse_latency_ms(&v)).context("no p50")??;
    let p99_ms = value_after("99%").map(|v| parse_latency_ms(&v)).context("no p99")??;
    let non_2xx = text
        .lines()
        .find(|line| line.contains("Non-2xx or 3xx responses:"))
        .and_then(|line| line.split(':').nth(1))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0);
    let statuses = text
        .lines()
        .filter_map(|line| {
            let mut words = line.strip_prefix("status ")?.split_whitespace();
            Some((words.next()?.parse().ok()?, words.next()?.parse().ok()?))
        })
        .collect();
    Ok(WrkResult { requests_per_second, p50_ms, p99_ms, non_2xx, statuses })
}

/// wrk prints latencies as `812.00us`, `2.65ms` or `1.02s`.
fn parse_latency_ms(text: &str) -> anyhow::Result<f64> {
    let (number, scale) = if let Some(n) = text.strip_suffix("us") {
        (n, 0.001)
    } else if let Some(n) = text.strip_suffix("ms") {
        (n, 1.0)
    } else if let Some(n) = text.strip_suffix('s') {
        (n, 1000.0)
    } else {
        anyhow::bail!("unknown latency {text}")
    };
    Ok(number.parse::<f64>()? * scale)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wrk_latencies_are_read_in_milliseconds() {
        assert_eq!(parse_latency_ms("812.00us").ok(), Some(0.812));
        assert_eq!(parse_latency_ms("2.65ms").ok(), Some(2.65));
        assert_eq!(parse_latency_ms("1.5s").ok(), Some(1500.0));
        assert!(parse_latency_ms("fast").is_err());
    }
}
