//! The report's three shapes: a table for people, one JSON object and CSV (one
//! finding per row) for tools.

use comfy_table::presets::UTF8_FULL_CONDENSED;
use comfy_table::{Attribute, Cell, Color, ContentArrangement, Table};

use super::cis::ControlRow;
use super::model::{Finding, Grants, Report, Severity, UserRow};
use crate::event::hidden_char;

/// One JSON object: `users`, `findings`, `summary`, `calls` (and `incomplete`
/// when something could not be checked).
pub fn json(report: &Report) -> String {
    // A tree of strings, numbers and lists always serialises.
    serde_json::to_string_pretty(report).unwrap_or_default()
}

pub const CSV_HEADER: [&str; 6] = [
    "code",
    "user_name",
    "secret_name",
    "detail",
    "severity",
    "controls",
];

/// One finding per row, with a header. A field a spreadsheet would run as a
/// formula (leading `=`, `+`, `-`, `@`) is prefixed with `'`.
pub fn csv(report: &Report) -> Result<String, csv::Error> {
    let mut w = csv::Writer::from_writer(Vec::new());
    w.write_record(CSV_HEADER)?;
    for f in &report.findings {
        w.write_record([
            f.code.as_str(),
            &inert(f.user_name.as_deref().unwrap_or_default()),
            &inert(f.secret_name.as_deref().unwrap_or_default()),
            &inert(&f.detail),
            f.severity.as_str(),
            &f.controls.join(" "),
        ])?;
    }
    let bytes = w.into_inner().map_err(|e| e.into_error())?;
    Ok(String::from_utf8_lossy(&bytes).into_owned())
}

pub fn inert(v: &str) -> String {
    if v.starts_with(['=', '+', '-', '@', '\t', '\r']) {
        format!("'{v}")
    } else {
        v.to_owned()
    }
}

/// Text from AWS (or an event) shown on a terminal: control and invisible
/// characters could rewrite what the reader sees, so they are shown as `?`.
pub fn shown(v: &str) -> String {
    v.chars()
        .map(|c| {
            if c.is_control() || hidden_char(c).is_some() {
                '?'
            } else {
                c
            }
        })
        .collect()
}

fn severity_color(s: Severity) -> Color {
    match s {
        Severity::High => Color::Red,
        Severity::Medium => Color::Yellow,
        Severity::Low => Color::Cyan,
    }
}

/// A table that wraps to the terminal's width when there is one. Styles are
/// added only when `color`, so `NO_COLOR` on a terminal gives plain text.
fn new_table(color: bool) -> Table {
    let mut t = Table::new();
    t.load_style(UTF8_FULL_CONDENSED)
        .set_content_arrangement(ContentArrangement::Dynamic);
    if color {
        t.enforce_styling();
    }
    t
}

fn bold(c: Cell, color: bool) -> Cell {
    if color {
        c.add_attribute(Attribute::Bold)
    } else {
        c
    }
}

fn tint(c: Cell, s: Option<Severity>, color: bool) -> Cell {
    match s {
        Some(s) if color => c.fg(severity_color(s)),
        _ => c,
    }
}

/// A policy ARN shortened to its name; inline policies keep their `inline:` mark.
fn short(p: &str) -> &str {
    p.rsplit_once(":policy/")
        .map(|(_, n)| n.rsplit('/').next().unwrap_or(n))
        .unwrap_or(p)
}

/// Actual grants, each marked when not expected, then the expected ones missing.
fn grants(g: &Grants, name: fn(&str) -> &str) -> String {
    let mut lines: Vec<String> = g
        .actual
        .iter()
        .map(|a| {
            if g.expected.contains(a) {
                shown(name(a))
            } else {
                format!("{} (extra)", shown(name(a)))
            }
        })
        .collect();
    lines.extend(
        g.expected
            .iter()
            .filter(|e| !g.actual.contains(e))
            .map(|e| format!("{} (missing)", shown(name(e)))),
    );
    if lines.is_empty() {
        "-".into()
    } else {
        lines.join("\n")
    }
}

fn day(ts: &str) -> &str {
    ts.get(..10).unwrap_or(ts)
}

