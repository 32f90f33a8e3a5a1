//! `hr-iam-audit`: the security team's view of what the provisioner left in AWS
//! (contract section 8), and a dry run of one HR event before a redrive.

use std::collections::BTreeMap;
use std::io::{IsTerminal, Read};
use std::process::ExitCode;
use std::sync::Mutex;
use std::time::Duration;

use aws_lambda_events::event::sqs::SqsEvent;
use clap::{Args, Parser, Subcommand, ValueEnum};
use hr_iam_provisioner::apply::ActionLog;
use hr_iam_provisioner::audit::Outcome;
use hr_iam_provisioner::aws::Budget;
use hr_iam_provisioner::event::{check_window, parse_body, HrEvent};
use hr_iam_provisioner::review::read::{Part, Progress, Reader};
use hr_iam_provisioner::review::render::shown;
use hr_iam_provisioner::review::{self, render};
use hr_iam_provisioner::service::Provisioner;
use hr_iam_provisioner::wiring;
use indicatif::{ProgressBar, ProgressDrawTarget};
use serde_json::{json, Value};
use tokio::time::Instant;

const ABOUT: &str = "Audit the IAM users and secrets that hr-iam-provisioner manages, read-only";

const LONG_ABOUT: &str = "\
Audit the IAM users and secrets that hr-iam-provisioner manages, read-only.

`hr-iam-audit` (or `hr-iam-audit audit`) reads every user under USER_PATH and
every secret under SECRET_PREFIX, compares them with PROVISIONING_RULES and
with the users' own tags, and reports per user and per finding. It never reads
a secret's value: secrets are compared through their tags. It makes the same
few AWS calls (plus paging) whatever the number of users:
iam:GetAccountAuthorizationDetails, iam:GenerateCredentialReport,
iam:GetCredentialReport and secretsmanager:ListSecrets.

`hr-iam-audit plan EVENT.json` shows what the function would do with one HR
event against the live account, changing nothing (DRY_RUN is forced).

Configuration: the function's environment variables (USER_PATH,
PROVISIONING_RULES, TEMPLATE_PATH, SECRET_PREFIX, DENY_POLICY_ARN,
PERMISSIONS_BOUNDARY_ARN, KEY_MAX_AGE_DAYS, MFA_GRACE_DAYS, ...; SENDER_EMAIL
may be left unset) and the standard AWS ones (AWS_PROFILE, AWS_REGION,
AWS_ACCESS_KEY_ID, ..., AWS_ENDPOINT_URL for an emulator).

Exit status: 0 clean, 1 findings, 2 could not read (AWS error, bad
configuration, an incomplete audit; for `plan`: a rejected or failed event).";

const EXAMPLES: &str = "\
Examples:
  # The table, with the function's settings and read-only credentials
  AWS_PROFILE=security-audit USER_PATH=/employees/ \\
  PROVISIONING_RULES=\"$(cat rules.json)\" hr-iam-audit

  # One JSON object for tools: the findings' codes and users
  hr-iam-audit --format json | jq -r '.findings[] | [.code, .user_name // .secret_name] | @tsv'

  # One finding per row, for a spreadsheet or a ticket
  hr-iam-audit --format csv > findings.csv

  # In CI or cron: fail the job when anything is found
  hr-iam-audit --format json > audit.json || echo \"exit $?: see audit.json\"

  # What the function would do with a dead-lettered message, before a redrive
  hr-iam-audit plan message.json
  aws sqs receive-message --queue-url \"$DLQ\" | jq -r '.Messages[0].Body' | hr-iam-audit plan -";

#[derive(Parser)]
#[command(
    name = "hr-iam-audit",
    version,
    about = ABOUT,
    long_about = LONG_ABOUT,
    after_help = "Run with --help for examples.",
    after_long_help = EXAMPLES,
    args_conflicts_with_subcommands = true
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    audit: AuditArgs,
}

