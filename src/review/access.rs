//! The access review (contract section 11): per manager (`hr:manager-email`),
//! the access of their reports as CSV and as one self-contained HTML page, plus
//! an index page linking every manager's page. Pure: the report in, files out
//! as (name, content) pairs; the binary writes them.
//!
//! The pages load nothing: styles are inline and a Content-Security-Policy of
//! `default-src 'none'` forbids any fetch or script. Every text from AWS is
//! HTML-escaped, with invisible characters shown as `?` as in the table.

use std::collections::BTreeMap;

use super::model::{Report, UserRow};
use super::render::{inert, shown};

/// The group of users without `hr:manager-email`.
pub const NO_MANAGER: &str = "(no manager)";

/// One manager's reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Page {
    pub manager: String,
    /// File name without extension: safe on any file system, unique per run.
    pub slug: String,
    pub users: Vec<UserRow>,
}

/// The users grouped per manager, managers sorted, users by status then name.
pub fn pages(report: &Report) -> Vec<Page> {
    let mut by: BTreeMap<String, Vec<UserRow>> = BTreeMap::new();
    for u in &report.users {
        let m = u
            .manager_email
            .clone()
            .unwrap_or_else(|| NO_MANAGER.to_owned());
        by.entry(m).or_default().push(u.clone());
    }
    let mut taken: BTreeMap<String, usize> = BTreeMap::new();
    by.into_iter()
        .map(|(manager, mut users)| {
            users.sort_by(|a, b| (&a.status, &a.user_name).cmp(&(&b.status, &b.user_name)));
            let base = slug(&manager);
            let n = taken.entry(base.clone()).or_default();
            *n += 1;
            let slug = if *n == 1 { base } else { format!("{base}-{n}") };
            Page {
                manager,
                slug,
                users,
            }
        })
        .collect()
}

/// A file name from an address: letters, digits and `@._-` kept, anything else
/// `_`; never empty, never starting with a dot, at most 100 characters.
fn slug(manager: &str) -> String {
    let s: String = manager
        .chars()
        .take(100)
        .map(|c| {
            if c.is_ascii_alphanumeric() || "@_-".contains(c) || (c == '.') {
                c.to_ascii_lowercase()
            } else {
                '_'
            }
        })
        .collect();
    let s = s.trim_start_matches('.').to_owned();
    if s.is_empty() || s == "index" {
        format!("manager-{s}")
    } else {
        s
    }
}

/// Text for HTML: invisible characters as `?`, then `&<>"'` escaped.
pub fn esc(v: &str) -> String {
    let mut out = String::with_capacity(v.len());
    for c in shown(v).chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

fn day(ts: &str) -> &str {
    ts.get(..10).unwrap_or(ts)
}

fn console(u: &UserRow) -> String {
    match (
        u.mfa.is_some(),
        u.console.enabled,
        &u.console.password_last_used,
    ) {
        (false, _, _) => "unknown".into(),
        (true, false, _) => "no".into(),
        (true, true, Some(t)) => format!("yes, last used {}", day(t)),
        (true, true, None) => "yes, never used".into(),
    }
}

fn mfa(u: &UserRow) -> &'static str {
    match u.mfa {
        Some(true) => "yes",
        Some(false) => "no",
        None => "unknown",
    }
}

fn keys(u: &UserRow) -> Vec<String> {
    u.access_keys
        .iter()
        .map(|k| {
            format!(
                "{} {}, {} days, {}",
                k.id.as_deref().unwrap_or("(id unknown)"),
                if k.active { "active" } else { "inactive" },
                k.age_days,
                k.last_used
                    .as_deref()
                    .map(|t| format!("last used {}", day(t)))
                    .unwrap_or_else(|| "never used".into())
            )
        })
        .collect()
}

fn policies(u: &UserRow) -> Vec<String> {
    u.policies
        .actual
        .iter()
        .map(|p| {
            p.rsplit_once(":policy/")
                .map(|(_, n)| n.to_owned())
                .unwrap_or_else(|| p.clone())
        })
        .collect()
}