fn user_cells(u: &UserRow, worst: Option<Severity>, color: bool) -> Vec<Cell> {
    let opt = |v: &Option<String>| v.as_deref().map(shown).unwrap_or_else(|| "-".into());
    let known = u.mfa.is_some();
    let console = match (known, u.console.enabled, &u.console.password_last_used) {
        (false, _, _) => "?".to_owned(),
        (true, false, _) => "no".to_owned(),
        (true, true, Some(t)) => format!("yes, used {}", day(t)),
        (true, true, None) => "yes, never used".to_owned(),
    };
    let mfa = match u.mfa {
        Some(true) => "yes",
        Some(false) => "no",
        None => "?",
    };
    let keys = if u.access_keys.is_empty() {
        if known {
            "-".to_owned()
        } else {
            "?".to_owned()
        }
    } else {
        u.access_keys
            .iter()
            .map(|k| {
                format!(
                    "{} {}{}d, {}, {}",
                    k.id.as_deref()
                        .map(shown)
                        .unwrap_or_else(|| "(unknown id)".into()),
                    if k.active { "" } else { "inactive, " },
                    k.age_days,
                    k.last_used
                        .as_deref()
                        .map(|t| format!("used {}", day(t)))
                        .unwrap_or_else(|| "never used".into()),
                    if k.stored { "stored" } else { "NOT STORED" }
                )
            })
            .collect::<Vec<_>>()
            .join("\n")
    };
    let secret = match (
        u.secret.present,
        u.secret.scheduled_for_deletion,
        u.secret.consistent,
    ) {
        (false, _, _) => "missing",
        (true, true, true) => "scheduled for deletion",
        (true, true, false) => "scheduled for deletion, inconsistent",
        (true, false, true) => "consistent",
        (true, false, false) => "inconsistent",
    };
    let last = match (&u.last_event.id, &u.last_event.at) {
        (Some(id), Some(at)) => format!("{}\n{}", shown(id), shown(at)),
        (id, at) => format!("{}\n{}", opt(id), opt(at)),
    };
    let codes = if u.findings.is_empty() {
        "-".to_owned()
    } else {
        u.findings
            .iter()
            .map(|c| c.as_str())
            .collect::<Vec<_>>()
            .join("\n")
    };
    // The rule is named only when it is not the department's own.
    let rule = match &u.department {
        Some(d) if *d == u.rule => shown(d),
        Some(d) => format!("{}\n({})", shown(d), shown(&u.rule)),
        None => format!("- ({})", shown(&u.rule)),
    };
    vec![
        bold(Cell::new(shown(&u.user_name)), color),
        Cell::new(opt(&u.employee_id)),
        Cell::new(opt(&u.status)),
        Cell::new(rule),
        Cell::new(grants(&u.groups, |g| g)),
        Cell::new(grants(&u.policies, short)),
        Cell::new(console),
        Cell::new(mfa),
        Cell::new(keys),
        Cell::new(secret),
        Cell::new(last),
        tint(Cell::new(codes), worst, color),
    ]
}

fn finding_cells(f: &Finding, color: bool) -> Vec<Cell> {
    let opt = |v: &Option<String>| v.as_deref().map(shown).unwrap_or_else(|| "-".into());
    vec![
        tint(Cell::new(f.severity.as_str()), Some(f.severity), color),
        Cell::new(f.code.as_str()),
        Cell::new(opt(&f.user_name)),
        Cell::new(opt(&f.secret_name)),
        Cell::new(shown(&f.detail)),
        Cell::new(if f.controls.is_empty() {
            "-".to_owned()
        } else {
            f.controls.join("\n")
        }),
    ]
}

/// The CIS summary: per control, how many managed users pass and fail.
pub fn baseline_table(rows: &[ControlRow], color: bool) -> String {
    let mut t = new_table(color);
    t.set_header(
        [
            "Control",
            "Security Hub",
            "Title",
            "Users passing",
            "Users failing",
        ]
        .map(|h| bold(Cell::new(h), color)),
    );
    for r in rows {
        let failing = Cell::new(r.users_failing);
        t.add_row(vec![
            Cell::new(&r.control),
            Cell::new(if r.security_hub.is_empty() {
                "-".to_owned()
            } else {
                r.security_hub.join(", ")
            }),
            Cell::new(&r.title),
            Cell::new(r.users_passing),
            if r.users_failing > 0 {
                tint(failing, Some(Severity::High), color)
            } else {
                failing
            },
        ]);
    }
    format!("{t}\n")
}

