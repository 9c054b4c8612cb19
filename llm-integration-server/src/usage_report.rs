//! The text of a usage report, shared by `usage` (users, over `/exec`) and
//! `admin usage` (operators, on the store): one table whose every column
//! is named, and a legend saying what the figures count.

use llm_integration_core::command::UsageBy;
use llm_integration_core::seams::UsageRow;
use llm_integration_core::ConfigRecords;

/// Micro-dollars as `$D.DDDDDD`.
pub fn dollars(micros: i64) -> String {
    let sign = if micros < 0 { "-" } else { "" };
    let m = micros.unsigned_abs();
    format!("{sign}${}.{:06}", m / 1_000_000, m % 1_000_000)
}

/// What the first column names, for a grouping given as `--by`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyColumn {
    /// No grouping: one row, `total`.
    Total,
    /// `--by vm`.
    Vm,
    /// `--by integration`.
    Integration,
    /// `--by model`: an empty key is `(no model)` (a request whose body
    /// named none).
    Model,
    /// `--by provider`.
    Provider,
}

impl KeyColumn {
    /// The column for `--by`.
    pub fn of(by: Option<UsageBy>) -> KeyColumn {
        match by {
            None => KeyColumn::Total,
            Some(UsageBy::Vm) => KeyColumn::Vm,
            Some(UsageBy::Integration) => KeyColumn::Integration,
            Some(UsageBy::Model) => KeyColumn::Model,
            Some(UsageBy::Provider) => KeyColumn::Provider,
        }
    }

    /// The display name of a row's key: VM and integration ids become
    /// names (`vm #7 (removed)` when gone), an empty key [`Self::empty_key`].
    pub fn name(self, records: &ConfigRecords, key: &str) -> String {
        if key.is_empty() {
            return self.empty_key().to_owned();
        }
        let id: Option<i64> = key.parse().ok();
        match (self, id) {
            (KeyColumn::Vm, Some(id)) => records
                .vms
                .iter()
                .find(|v| v.id.0 == id)
                .map_or_else(|| format!("vm #{id} (removed)"), |v| v.name.to_string()),
            (KeyColumn::Integration, Some(id)) => records
                .integrations
                .iter()
                .find(|i| i.id.0 == id)
                .map_or_else(
                    || format!("integration #{id} (removed)"),
                    |i| i.name.to_string(),
                ),
            // A model is whatever a request named: anything but printable
            // ASCII is shown escaped, so a name cannot drive the terminal,
            // break the columns or pass for another model (`claude-\u{430}…`).
            _ => key
                .chars()
                .map(|c| {
                    if c.is_ascii_graphic() {
                        c.to_string()
                    } else {
                        format!("\\u{{{:x}}}", c as u32)
                    }
                })
                .collect(),
        }
    }

    fn header(self) -> &'static str {
        match self {
            KeyColumn::Total => "",
            KeyColumn::Vm => "VM",
            KeyColumn::Integration => "INTEGRATION",
            KeyColumn::Model => "MODEL",
            KeyColumn::Provider => "PROVIDER",
        }
    }

    /// The label of a row whose key is empty.
    pub fn empty_key(self) -> &'static str {
        match self {
            KeyColumn::Total => "total",
            KeyColumn::Model => "(no model)",
            _ => "(none)",
        }
    }
}

const COLUMNS: [&str; 11] = [
    "REQUESTS",
    "OK",
    "REFUSED",
    "FAILED",
    "ESTIMATED",
    "INPUT",
    "CACHE WRITE",
    "CACHE READ",
    "OUTPUT",
    "COST",
    "DEBITED",
];

