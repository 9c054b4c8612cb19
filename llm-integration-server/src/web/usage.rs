//! The usage page's figures: the same `usage` command as the CLI (for the
//! user, or with `--team` for one of their teams), once for the table and
//! once per day boundary for the chart (the spend of a day is what was
//! spent since its midnight minus what was spent since the next midnight,
//! so each day's figure is the command's own).

use std::collections::BTreeMap;
use std::time::{SystemTime, UNIX_EPOCH};

use llm_integration_core::UserId;
use serde_json::Value;

use super::{run, Failed};
use crate::exec_http::AdminState;

/// The longest period the page shows, in days.
pub const MAX_DAYS: u32 = 366;
/// The period shown when none is asked for, in days.
pub const DEFAULT_DAYS: u32 = 14;

/// `GET /usage?by=integration|model|vm&days=1..=366&team=TEAM`.
#[derive(Debug, Default, serde::Deserialize)]
pub struct UsageQuery {
    /// How the chart and the table are split.
    pub by: Option<String>,
    /// How many days back (today included), as typed.
    pub days: Option<String>,
    /// A team of the user (its usage instead of the user's); empty for
    /// the user's own.
    pub team: Option<String>,
}

/// What the usage page shows.
#[derive(Debug, Clone)]
pub struct UsageReport {
    /// `integration`, `model` or `vm`.
    pub by: &'static str,
    /// Days shown, today included.
    pub days: u32,
    /// The team whose usage this is, empty for the user's own.
    pub team: String,
    /// The allocation left, in micro-dollars.
    pub allocation_micros: i64,
    /// The day labels (`YYYY-MM-DD`, UTC), oldest first.
    pub day_labels: Vec<String>,
    /// Cost per key per day, in micro-dollars (same order as `day_labels`).
    pub series: BTreeMap<String, Vec<u64>>,
    /// The `usage --json` rows of the whole window.
    pub rows: Vec<Value>,
}

/// A date (UTC) from days since the Unix epoch (Howard Hinnant's
/// civil-from-days).
fn civil(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

fn label(days: i64) -> String {
    let (y, m, d) = civil(days);
    format!("{y:04}-{m:02}-{d:02}")
}

/// A row key as the request named it: the `usage` command writes every
/// character but printable ASCII as `\u{HEX}` for a terminal; a page
/// shows the text itself (escaped as HTML by the template).
pub fn unescaped(key: &str) -> String {
    let mut out = String::with_capacity(key.len());
    let mut rest = key;
    while let Some(at) = rest.find("\\u{") {
        out.push_str(&rest[..at]);
        let after = &rest[at + 3..];
        let decoded = after.find('}').and_then(|end| {
            u32::from_str_radix(&after[..end], 16)
                .ok()
                .and_then(char::from_u32)
                .map(|c| (c, end))
        });
        match decoded {
            Some((c, end)) => {
                out.push(c);
                rest = &after[end + 1..];
            }
            None => {
                out.push_str("\\u{");
                rest = after;
            }
        }
    }
    out.push_str(rest);
    out
}

fn costs(answer: &Value) -> BTreeMap<String, u64> {
    answer["rows"]
        .as_array()
        .map(|rows| {
            rows.iter()
                .map(|r| {
                    (
                        unescaped(r["key"].as_str().unwrap_or("")),
                        r["cost_micros"].as_u64().unwrap_or(0),
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

async fn usage_since(
    state: &AdminState,
    user: UserId,
    since: &str,
    by: &str,
    team: &str,
) -> Result<Value, Failed> {
    let mut args = vec![
        "usage".to_owned(),
        format!("--since={since}"),
        format!("--by={by}"),
        "--json".to_owned(),
    ];
    if !team.is_empty() {
        args.push(format!("--team={team}"));
    }
    run(state, user, args, None).await.map(|a| a.json)
}

/// The period asked for: a whole number of days from 1 to [`MAX_DAYS`].
fn days_of(q: &UsageQuery) -> Result<u32, Failed> {
    let Some(text) = q.days.as_deref().map(str::trim).filter(|d| !d.is_empty()) else {
        return Ok(DEFAULT_DAYS);
    };
    match text.parse::<u32>() {
        Ok(d) if (1..=MAX_DAYS).contains(&d) => Ok(d),
        _ => Err(Failed::usage(format!(
            "days must be a whole number of days from 1 to {MAX_DAYS}, not {:?}; for example days=30",
            text.chars().take(20).collect::<String>()
        ))),
    }
}

/// Reads the figures for `q` as `user`.
pub async fn report(
    state: &AdminState,
    user: UserId,
    q: &UsageQuery,
) -> Result<UsageReport, Failed> {
    let by = match q.by.as_deref().unwrap_or("") {
        "model" => "model",
        "vm" => "vm",
        "integration" | "" => "integration",
        other => {
            return Err(Failed::usage(format!(
                "by must be integration, model or vm, not {:?}",
                other.chars().take(20).collect::<String>()
            )))
        }
    };
    let days = days_of(q)?;
    let team = q.team.as_deref().unwrap_or("").trim();
    let today = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| (d.as_secs() / 86_400) as i64)
        .unwrap_or(0);
    let first = today - i64::from(days) + 1;
    let whole = usage_since(state, user, &label(first), by, team).await?;
    // Cumulative spend since each midnight, oldest first; the last is today's.
    let mut cumulative = Vec::with_capacity(days as usize);
    cumulative.push(costs(&whole));
    for day in first + 1..=today {
        cumulative.push(costs(
            &usage_since(state, user, &label(day), by, team).await?,
        ));
    }
    let mut series: BTreeMap<String, Vec<u64>> = BTreeMap::new();
    for key in cumulative[0].keys() {
        let per_day = (0..cumulative.len())
            .map(|i| {
                let here = cumulative[i].get(key).copied().unwrap_or(0);
                let next = cumulative
                    .get(i + 1)
                    .and_then(|c| c.get(key).copied())
                    .unwrap_or(0);
                here.saturating_sub(next)
            })
            .collect();
        series.insert(key.clone(), per_day);
    }
    Ok(UsageReport {
        by,
        days,
        team: team.to_owned(),
        allocation_micros: whole["allocation_micros"].as_i64().unwrap_or(0),
        day_labels: (first..=today).map(label).collect(),
        series,
        rows: whole["rows"].as_array().cloned().unwrap_or_default(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates() {
        assert_eq!(label(0), "1970-01-01");
        assert_eq!(label(19_723), "2024-01-01");
        assert_eq!(label(20_513), "2026-03-01");
        assert_eq!(label(20_512), "2026-02-28");
    }

    #[test]
    fn keys_are_shown_as_the_request_named_them() {
        assert_eq!(unescaped("gpt-5"), "gpt-5");
        assert_eq!(unescaped("a\\u{20}b"), "a b");
        assert_eq!(unescaped("claude-\\u{430}"), "claude-\u{430}");
        assert_eq!(unescaped("x\\u{zz}y\\u{"), "x\\u{zz}y\\u{");
        assert_eq!(unescaped("\\u{110000}"), "\\u{110000}");
    }
}