/// Each finding of the user with its controls, from the report's findings.
fn findings(report: &Report, u: &UserRow) -> Vec<String> {
    report
        .findings
        .iter()
        .filter(|f| f.user_name.as_deref() == Some(u.user_name.as_str()))
        .map(|f| {
            if f.controls.is_empty() {
                format!("{}: {}", f.code.as_str(), f.detail)
            } else {
                format!(
                    "{} [{}]: {}",
                    f.code.as_str(),
                    f.controls.join(", "),
                    f.detail
                )
            }
        })
        .collect()
}

pub const CSV_HEADER: [&str; 12] = [
    "user_name",
    "employee_id",
    "status",
    "department",
    "groups",
    "policies",
    "console",
    "mfa",
    "access_keys",
    "findings",
    "finding_details",
    "manager_email",
];

/// One row per report of the manager; lists joined with `; `.
pub fn page_csv(report: &Report, page: &Page) -> Result<String, csv::Error> {
    let mut w = csv::Writer::from_writer(Vec::new());
    w.write_record(CSV_HEADER)?;
    for u in &page.users {
        let codes: Vec<&str> = u.findings.iter().map(|c| c.as_str()).collect();
        let row = [
            u.user_name.clone(),
            u.employee_id.clone().unwrap_or_default(),
            u.status.clone().unwrap_or_default(),
            u.department.clone().unwrap_or_default(),
            u.groups.actual.join("; "),
            policies(u).join("; "),
            console(u),
            mfa(u).to_owned(),
            keys(u).join("; "),
            codes.join("; "),
            findings(report, u).join("; "),
            page.manager.clone(),
        ];
        w.write_record(row.iter().map(|v| inert(&shown(v))))?;
    }
    let bytes = w.into_inner().map_err(|e| e.into_error())?;
    Ok(String::from_utf8_lossy(&bytes).into_owned())
}

const STYLE: &str = "body{font:14px/1.4 system-ui,sans-serif;margin:2em;color:#222}\
h1{font-size:1.4em}h2{font-size:1.1em;margin-top:1.5em}\
table{border-collapse:collapse;width:100%}th,td{border:1px solid #ccc;padding:4px 6px;vertical-align:top;text-align:left}\
th{background:#f0f0f0}tr.findings td{background:#fff4f4}ul{margin:0;padding-left:1.1em}\
.ok{color:#176117}.bad{color:#a40000;font-weight:600}.muted{color:#666}";

fn head(title: &str) -> String {
    format!(
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
<meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; style-src 'unsafe-inline'\">\
<title>{}</title><style>{STYLE}</style></head><body>\n",
        esc(title)
    )
}

fn cell_list(items: &[String]) -> String {
    if items.is_empty() {
        return "<span class=\"muted\">none</span>".into();
    }
    let lis: Vec<String> = items
        .iter()
        .map(|i| format!("<li>{}</li>", esc(i)))
        .collect();
    format!("<ul>{}</ul>", lis.concat())
}