#[derive(Subcommand)]
enum Command {
    /// Compare AWS with HR and the rules (the default when no command is given)
    Audit(AuditArgs),
    /// Show the steps the function would take for one event, changing nothing
    #[command(after_long_help = "\
Examples:
  hr-iam-audit plan events/joiner-engineering.json
  hr-iam-audit plan --format json sqs-event-with-records.json
  echo '{\"event_id\":...}' | hr-iam-audit plan -

Needs the provisioner's read permissions (it runs the function's own planner,
which reads the user and its secret to know what is stored; no value is
printed). Exit status: 0 planned, unchanged or stale; 2 rejected or failed.")]
    Plan(PlanArgs),
    /// Write the access review: per manager a CSV and an HTML page, and an index
    #[command(after_long_help = "\
Examples:
  hr-iam-audit review --out review-2026-q4
  xdg-open review-2026-q4/index.html

Reads like the audit (read-only, no secret value) and writes, per manager
(hr:manager-email; users without one under \"(no manager)\"), MANAGER.csv and
MANAGER.html with each report's status, department, groups and policies,
console and key last use, MFA and findings (with their CIS ids), plus
index.html linking every manager's page. The pages are self-contained: no
script, font or style sheet is loaded from anywhere. Exit status as the audit:
0 clean, 1 findings, 2 could not read or write.")]
    Review(ReviewArgs),
}

#[derive(Args)]
struct ReviewArgs {
    /// The directory to write into (created when missing; files are replaced)
    #[arg(long, value_name = "DIR")]
    out: std::path::PathBuf,
    /// No progress indicator (it is only shown when stderr is a terminal)
    #[arg(long, short = 'q')]
    quiet: bool,
}

#[derive(Args, Clone)]
struct AuditArgs {
    /// Output: a table for people, one JSON object, or CSV (one finding per row)
    #[arg(long, short = 'f', value_enum, default_value_t = Format::Table)]
    format: Format,
    /// No progress indicator (it is only shown when stderr is a terminal)
    #[arg(long, short = 'q')]
    quiet: bool,
    /// Colours in the table: auto = when stdout is a terminal and NO_COLOR is unset
    #[arg(long, value_enum, default_value_t = When::Auto)]
    color: When,
    /// Add a benchmark summary (per control: users passing, users failing) to the
    /// table and the JSON; each finding names its controls in every format
    #[arg(long, value_enum, value_name = "BENCHMARK")]
    baseline: Option<Baseline>,
}

#[derive(Clone, Copy, ValueEnum)]
enum Baseline {
    /// CIS AWS Foundations Benchmark, IAM user controls (with Security Hub ids)
    Cis,
}

#[derive(Args)]
struct PlanArgs {
    /// A file holding one SQS message body (bare, SNS or EventBridge envelope) or a
    /// whole SQS event with `Records`; `-` reads standard input
    event: String,
    /// The provisioner function's ARN. Only its account id is used: for the
    /// sign-in URL when SIGNIN_URL is unset and the account has no alias
    #[arg(long, value_name = "ARN")]
    function_arn: Option<String>,
    /// Output: text, or one JSON array with an object per record
    #[arg(long, short = 'f', value_enum, default_value_t = PlanFormat::Text)]
    format: PlanFormat,
}

#[derive(Clone, Copy, ValueEnum)]
enum Format {
    Table,
    Json,
    Csv,
}

#[derive(Clone, Copy, ValueEnum)]
enum PlanFormat {
    Text,
    Json,
}

#[derive(Clone, Copy, ValueEnum)]
enum When {
    Auto,
    Always,
    Never,
}

/// The audit reads for at most this long.
const AUDIT_TIME: Duration = Duration::from_secs(600);
/// Events are read whole; SQS bodies are at most 256 KiB, an SQS event of ten.
const MAX_INPUT: u64 = 4 * 1024 * 1024;
/// `plan` uses the function's time per record.
const RECORD_TIME: Duration = Duration::from_secs(60);

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    // The library logs through `tracing`; shown (on stderr) only when asked.
    if std::env::var_os("RUST_LOG").is_some() {
        let _ = tracing::subscriber::set_global_default(hr_iam_provisioner::logging::subscriber(
            std::io::stderr,
        ));
    }
    // Boxed: the SDK's nested futures are too deep to lay out inline.
    let code = match cli.command {
        Some(Command::Plan(p)) => Box::pin(plan(p)).await,
        Some(Command::Audit(a)) => Box::pin(audit(a)).await,
        Some(Command::Review(r)) => Box::pin(access_review(r)).await,
        None => Box::pin(audit(cli.audit)).await,
    };
    ExitCode::from(code)
}