/// The legend printed under every report.
pub const LEGEND: &str = "\
requests: ok answered below 400, refused 4xx, failed 5xx or no answer (refusals before any upstream call are not usage);
estimated: requests whose tokens are the gateway's estimate (the provider's usage report never came);
tokens: input is uncached input; cache write and cache read are counted apart, not inside input
(OpenAI's cached tokens are cache read); output includes reasoning tokens;
cost: at list prices, US dollars; debited: the part charged to the allocation (gateway sources only)
";

/// Renders `rows` (each with its display name) as an aligned table
/// headed by `title`, followed by [`LEGEND`]; `(no requests)` when empty.
pub fn table(title: &str, key: KeyColumn, rows: &[(String, &UsageRow)]) -> String {
    let cells: Vec<[String; 12]> = rows
        .iter()
        .map(|(name, r)| {
            [
                name.clone(),
                r.requests.to_string(),
                r.ok.to_string(),
                r.refused.to_string(),
                r.failed.to_string(),
                r.estimated.to_string(),
                r.tokens.input.to_string(),
                r.tokens.cache_creation.to_string(),
                r.tokens.cache_read.to_string(),
                r.tokens.output.to_string(),
                dollars(r.cost_micros as i64),
                dollars(r.debited_micros as i64),
            ]
        })
        .collect();
    let mut header = [""; 12];
    header[0] = key.header();
    header[1..].copy_from_slice(&COLUMNS);
    let mut widths = header.map(str::len);
    for row in &cells {
        for (w, c) in widths.iter_mut().zip(row) {
            *w = (*w).max(c.chars().count());
        }
    }
    let line = |row: &[&str]| -> String {
        let mut out = String::new();
        for (i, (c, w)) in row.iter().zip(widths).enumerate() {
            if i == 0 {
                out.push_str(&format!("{c:<w$}"));
            } else {
                out.push_str(&format!("  {c:>w$}"));
            }
        }
        out.truncate(out.trim_end().len());
        out.push('\n');
        out
    };
    let mut text = format!("{title}\n");
    if cells.is_empty() {
        text.push_str("(no requests)\n");
        return text;
    }
    text.push_str(&line(&header));
    for row in &cells {
        let refs: Vec<&str> = row.iter().map(String::as_str).collect();
        text.push_str(&line(&refs));
    }
    text.push('\n');
    text.push_str(LEGEND);
    text
}

#[cfg(test)]
mod tests {
    use super::*;
    use llm_integration_core::seams::TokenUsage;

    #[test]
    fn dollars_are_exact() {
        assert_eq!(dollars(9_999_748), "$9.999748");
        assert_eq!(dollars(0), "$0.000000");
        assert_eq!(dollars(-1_500_000), "-$1.500000");
        assert_eq!(dollars(i64::MIN), "-$9223372036854.775808");
    }

    #[test]
    fn every_column_is_named_and_aligned() {
        let row = UsageRow {
            key: "gpt-5.5".into(),
            requests: 3,
            tokens: TokenUsage {
                input: 9,
                output: 3,
                cache_creation: 0,
                cache_read: 3,
            },
            cost_micros: 42,
            debited_micros: 0,
            estimated: 1,
            ok: 1,
            refused: 1,
            failed: 1,
        };
        let text = table(
            "usage since 30d",
            KeyColumn::Model,
            &[("gpt-5.5".into(), &row)],
        );
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines[0], "usage since 30d");
        assert!(lines[1].starts_with("MODEL"), "{}", lines[1]);
        for name in COLUMNS {
            assert!(lines[1].contains(name), "{name} in {}", lines[1]);
        }
        assert!(lines[2].starts_with("gpt-5.5"));
        // Each figure ends where its header ends.
        assert_eq!(
            lines[1].find("DEBITED").unwrap() + "DEBITED".len(),
            lines[2].len()
        );
        assert!(lines[2].ends_with("$0.000042  $0.000000"), "{}", lines[2]);
        assert!(text.contains("input is uncached input"));
        assert_eq!(table("t", KeyColumn::Total, &[]), "t\n(no requests)\n");
        let records = ConfigRecords::default();
        assert_eq!(
            KeyColumn::Model.name(&records, "claude-\u{1b}[31m\u{202e} \u{430}"),
            "claude-\\u{1b}[31m\\u{202e}\\u{20}\\u{430}"
        );
        assert_eq!(KeyColumn::Model.name(&records, ""), "(no model)");
        assert_eq!(KeyColumn::Vm.name(&records, "7"), "vm #7 (removed)");
    }
}