/// One manager's page: a table per status (active first), a row per report.
pub fn page_html(report: &Report, page: &Page, generated: &str) -> String {
    let mut out = head(&format!("Access review: {}", page.manager));
    out.push_str(&format!(
        "<h1>Access review: {}</h1>\n<p>{} users. Generated {} by hr-iam-audit review. \
<a href=\"index.html\">All managers</a> · <a href=\"{}.csv\">CSV</a></p>\n",
        esc(&page.manager),
        page.users.len(),
        esc(generated),
        esc(&page.slug)
    ));
    let mut by_status: BTreeMap<String, Vec<&UserRow>> = BTreeMap::new();
    for u in &page.users {
        by_status
            .entry(u.status.clone().unwrap_or_else(|| "unknown".into()))
            .or_default()
            .push(u);
    }
    // Active users first: they are what the reviewer confirms.
    let mut statuses: Vec<String> = by_status.keys().cloned().collect();
    statuses.sort_by_key(|s| (s != "active", s.clone()));
    for status in statuses {
        let users = &by_status[&status];
        out.push_str(&format!(
            "<h2>{} ({})</h2>\n<table><thead><tr><th>User</th><th>Employee</th><th>Status</th>\
<th>Department</th><th>Groups</th><th>Policies</th><th>Console (last used)</th>\
<th>Access keys (last used)</th><th>MFA</th><th>Findings</th></tr></thead><tbody>\n",
            esc(&status),
            users.len()
        ));
        for u in users {
            let f = findings(report, u);
            let mfa_cell = match u.mfa {
                Some(false) if u.console.enabled => {
                    format!("<span class=\"bad\">{}</span>", mfa(u))
                }
                _ => mfa(u).to_owned(),
            };
            let findings_cell = if f.is_empty() {
                "<span class=\"ok\">none</span>".to_owned()
            } else {
                cell_list(&f)
            };
            out.push_str(&format!(
                "<tr{}><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>\n",
                if f.is_empty() { "" } else { " class=\"findings\"" },
                esc(&u.user_name),
                esc(u.employee_id.as_deref().unwrap_or("-")),
                esc(&status),
                esc(u.department.as_deref().unwrap_or("-")),
                cell_list(&u.groups.actual),
                cell_list(&policies(u)),
                esc(&console(u)),
                cell_list(&keys(u)),
                mfa_cell,
                findings_cell,
            ));
        }
        out.push_str("</tbody></table>\n");
    }
    out.push_str("</body></html>\n");
    out
}

/// The index: every manager, with counts and links to their page and CSV.
pub fn index_html(pages: &[Page], generated: &str) -> String {
    let mut out = head("Access review");
    out.push_str(&format!(
        "<h1>Access review</h1>\n<p>{} managers, {} users. Generated {} by hr-iam-audit review.</p>\n\
<table><thead><tr><th>Manager</th><th>Users</th><th>Users with findings</th><th>CSV</th></tr></thead><tbody>\n",
        pages.len(),
        pages.iter().map(|p| p.users.len()).sum::<usize>(),
        esc(generated)
    ));
    for p in pages {
        let with = p.users.iter().filter(|u| !u.findings.is_empty()).count();
        out.push_str(&format!(
            "<tr><td><a class=\"manager\" href=\"{slug}.html\">{}</a></td><td>{}</td><td>{}</td><td><a href=\"{slug}.csv\">{slug}.csv</a></td></tr>\n",
            esc(&p.manager),
            p.users.len(),
            with,
            slug = esc(&p.slug),
        ));
    }
    out.push_str("</tbody></table>\n</body></html>\n");
    out
}