fn fail(what: impl std::fmt::Display) -> u8 {
    eprintln!("hr-iam-audit: {what}");
    2
}

/// The progress indicator: one spinner on stderr with the state of each read.
struct Spinner {
    bar: ProgressBar,
    parts: Mutex<BTreeMap<Part, String>>,
}

impl Spinner {
    fn new(show: bool) -> Self {
        let bar = if show {
            let b = ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr());
            b.enable_steady_tick(Duration::from_millis(120));
            b.set_message("reading IAM and Secrets Manager");
            b
        } else {
            ProgressBar::hidden()
        };
        Spinner {
            bar,
            parts: Mutex::new(BTreeMap::new()),
        }
    }
}

impl Progress for Spinner {
    fn update(&self, part: Part, message: String) {
        if let Ok(mut p) = self.parts.lock() {
            p.insert(part, message);
            let line: Vec<&str> = p.values().map(String::as_str).collect();
            self.bar.set_message(line.join(" | "));
        }
    }
}

async fn audit(a: AuditArgs) -> u8 {
    let config = match review::config_from_env(|k| std::env::var(k).ok()) {
        Ok(c) => c,
        Err(e) => return fail(e),
    };
    let sdk = wiring::sdk_config().await;
    let reader = Reader::new(&sdk, Instant::now() + AUDIT_TIME);
    let spinner = Spinner::new(!a.quiet && std::io::stderr().is_terminal());
    let result = review::run(&config, &reader, &spinner).await;
    spinner.bar.finish_and_clear();
    let mut report = match result {
        Ok(r) => r,
        Err(e) => return fail(format_args!("could not read AWS: {e}")),
    };
    if let Some(Baseline::Cis) = a.baseline {
        report.baseline = Some(review::cis::baseline(&report));
    }
    let color = match a.color {
        When::Always => true,
        When::Never => false,
        When::Auto => {
            std::io::stdout().is_terminal()
                && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty())
        }
    };
    let text = match a.format {
        Format::Table => render::table(&report, color),
        Format::Json => render::json(&report) + "\n",
        Format::Csv => match render::csv(&report) {
            Ok(t) => t,
            Err(e) => return fail(format_args!("could not write CSV: {e}")),
        },
    };
    print!("{text}");
    for i in &report.incomplete {
        eprintln!("hr-iam-audit: incomplete: {i}");
    }
    report.exit_code()
}

/// The access review: the audit's read, then one CSV and one page per manager.
async fn access_review(a: ReviewArgs) -> u8 {
    let config = match review::config_from_env(|k| std::env::var(k).ok()) {
        Ok(c) => c,
        Err(e) => return fail(e),
    };
    let sdk = wiring::sdk_config().await;
    let reader = Reader::new(&sdk, Instant::now() + AUDIT_TIME);
    let show = !a.quiet && std::io::stderr().is_terminal();
    let spinner = Spinner::new(show);
    let result = review::run(&config, &reader, &spinner).await;
    spinner.bar.finish_and_clear();
    let report = match result {
        Ok(r) => r,
        Err(e) => return fail(format_args!("could not read AWS: {e}")),
    };
    let now = time::OffsetDateTime::now_utc();
    let generated = hr_iam_provisioner::event::format_utc(now.replace_nanosecond(0).unwrap_or(now));
    let files = match review::access::files(&report, &generated) {
        Ok(f) => f,
        Err(e) => return fail(format_args!("could not write CSV: {e}")),
    };
    if let Err(e) = std::fs::create_dir_all(&a.out) {
        return fail(format_args!("cannot create {}: {e}", a.out.display()));
    }
    let bar = if show {
        ProgressBar::with_draw_target(Some(files.len() as u64), ProgressDrawTarget::stderr())
    } else {
        ProgressBar::hidden()
    };
    for (name, content) in &files {
        bar.set_message(name.clone());
        let path = a.out.join(name);
        if let Err(e) = std::fs::write(&path, content) {
            bar.finish_and_clear();
            return fail(format_args!("cannot write {}: {e}", path.display()));
        }
        bar.inc(1);
    }
    bar.finish_and_clear();
    let managers = (files.len() - 1) / 2;
    eprintln!(
        "hr-iam-audit: access review of {} users for {managers} managers written to {}",
        report.users.len(),
        a.out.join("index.html").display()
    );
    for i in &report.incomplete {
        eprintln!("hr-iam-audit: incomplete: {i}");
    }
    report.exit_code()
}