/// The human table: users, findings, then a summary. `color`: ANSI colours
/// (the caller decides: a terminal, and `NO_COLOR` unset).
pub fn table(report: &Report, color: bool) -> String {
    let mut out = String::new();
    if report.users.is_empty() {
        out.push_str("No managed user.\n");
    } else {
        let mut t = new_table(color);
        t.set_header(
            [
                "User",
                "Employee",
                "Status",
                "Department (rule)",
                "Groups",
                "Policies",
                "Console",
                "MFA",
                "Access keys",
                "Secret",
                "Last event",
                "Findings",
            ]
            .map(|h| bold(Cell::new(h), color)),
        );
        for u in &report.users {
            let worst = report
                .findings
                .iter()
                .filter(|f| f.user_name.as_deref() == Some(u.user_name.as_str()))
                .map(|f| f.severity)
                .min();
            t.add_row(user_cells(u, worst, color));
        }
        out.push_str(&t.to_string());
        out.push('\n');
    }
    let notes: Vec<String> = report
        .users
        .iter()
        .filter_map(|u| {
            u.note
                .as_ref()
                .map(|n| format!("{}: {n}", shown(&u.user_name)))
        })
        .collect();
    for n in notes {
        out.push_str(&format!("note: {n}\n"));
    }
    if report.findings.is_empty() {
        out.push_str("\nNo finding.\n");
    } else {
        let mut t = new_table(color);
        t.set_header(
            ["Severity", "Code", "User", "Secret", "Detail", "Controls"]
                .map(|h| bold(Cell::new(h), color)),
        );
        for f in &report.findings {
            t.add_row(finding_cells(f, color));
        }
        out.push('\n');
        out.push_str(&t.to_string());
        out.push('\n');
    }
    out.push_str(&super::dates::table(&report.schedules));
    let s = &report.summary;
    let counts: Vec<String> = s
        .by_code
        .iter()
        .filter(|(_, n)| **n > 0)
        .map(|(c, n)| format!("{c} {n}"))
        .collect();
    out.push_str(&format!(
        "\n{} managed users, {} secrets ({} tombstones), {} findings{}",
        s.users,
        s.secrets,
        s.tombstones,
        s.findings,
        if counts.is_empty() {
            String::new()
        } else {
            format!(": {}", counts.join(", "))
        }
    ));
    if let Some(at) = &s.credential_report_as_of {
        out.push_str(&format!("; credential report as of {at}"));
    }
    if let Some(c) = &report.calls {
        out.push_str(&format!("; {} AWS calls", c.total));
    }
    out.push('\n');
    for i in &report.incomplete {
        out.push_str(&format!("INCOMPLETE: {}\n", shown(i)));
    }
    if let Some(b) = &report.baseline {
        out.push_str("\nCIS AWS Foundations Benchmark, IAM user controls:\n");
        out.push_str(&baseline_table(b, color));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::review::model::{Code, Finding};

    fn report() -> Report {
        let mut r = Report::default();
        r.users.push(UserRow {
            user_name: "jane.doe".into(),
            rule: "engineering".into(),
            groups: Grants {
                expected: vec!["developers".into(), "staff".into()],
                actual: vec!["admins".into(), "staff".into()],
            },
            findings: vec![Code::ExtraGrant],
            ..UserRow::default()
        });
        r.findings.push(Finding::user(
            Code::ExtraGrant,
            "jane.doe",
            "in group admins",
        ));
        r.findings.push(Finding::secret(
            Code::OrphanSecret,
            None,
            "hr-provisioner/=ghost",
            "-no managed user\u{202e}x",
        ));
        r
    }

    #[test]
    fn csv_has_a_header_and_one_row_per_finding_with_formulas_made_inert() {
        let text = csv(&report()).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(
            lines[0],
            "code,user_name,secret_name,detail,severity,controls"
        );
        assert_eq!(lines[1], "extra-grant,jane.doe,,in group admins,high,");
        assert!(lines[2].starts_with("orphan-secret,,hr-provisioner/=ghost,'-no managed"));
        assert_eq!(lines.len(), 3);
    }

    #[test]
    fn the_table_marks_drift_and_hides_invisible_characters() {
        let t = table(&report(), false);
        assert!(
            t.contains("admins (extra)") && t.contains("developers (missing)"),
            "{t}"
        );
        assert!(t.contains("extra-grant") && t.contains("orphan-secret"));
        assert!(!t.contains('\u{202e}') && t.contains("user?x"));
        assert!(!t.contains('\u{1b}'), "no colour unless asked");
        assert!(table(&report(), true).contains('\u{1b}'));
    }

    #[test]
    fn findings_carry_their_controls_and_the_baseline_is_a_table() {
        let mut r = report();
        r.findings
            .push(Finding::user(Code::NoMfa, "jane.doe", "no MFA"));
        r.users[0].findings.push(Code::NoMfa);
        let text = csv(&r).unwrap();
        assert!(
            text.contains("no-mfa,jane.doe,,no MFA,medium,CIS 2.9 IAM.5"),
            "{text}"
        );
        r.baseline = Some(crate::review::cis::baseline(&r));
        let t = table(&r, false);
        assert!(t.contains("CIS AWS Foundations Benchmark"), "{t}");
        let line = t
            .lines()
            .find(|l| l.contains("CIS 2.9") && l.contains("IAM.5") && !l.contains("no-mfa"))
            .unwrap_or_else(|| panic!("{t}"));
        // 0 passing, 1 failing.
        let nums: Vec<&str> = line
            .split(['│', '┆'])
            .map(str::trim)
            .filter(|c| c.parse::<usize>().is_ok())
            .collect();
        assert_eq!(nums, ["0", "1"], "{line}");
        let v: serde_json::Value = serde_json::from_str(&json(&r)).unwrap();
        assert_eq!(v["baseline"][0]["control"], "CIS 2.9");
        assert_eq!(v["baseline"][0]["users_failing"], 1);
        assert_eq!(v["findings"][2]["controls"][1], "IAM.5");
    }

    #[test]
    fn json_is_one_object_with_users_and_findings() {
        let v: serde_json::Value = serde_json::from_str(&json(&report())).unwrap();
        assert_eq!(v["users"][0]["user_name"], "jane.doe");
        assert_eq!(v["findings"][0]["code"], "extra-grant");
        assert_eq!(v["findings"][1]["secret_name"], "hr-provisioner/=ghost");
        assert!(v["findings"][1].get("user_name").is_none());
    }
}