/// Every file of the review: (file name, content), index last.
pub fn files(report: &Report, generated: &str) -> Result<Vec<(String, String)>, csv::Error> {
    let pages = pages(report);
    let mut out = Vec::new();
    for p in &pages {
        out.push((format!("{}.csv", p.slug), page_csv(report, p)?));
        out.push((format!("{}.html", p.slug), page_html(report, p, generated)));
    }
    out.push(("index.html".to_owned(), index_html(&pages, generated)));
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::review::model::{Code, Console, Finding, Grants};

    fn row(name: &str, manager: Option<&str>, status: &str) -> UserRow {
        UserRow {
            user_name: name.into(),
            employee_id: Some(format!("E-{name}")),
            status: Some(status.into()),
            department: Some("engineering".into()),
            manager_email: manager.map(str::to_owned),
            groups: Grants {
                expected: vec![],
                actual: vec!["developers".into()],
            },
            console: Console {
                enabled: true,
                password_last_used: Some("2026-11-25T10:00:00Z".into()),
            },
            mfa: Some(false),
            ..UserRow::default()
        }
    }

    fn report() -> Report {
        let mut r = Report {
            users: vec![
                row("jane.doe", Some("lead@example.com"), "active"),
                row("old.timer", Some("lead@example.com"), "retired"),
                row("sam", Some("<script>alert(1)</script>@x"), "active"),
                row("nobody", None, "active"),
            ],
            ..Report::default()
        };
        r.users[0].findings = vec![Code::NoMfa];
        r.findings.push(Finding::user(
            Code::NoMfa,
            "jane.doe",
            "console user without MFA \u{202e}<b>",
        ));
        r
    }

    #[test]
    fn one_page_per_manager_and_an_index_linking_each() {
        let r = report();
        let files = files(&r, "2026-11-26T12:00:00Z").unwrap();
        let names: Vec<&str> = files.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(
            names,
            [
                "_no_manager_.csv",
                "_no_manager_.html",
                "_script_alert_1___script_@x.csv",
                "_script_alert_1___script_@x.html",
                "lead@example.com.csv",
                "lead@example.com.html",
                "index.html"
            ]
        );
        let index = &files.last().unwrap().1;
        for p in pages(&r) {
            assert!(
                index.contains(&format!("href=\"{}.html\"", p.slug)),
                "{index}"
            );
        }
        assert!(index.contains("(no manager)") && index.contains("4 users"));
    }

    #[test]
    fn pages_escape_everything_and_load_nothing() {
        let r = report();
        let files = files(&r, "now").unwrap();
        for (name, html) in files.iter().filter(|(n, _)| n.ends_with(".html")) {
            assert!(!html.contains("<script"), "{name}: {html}");
            assert!(
                !html.contains("<b>") && !html.contains('\u{202e}'),
                "{name}"
            );
            assert!(
                !html.contains("src=") && !html.contains("http://") && !html.contains("https://")
            );
            assert!(html.contains("default-src 'none'"));
        }
        let lead = &files
            .iter()
            .find(|(n, _)| n == "lead@example.com.html")
            .unwrap()
            .1;
        // Grouped: active before retired.
        let active = lead.find("<h2>active (1)").unwrap();
        let retired = lead.find("<h2>retired (1)").unwrap();
        assert!(active < retired, "{lead}");
        assert!(
            lead.contains("no-mfa [CIS 2.9, IAM.5]: console user without MFA ?&lt;b&gt;"),
            "{lead}"
        );
        assert!(lead.contains("yes, last used 2026-11-25"));
    }

    #[test]
    fn csv_has_one_row_per_report_with_formulas_made_inert() {
        let mut r = report();
        r.users[0].groups.actual = vec!["=HYPERLINK(\"x\")".into()];
        let p = &pages(&r)[2];
        assert_eq!(p.manager, "lead@example.com");
        let text = page_csv(&r, p).unwrap();
        let mut rdr = csv::Reader::from_reader(text.as_bytes());
        let rows: Vec<csv::StringRecord> = rdr.records().map(Result::unwrap).collect();
        assert_eq!(rows.len(), 2);
        assert_eq!(&rows[0][0], "jane.doe");
        assert_eq!(&rows[0][4], "'=HYPERLINK(\"x\")");
        assert_eq!(&rows[0][9], "no-mfa");
        assert_eq!(&rows[1][2], "retired");
    }

    #[test]
    fn slugs_are_safe_and_unique() {
        assert_eq!(slug("../etc/passwd"), "_etc_passwd");
        assert_eq!(slug("index"), "manager-index");
        assert_eq!(slug("A.B@Example.com"), "a.b@example.com");
        let r = Report {
            users: vec![
                row("a", Some("x/y"), "active"),
                row("b", Some("x?y"), "active"),
            ],
            ..Report::default()
        };
        let slugs: Vec<String> = pages(&r).into_iter().map(|p| p.slug).collect();
        assert_eq!(slugs, ["x_y", "x_y-2"]);
    }
}