/// One record to plan: its message id (when from an SQS event), body and FIFO group.
struct Input {
    message_id: Option<String>,
    body: String,
    group: Option<String>,
}

fn read_event(source: &str) -> Result<String, String> {
    let mut text = String::new();
    let read = if source == "-" {
        std::io::stdin()
            .take(MAX_INPUT + 1)
            .read_to_string(&mut text)
    } else {
        std::fs::File::open(source).and_then(|f| f.take(MAX_INPUT + 1).read_to_string(&mut text))
    };
    read.map_err(|e| format!("cannot read {source}: {e}"))?;
    if text.len() as u64 > MAX_INPUT {
        return Err(format!("{source} is larger than {MAX_INPUT} bytes"));
    }
    Ok(text)
}

/// An SQS event file (`Records`) gives one input per record; anything else is one
/// message body, parsed later exactly as the function parses it.
fn inputs(text: &str) -> Result<Vec<Input>, String> {
    let is_sqs_event = serde_json::from_str::<Value>(text)
        .ok()
        .is_some_and(|v| v.get("Records").is_some_and(Value::is_array));
    if !is_sqs_event {
        return Ok(vec![Input {
            message_id: None,
            body: text.to_owned(),
            group: None,
        }]);
    }
    let ev: SqsEvent =
        serde_json::from_str(text).map_err(|e| format!("not a valid SQS event: {e}"))?;
    Ok(ev
        .records
        .into_iter()
        .map(|m| Input {
            group: m.attributes.get("MessageGroupId").cloned(),
            message_id: m.message_id,
            body: m.body.unwrap_or_default(),
        })
        .collect())
}

struct Planned {
    event: Option<HrEvent>,
    outcome: Outcome,
    reason: Option<String>,
    steps: Vec<String>,
}

fn rejected(event: Option<HrEvent>, reason: String) -> Planned {
    Planned {
        event,
        outcome: Outcome::Rejected,
        reason: Some(reason),
        steps: Vec::new(),
    }
}

async fn plan_one(p: &Provisioner, input: &Input, arn: &str) -> Planned {
    let ev = match parse_body(&input.body) {
        Ok(ev) => ev,
        Err(rej) => return rejected(None, rej.reason),
    };
    // Contract section 1: one employee's events are one FIFO message group.
    if let Some(g) = input.group.as_deref() {
        if g != ev.employee.employee_id {
            let why = format!(
                "FIFO message group {g} is not the employee id {}",
                ev.employee.employee_id
            );
            return rejected(Some(ev), why);
        }
    }
    let now = time::OffsetDateTime::now_utc();
    if let Err(why) = check_window(&ev, now, p.config.max_event_age_days) {
        return rejected(Some(ev), why);
    }
    let log = ActionLog::default();
    let budget = Budget::until(Instant::now() + RECORD_TIME);
    let r = Box::pin(p.process(&ev, arn, budget, &log)).await;
    Planned {
        event: Some(ev),
        outcome: r.outcome,
        reason: r.reason,
        steps: r.planned,
    }
}

