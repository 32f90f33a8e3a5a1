//! Shared test harness: a moto server per test binary, seeding, SQS events, log
//! capture and moto's data dump.
#![allow(dead_code)]

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use aws_config::{BehaviorVersion, Region, SdkConfig};
use aws_lambda_events::event::sqs::{SqsBatchResponse, SqsEvent, SqsMessage};
use hr_iam_provisioner::apply::Faults;
use hr_iam_provisioner::config::Config;
use hr_iam_provisioner::service::Provisioner;
use hr_iam_provisioner::wiring;
use serde_json::Value;

pub const SENDER: &str = "it@example.com";
pub const ARN: &str = "arn:aws:lambda:us-east-1:123456789012:function:hr-iam-provisioner";
pub const URL: &str = "https://123456789012.signin.aws.amazon.com/console";
pub const RULES: &str = r#"{"default":{"groups":["staff"],"console":true,"access_key":false},
  "departments":{"engineering":{"groups":["developers","staff"],"console":true,"access_key":true},
                 "sales":{"groups":["sales"],"console":true,"access_key":false}}}"#;

pub struct Moto {
    child: Child,
    pub port: u16,
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn moto_binary() -> String {
    std::env::var("MOTO_SERVER")
        .unwrap_or_else(|_| format!("{}/.venv/bin/moto_server", env!("CARGO_MANIFEST_DIR")))
}

impl Moto {
    /// Starts a moto server on a free loopback port and waits until it answers.
    pub fn start() -> Moto {
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .expect("free port");
        let child = Command::new(moto_binary())
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| {
                panic!("cannot start {} ({e}); run scripts/venv.sh", moto_binary())
            });
        let moto = Moto { child, port };
        let start = Instant::now();
        while start.elapsed() < Duration::from_secs(30) {
            if let Ok((200, _)) = http(port, "GET", "/moto-api/", "") {
                return moto;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("moto did not start on port {port}");
    }

    /// Starts ministack, a second, independent emulator (stricter than moto where
    /// AWS is: it keeps permissions boundaries, raises DeleteConflict on DeleteUser,
    /// refuses changes to a secret pending deletion), on a free loopback port.
    pub fn start_ministack() -> Moto {
        let bin = std::env::var("MINISTACK").unwrap_or_else(|_| {
            format!(
                "{}/.venv-ministack/bin/ministack",
                env!("CARGO_MANIFEST_DIR")
            )
        });
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .expect("free port");
        let child = Command::new(&bin)
            .env("GATEWAY_PORT", port.to_string())
            .env("MINISTACK_HOST", "127.0.0.1")
            .env("LOG_LEVEL", "WARNING")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {bin} ({e}); run scripts/venv.sh"));
        let emu = Moto { child, port };
        let start = Instant::now();
        while start.elapsed() < Duration::from_secs(30) {
            if let Ok((200, _)) = http(port, "GET", "/_ministack/health", "") {
                return emu;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("ministack did not start on port {port}");
    }

    /// The mails ministack recorded.
    pub fn ministack_mails(&self) -> Vec<Value> {
        let (status, body) = http(self.port, "GET", "/_ministack/ses/messages", "").expect("mails");
        assert_eq!(status, 200, "{body}");
        let v: Value = serde_json::from_str(&body).expect("JSON");
        // {"messages": {"<account>": [..]}}
        v["messages"]
            .as_object()
            .map(|by_account| {
                by_account
                    .values()
                    .filter_map(Value::as_array)
                    .flatten()
                    .cloned()
                    .collect()
            })
            .unwrap_or_default()
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    pub fn reset(&self) {
        let (status, _) = http(self.port, "POST", "/moto-api/reset", "").expect("reset");
        assert_eq!(status, 200);
    }

    /// moto's whole state. Must be read before any DeleteUser (moto 5.2 then
    /// answers 500 until a reset).
    pub fn data(&self) -> Value {
        let (status, body) = http(self.port, "GET", "/moto-api/data.json", "").expect("data.json");
        assert_eq!(status, 200, "data.json answered {status}");
        serde_json::from_str(&body).expect("data.json is JSON")
    }

    /// The mails moto recorded: (to, subject, body).
    pub fn mails(&self) -> Vec<Value> {
        self.data()["ses"]["Message"]
            .as_array()
            .cloned()
            .unwrap_or_default()
    }

    /// The live console password of a user, as moto stores it.
    pub fn live_password(&self, user: &str) -> Option<String> {
        self.data()["iam"]["User"]
            .as_array()?
            .iter()
            .find(|u| u["name"] == user)
            .and_then(|u| u["password"].as_str().map(str::to_owned))
    }

    pub async fn sdk(&self) -> SdkConfig {
        aws_config::defaults(BehaviorVersion::latest())
            .http_client(wiring::http_client())
            .endpoint_url(self.url())
            .region(Region::new("us-east-1"))
            .credentials_provider(aws_sdk_iam::config::Credentials::new(
                "test", "test", None, None, "test",
            ))
            .retry_config(aws_config::retry::RetryConfig::disabled())
            .load()
            .await
    }

    /// Groups, a verified sender and a strict password policy.
    pub async fn seed(&self) {
        let sdk = self.sdk().await;
        let iam = aws_sdk_iam::Client::new(&sdk);
        for g in ["developers", "staff", "sales"] {
            iam.create_group()
                .group_name(g)
                .send()
                .await
                .expect("group");
        }
        iam.update_account_password_policy()
            .minimum_password_length(24)
            .require_symbols(true)
            .require_numbers(true)
            .require_uppercase_characters(true)
            .require_lowercase_characters(true)
            .send()
            .await
            .expect("policy");
        aws_sdk_sesv2::Client::new(&sdk)
            .create_email_identity()
            .email_identity(SENDER)
            .send()
            .await
            .expect("identity");
    }

    pub async fn provisioner(&self, env: &[(&str, &str)]) -> Provisioner {
        let mut m: HashMap<String, String> = HashMap::new();
        m.insert("SENDER_EMAIL".into(), SENDER.into());
        m.insert("PROVISIONING_RULES".into(), RULES.into());
        for (k, v) in env {
            m.insert((*k).into(), (*v).into());
        }
        let config = Config::from_env(|k| m.get(k).cloned()).expect("config");
        let services = wiring::services(&self.sdk().await, &config, true);
        Provisioner::new(config, services)
    }
}

/// A minimal HTTP/1.1 client for moto's own API (no extra crates).
pub fn http(port: u16, method: &str, path: &str, body: &str) -> std::io::Result<(u16, String)> {
    let mut s = TcpStream::connect(("127.0.0.1", port))?;
    s.set_read_timeout(Some(Duration::from_secs(30)))?;
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )?;
    let mut raw = Vec::new();
    s.read_to_end(&mut raw)?;
    let text = String::from_utf8_lossy(&raw).into_owned();
    let status = text
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let body = if head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        dechunk(body)
    } else {
        body.to_owned()
    };
    Ok((status, body))
}

fn dechunk(mut s: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = s.split_once("\r\n") {
        let n = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
        if n == 0 || rest.len() < n {
            break;
        }
        out.push_str(&rest[..n]);
        s = rest[n..].trim_start_matches("\r\n");
    }
    out
}

pub fn body(
    kind: &str,
    event_id: &str,
    at: &str,
    employee_id: &str,
    user: &str,
    dept: &str,
) -> String {
    serde_json::json!({
        "event_id": event_id,
        "event_type": format!("employee.{kind}"),
        "occurred_at": at,
        "employee": {
            "employee_id": employee_id,
            "email": format!("{user}@example.com"),
            "username": user,
            "first_name": "Test",
            "last_name": "User",
            "department": dept,
            "manager_email": "lead@example.com"
        }
    })
    .to_string()
}

pub fn joined(event_id: &str, at: &str, user: &str, dept: &str) -> String {
    body("joined", event_id, at, &format!("E-{user}"), user, dept)
}

pub fn left(event_id: &str, at: &str, user: &str) -> String {
    body(
        "left",
        event_id,
        at,
        &format!("E-{user}"),
        user,
        "engineering",
    )
}

/// An SQS event of (message id, body, FIFO group).
pub fn sqs(records: &[(&str, &str, Option<&str>)]) -> SqsEvent {
    let mut ev = SqsEvent::default();
    ev.records = records
        .iter()
        .map(|(id, body, group)| {
            let mut m = SqsMessage::default();
            m.message_id = Some((*id).into());
            m.body = Some((*body).into());
            if let Some(g) = group {
                m.attributes.insert("MessageGroupId".into(), (*g).into());
            }
            m
        })
        .collect();
    ev
}

pub async fn run(p: &Provisioner, ev: SqsEvent) -> SqsBatchResponse {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    p.handle_batch(ev, ARN, deadline).await
}

pub fn failures(r: &SqsBatchResponse) -> Vec<String> {
    r.batch_item_failures
        .iter()
        .map(|f| f.item_identifier.clone())
        .collect()
}

/// Captures every log line written on this thread while the guard lives.
///
/// One global subscriber writes to whichever buffer the current thread has set:
/// scoped (`set_default`) subscribers in parallel tests can miss events through
/// tracing's shared callsite-interest cache. Tests run on a current-thread runtime,
/// so all of a test's events are written on its own thread.
#[derive(Clone, Default)]
pub struct Logs(Arc<Mutex<Vec<u8>>>);

thread_local! {
    static CURRENT: std::cell::RefCell<Option<Logs>> = const { std::cell::RefCell::new(None) };
}

struct ThreadWriter;

impl Write for ThreadWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        CURRENT.with(|c| {
            if let Some(logs) = &*c.borrow() {
                logs.0.lock().unwrap().extend_from_slice(buf);
            }
        });
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

pub struct CaptureGuard;

impl Drop for CaptureGuard {
    fn drop(&mut self) {
        CURRENT.with(|c| *c.borrow_mut() = None);
    }
}

impl Logs {
    pub fn capture() -> (Logs, CaptureGuard) {
        static INIT: std::sync::Once = std::sync::Once::new();
        INIT.call_once(|| {
            let sub = hr_iam_provisioner::logging::subscriber(|| ThreadWriter);
            tracing::subscriber::set_global_default(sub).expect("one global subscriber");
        });
        let logs = Logs::default();
        CURRENT.with(|c| *c.borrow_mut() = Some(logs.clone()));
        (logs, CaptureGuard)
    }
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }
    pub fn lines(&self) -> Vec<Value> {
        self.text()
            .lines()
            .map(|l| {
                serde_json::from_str(l)
                    .unwrap_or_else(|e| panic!("log line is not JSON ({e}): {l}"))
            })
            .collect()
    }
    pub fn audits(&self) -> Vec<Value> {
        self.lines()
            .into_iter()
            .filter(|l| l["audit"] == true)
            .collect()
    }
    pub fn clear(&self) {
        self.0.lock().unwrap().clear();
    }
}

/// What AWS holds about a user, read through the SDK.
#[derive(Debug, PartialEq)]
pub struct Snapshot {
    pub exists: bool,
    pub path: String,
    pub tags: Vec<(String, String)>,
    pub groups: Vec<String>,
    pub policies: Vec<String>,
    pub inline: Vec<String>,
    pub login_profile: bool,
    pub keys: Vec<String>,
    pub mfa: Vec<String>,
    pub ssh: Vec<String>,
    pub certs: Vec<String>,
    pub secret: Option<Value>,
    pub secret_scheduled: bool,
}

pub async fn snapshot(sdk: &SdkConfig, user: &str) -> Snapshot {
    let iam = aws_sdk_iam::Client::new(sdk);
    let sm = aws_sdk_secretsmanager::Client::new(sdk);
    let secret_name = format!("hr-provisioner/{user}");
    let (secret, secret_scheduled) =
        match sm.get_secret_value().secret_id(&secret_name).send().await {
            Ok(o) => (
                o.secret_string().and_then(|s| serde_json::from_str(s).ok()),
                false,
            ),
            Err(_) => {
                let scheduled = sm
                    .describe_secret()
                    .secret_id(&secret_name)
                    .send()
                    .await
                    .map(|d| d.deleted_date().is_some())
                    .unwrap_or(false);
                (None, scheduled)
            }
        };
    let Ok(u) = iam.get_user().user_name(user).send().await else {
        return Snapshot {
            exists: false,
            path: String::new(),
            tags: vec![],
            groups: vec![],
            policies: vec![],
            inline: vec![],
            login_profile: false,
            keys: vec![],
            mfa: vec![],
            ssh: vec![],
            certs: vec![],
            secret,
            secret_scheduled,
        };
    };
    let u = u.user().unwrap();
    let mut tags: Vec<(String, String)> = u
        .tags()
        .iter()
        .map(|t| (t.key().into(), t.value().into()))
        .collect();
    tags.sort();
    let mut groups: Vec<String> = iam
        .list_groups_for_user()
        .user_name(user)
        .send()
        .await
        .unwrap()
        .groups()
        .iter()
        .map(|g| g.group_name().to_owned())
        .collect();
    groups.sort();
    Snapshot {
        exists: true,
        path: u.path().into(),
        tags,
        groups,
        policies: iam
            .list_attached_user_policies()
            .user_name(user)
            .send()
            .await
            .unwrap()
            .attached_policies()
            .iter()
            .filter_map(|p| p.policy_arn().map(Into::into))
            .collect(),
        inline: iam
            .list_user_policies()
            .user_name(user)
            .send()
            .await
            .unwrap()
            .policy_names()
            .to_vec(),
        login_profile: iam.get_login_profile().user_name(user).send().await.is_ok(),
        keys: iam
            .list_access_keys()
            .user_name(user)
            .send()
            .await
            .unwrap()
            .access_key_metadata()
            .iter()
            .filter_map(|k| k.access_key_id().map(Into::into))
            .collect(),
        mfa: iam
            .list_mfa_devices()
            .user_name(user)
            .send()
            .await
            .unwrap()
            .mfa_devices()
            .iter()
            .map(|d| d.serial_number().into())
            .collect(),
        ssh: iam
            .list_ssh_public_keys()
            .user_name(user)
            .send()
            .await
            .unwrap()
            .ssh_public_keys()
            .iter()
            .map(|k| k.ssh_public_key_id().into())
            .collect(),
        certs: iam
            .list_signing_certificates()
            .user_name(user)
            .send()
            .await
            .unwrap()
            .certificates()
            .iter()
            .map(|c| c.certificate_id().into())
            .collect(),
        secret,
        secret_scheduled,
    }
}

impl Snapshot {
    pub fn tag(&self, k: &str) -> Option<&str> {
        self.tags
            .iter()
            .find(|(key, _)| key == k)
            .map(|(_, v)| v.as_str())
    }
}

/// Stops a record after its k-th change, as a crash of the process would.
pub struct CrashAfter {
    pub k: usize,
    pub seen: AtomicUsize,
}

impl CrashAfter {
    pub fn new(k: usize) -> Self {
        CrashAfter {
            k,
            seen: AtomicUsize::new(0),
        }
    }
}

impl Faults for CrashAfter {
    fn crash_after(&self, _action: &str) -> bool {
        self.seen.fetch_add(1, Ordering::SeqCst) + 1 == self.k
    }
}

/// Event times relative to the run (the function rejects events older than
/// MAX_EVENT_AGE_DAYS or from the future): three days, two days and one day ago,
/// the same all through one test binary.
fn days_ago(days: i64) -> &'static str {
    use std::sync::OnceLock;
    use time::format_description::well_known::Rfc3339;
    static BASE: OnceLock<time::OffsetDateTime> = OnceLock::new();
    static TIMES: OnceLock<[String; 4]> = OnceLock::new();
    let base = *BASE.get_or_init(|| {
        let now = time::OffsetDateTime::now_utc();
        now.replace_nanosecond(0).unwrap_or(now)
    });
    let times = TIMES.get_or_init(|| {
        [0, 1, 2, 3].map(|d| {
            (base - time::Duration::days(d))
                .format(&Rfc3339)
                .expect("formats")
        })
    });
    &times[days as usize]
}

pub fn t1() -> &'static str {
    days_ago(3)
}
pub fn t2() -> &'static str {
    days_ago(2)
}
pub fn t3() -> &'static str {
    days_ago(1)
}

/// The audit line of one SQS message.
pub fn audit_of(logs: &Logs, message_id: &str) -> Value {
    logs.audits()
        .into_iter()
        .find(|a| a["message_id"] == message_id)
        .expect("audit line")
}

/// Creates a customer managed policy and returns its ARN.
pub async fn create_policy(sdk: &SdkConfig, name: &str, document: &str) -> String {
    aws_sdk_iam::Client::new(sdk)
        .create_policy()
        .policy_name(name)
        .policy_document(document)
        .send()
        .await
        .expect("create policy")
        .policy()
        .and_then(|p| p.arn())
        .expect("policy ARN")
        .to_owned()
}

/// A secret's tags and whether its deletion is scheduled.
pub async fn secret_tags(
    moto: &Moto,
    name: &str,
) -> (std::collections::BTreeMap<String, String>, bool) {
    let d = aws_sdk_secretsmanager::Client::new(&moto.sdk().await)
        .describe_secret()
        .secret_id(name)
        .send()
        .await
        .expect("describe");
    let tags = d
        .tags()
        .iter()
        .map(|t| (t.key().unwrap().to_owned(), t.value().unwrap().to_owned()))
        .collect();
    (tags, d.deleted_date().is_some())
}
