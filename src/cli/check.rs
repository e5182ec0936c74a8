//! `mfq check`: compare a sweep's results.json with a baseline and exit 0 (within tolerance),
//! 1 (regression) or 2 (unusable input), printing a Markdown report on stdout.

use crate::sweep::check::{compare, load_results, CheckOptions};
use clap::Args;
use std::path::PathBuf;
use std::process::ExitCode;

/// Arguments of `mfq check`.
#[derive(Debug, Args)]
pub struct CheckArgs {
    /// results.json to check (or a sweep directory containing it).
    pub results: PathBuf,
    /// Baseline results.json (or a sweep directory containing it).
    #[arg(long)]
    pub baseline: PathBuf,
    /// Largest allowed accuracy drop in percentage points (0.5 = half a point of top-1).
    #[arg(long, default_value_t = 0.5)]
    pub tol_acc: f64,
    /// Largest allowed relative rise of any cost figure, in percent ("1%" or "1").
    #[arg(long, default_value = "1%", value_parser = parse_percent)]
    pub tol_cost: f64,
    /// Configurations of the baseline missing from the results are not a regression.
    #[arg(long)]
    pub allow_missing: bool,
}

/// Parses "1%", "0.5 %" or "1" into a fraction (0.01, 0.005, 0.01).
fn parse_percent(s: &str) -> Result<f64, String> {
    let t = s.trim().trim_end_matches('%').trim();
    let v: f64 = t
        .parse()
        .map_err(|_| format!("'{s}' is not a percentage (write e.g. 1% or 0.5)"))?;
    if !v.is_finite() || v < 0.0 {
        return Err(format!(
            "'{s}': the tolerance must be a non-negative percentage"
        ));
    }
    Ok(v / 100.0)
}

/// Runs `mfq check`.
pub fn run(args: CheckArgs) -> anyhow::Result<ExitCode> {
    if !args.tol_acc.is_finite() || args.tol_acc < 0.0 {
        eprintln!(
            "error: --tol-acc {} must be a non-negative number of percentage points",
            args.tol_acc
        );
        return Ok(ExitCode::from(2));
    }
    let load = |p: &PathBuf, what: &str| {
        load_results(p).map_err(|e| {
            eprintln!("error: unusable {what}: {e}");
        })
    };
    let (Ok(results), Ok(baseline)) = (
        load(&args.results, "results"),
        load(&args.baseline, "baseline"),
    ) else {
        return Ok(ExitCode::from(2));
    };
    let report = match compare(
        &results,
        &baseline,
        CheckOptions {
            tol_acc_points: args.tol_acc,
            tol_cost_rel: args.tol_cost,
            allow_missing: args.allow_missing,
        },
    ) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: unusable input: {e}");
            return Ok(ExitCode::from(2));
        }
    };
    print!("{}", report.markdown());
    Ok(if report.passed() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

#[cfg(test)]
mod tests {
    use super::parse_percent;

    #[test]
    fn percentages() {
        assert_eq!(parse_percent("1%"), Ok(0.01));
        assert_eq!(parse_percent("0.5 %"), Ok(0.005));
        assert_eq!(parse_percent("2"), Ok(0.02));
        assert!(parse_percent("-1%").is_err());
        assert!(parse_percent("abc").is_err());
    }
}