// Everything echoed from an event (ids, names, a reason quoting a duplicate key,
// steps naming a group) goes through `shown`, as in the audit's table: a control
// or bidirectional character could otherwise rewrite the operator's terminal.
fn plan_json(input: &Input, r: &Planned) -> Value {
    let ev = r.event.as_ref();
    let esc = |v: Option<&String>| v.map(|s| shown(s));
    json!({
        "message_id": esc(input.message_id.as_ref()),
        "event_id": esc(ev.map(|e| &e.event_id)),
        "event_type": ev.map(|e| e.event_type.as_str()),
        "employee_id": esc(ev.map(|e| &e.employee.employee_id)),
        "user_name": esc(ev.map(|e| &e.user_name)),
        "outcome": r.outcome.as_str(),
        "reason": esc(r.reason.as_ref()),
        "steps": r.steps.iter().map(|s| shown(s)).collect::<Vec<_>>(),
    })
}

fn plan_text(input: &Input, r: &Planned) -> String {
    let mut out = String::new();
    if let Some(m) = &input.message_id {
        out.push_str(&format!("record {}\n", shown(m)));
    }
    if let Some(e) = &r.event {
        out.push_str(&format!(
            "event {} ({}) for employee {}, user {}\n",
            shown(&e.event_id),
            e.event_type.as_str(),
            shown(&e.employee.employee_id),
            shown(&e.user_name)
        ));
    }
    out.push_str(&format!("outcome: {}\n", r.outcome.as_str()));
    if let Some(why) = &r.reason {
        out.push_str(&format!("reason: {}\n", shown(why)));
    }
    match (r.outcome, r.steps.is_empty()) {
        (Outcome::Planned, false) => {
            out.push_str("steps it would take, in order:\n");
            for (i, s) in r.steps.iter().enumerate() {
                out.push_str(&format!("  {:>2}. {}\n", i + 1, shown(s)));
            }
        }
        (Outcome::Unchanged, _) => out.push_str("nothing to do: already in effect\n"),
        _ => {}
    }
    out
}

async fn plan(a: PlanArgs) -> u8 {
    let mut config = match review::config_from_env(|k| std::env::var(k).ok()) {
        Ok(c) => c,
        Err(e) => return fail(e),
    };
    config.dry_run = true;
    let text = match read_event(&a.event) {
        Ok(t) => t,
        Err(e) => return fail(e),
    };
    let inputs = match inputs(&text) {
        Ok(i) if i.is_empty() => return fail("the SQS event has no record"),
        Ok(i) => i,
        Err(e) => return fail(e),
    };
    let services = wiring::services_from_env(&config).await;
    let provisioner = Provisioner::new(config, services);
    let arn = a.function_arn.unwrap_or_default();
    let mut code = 0;
    let mut objects = Vec::new();
    for (i, input) in inputs.iter().enumerate() {
        let r = plan_one(&provisioner, input, &arn).await;
        if r.outcome.is_failure() {
            code = 2;
        }
        match a.format {
            PlanFormat::Json => objects.push(plan_json(input, &r)),
            PlanFormat::Text => {
                if i > 0 {
                    println!();
                }
                print!("{}", plan_text(input, &r));
            }
        }
    }
    if let PlanFormat::Json = a.format {
        println!(
            "{}",
            serde_json::to_string_pretty(&Value::Array(objects)).unwrap_or_default()
        );
    }
    code
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A rejection reason quotes the event (a duplicate key, a bad name): what
    /// `plan` echoes carries no control or bidirectional character.
    #[test]
    fn plan_escapes_what_it_echoes_from_an_event() {
        let body = "{\"event_id\":\"a\",\"event_id\":\"b\",\"x\u{202e}\u{1b}[2J\":1}";
        let ev = parse_body(body);
        let reason = match ev {
            Err(r) => r.reason,
            Ok(_) => panic!("a duplicate key is rejected"),
        };
        let input = Input {
            message_id: Some("m\u{200b}1".into()),
            body: body.into(),
            group: None,
        };
        let planned = rejected(None, format!("{reason} \u{202e}\u{1b}[31m"));
        let text = plan_text(&input, &planned);
        let json = plan_json(&input, &planned).to_string();
        for out in [&text, &json] {
            assert!(!out.contains(['\u{202e}', '\u{200b}', '\u{1b}']), "{out:?}");
        }
        assert!(text.contains("record m?1"), "{text}");
        assert!(
            text.contains("reason: ") && text.contains("??[31m"),
            "{text}"
        );
    }
}
