//! The audit against moto: drift of every kind seeded by hand, the built
//! `hr-iam-audit` binary run through a counting proxy (table, JSON, CSV, exit
//! codes), no secret value anywhere, `plan`, and the scheduled audit's logs.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader, Write};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use aws_sdk_iam::types::Tag as IamTag;
use aws_sdk_secretsmanager::types::Tag as SmTag;
use common::*;
use hr_iam_provisioner::event::format_utc;
use hr_iam_provisioner::review::lambda::scheduled;
use hr_iam_provisioner::review::read::Reader;
use hr_iam_provisioner::review::{self, Code};
use serde_json::Value;
use time::OffsetDateTime;

/// In every seeded secret: it must never reach any output.
const CANARY: &str = "CANARY-s3cr3t-0f7d2c";
const BIN: &str = env!("CARGO_BIN_EXE_hr-iam-audit");
const ALLOW_ALL: &str =
    r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"*","Resource":"*"}]}"#;
const SSH_KEY: &str = "ssh-rsa AAAAB3NzaC1yc2EAAAADAQABAAABAQDZ0pv1Ht1kz5q0K1Q0f0m2c1ck4sOVU8Hc2Wo0wPnOmqGx3s3k1x1pD3Ji0R1yYv8dQW8S4Ff0v8B3m6cQ2Z4v0nV4+3kWl8P9b2j8fSxq5rjF2YkR4mQ3x5H0y9l1K8rTn0pX2hX3a3y2u7ZQ8L0m7M3yT0b4D5Q6X5R3v1H9w2sJ0o8e6Q7r4Y1F2a3b4c5d6e7f8g9h0i1j2k3l4m5n6o7p8q9r0s1t2u3v4w5x6y7z8A9B0C1D2E3F4G5H6I7J8K9L0M1N2O3P4Q5R6S7T8U9V0W1X2Y3Z4 audit@test";
const DENY_ALL: &str =
    r#"{"Version":"2012-10-17","Statement":[{"Effect":"Deny","Action":"*","Resource":"*"}]}"#;

/// bench/tools/awsproxy.py: forwards to moto and counts every call by operation.
struct Proxy {
    child: Child,
    port: u16,
}

impl Drop for Proxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Proxy {
    fn start(moto: &Moto) -> Proxy {
        let root = env!("CARGO_MANIFEST_DIR");
        let mut child = Command::new(format!("{root}/.venv/bin/python"))
            .arg(format!("{root}/bench/tools/awsproxy.py"))
            .args(["--listen-port", "0", "--upstream", &moto.url()])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("start awsproxy.py");
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let port = line
            .trim()
            .strip_prefix("READY ")
            .and_then(|p| p.parse().ok())
            .unwrap_or_else(|| panic!("proxy said {line:?}"));
        Proxy { child, port }
    }
    fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }
    fn reset(&self) {
        http(self.port, "POST", "/__proxy/reset", "").unwrap();
    }
    /// service -> operation -> count.
    fn counts(&self) -> BTreeMap<String, BTreeMap<String, u64>> {
        let (_, body) = http(self.port, "GET", "/__proxy/stats", "").unwrap();
        let v: Value = serde_json::from_str(&body).unwrap();
        serde_json::from_value(v["counts"].clone()).unwrap()
    }
}

struct Run {
    code: i32,
    out: String,
    err: String,
}

/// Runs the built binary with only the variables given (plus AWS test ones).
fn audit(endpoint: &str, env: &[(&str, &str)], args: &[&str], stdin: Option<&str>) -> Run {
    let mut cmd = Command::new(BIN);
    cmd.env_clear()
        .env("AWS_ENDPOINT_URL", endpoint)
        .env("AWS_ACCESS_KEY_ID", "test")
        .env("AWS_SECRET_ACCESS_KEY", "test")
        .env("AWS_REGION", "us-east-1")
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .env("PROVISIONING_RULES", RULES)
        .envs(env.iter().copied())
        .args(args)
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().expect("run hr-iam-audit");
    if let Some(text) = stdin {
        child
            .stdin
            .take()
            .unwrap()
            .write_all(text.as_bytes())
            .unwrap();
    }
    let o = child.wait_with_output().unwrap();
    Run {
        code: o.status.code().unwrap_or(-1),
        out: String::from_utf8_lossy(&o.stdout).into_owned(),
        err: String::from_utf8_lossy(&o.stderr).into_owned(),
    }
}

fn now() -> String {
    format_utc(OffsetDateTime::now_utc())
}

fn itag(k: &str, v: &str) -> IamTag {
    IamTag::builder().key(k).value(v).build().unwrap()
}

fn stag(k: &str, v: &str) -> SmTag {
    SmTag::builder().key(k).value(v).build()
}

/// A managed user with exactly the contract's tags (section 3) and extensions.
async fn seed_user(sdk: &aws_config::SdkConfig, name: &str, dept: &str, status: &str) {
    let iam = aws_sdk_iam::Client::new(sdk);
    let mut tags = vec![
        itag("hr:employee-id", &format!("E-{name}")),
        itag("hr:managed-by", "hr-provisioner"),
        itag("hr:status", status),
        itag("hr:last-event-at", "2026-11-20T09:00:00Z"),
        itag("hr:last-event-id", &format!("ev-{name}")),
        itag("hr:email", &format!("{name}@example.com")),
        itag("hr:manager-email", "lead@example.com"),
    ];
    if !dept.is_empty() {
        tags.push(itag("hr:department", dept));
    }
    iam.create_user()
        .user_name(name)
        .path("/employees/")
        .set_tags(Some(tags))
        .send()
        .await
        .unwrap();
}

async fn login_profile(sdk: &aws_config::SdkConfig, name: &str) {
    aws_sdk_iam::Client::new(sdk)
        .create_login_profile()
        .user_name(name)
        .password("Xx1!-a-long-enough-password-for-the-policy")
        .send()
        .await
        .unwrap();
}

async fn add_group(sdk: &aws_config::SdkConfig, name: &str, group: &str) {
    aws_sdk_iam::Client::new(sdk)
        .add_user_to_group()
        .user_name(name)
        .group_name(group)
        .send()
        .await
        .unwrap();
}

/// The user's secret with the tags of contract section 3 and the canary value.
async fn seed_secret(sdk: &aws_config::SdkConfig, name: &str, status: &str, scheduled: bool) {
    let sm = aws_sdk_secretsmanager::Client::new(sdk);
    let secret = format!("hr-provisioner/{name}");
    sm.create_secret()
        .name(&secret)
        .secret_string(format!(r#"{{"user_name":"{name}","password":"{CANARY}"}}"#))
        .set_tags(Some(vec![
            stag("hr:employee-id", &format!("E-{name}")),
            stag("hr:managed-by", "hr-provisioner"),
            stag("hr:status", status),
            stag("hr:last-event-at", "2026-11-20T09:00:00Z"),
            stag("hr:last-event-id", &format!("ev-{name}")),
            stag("hr:user-name", name),
        ]))
        .send()
        .await
        .unwrap();
    if scheduled {
        sm.delete_secret()
            .secret_id(&secret)
            .recovery_window_in_days(7)
            .send()
            .await
            .unwrap();
    }
}

/// Adds the section-3 secret tags the provisioner of this branch does not write
/// yet (they land in main in parallel), taken from the user and its one key.
async fn complete_secret_tags(sdk: &aws_config::SdkConfig, name: &str) {
    let iam = aws_sdk_iam::Client::new(sdk);
    let user = iam.get_user().user_name(name).send().await.unwrap();
    let user = user.user().unwrap();
    let mut tags: Vec<SmTag> = user
        .tags()
        .iter()
        .filter(|t| ["hr:status", "hr:last-event-at", "hr:last-event-id"].contains(&t.key()))
        .map(|t| stag(t.key(), t.value()))
        .collect();
    tags.push(stag("hr:user-name", name));
    let keys = iam.list_access_keys().user_name(name).send().await.unwrap();
    if let Some(k) = keys.access_key_metadata().first() {
        let created = OffsetDateTime::from_unix_timestamp(k.create_date().unwrap().secs()).unwrap();
        tags.push(stag("hr:access-key-id", k.access_key_id().unwrap()));
        tags.push(stag("hr:access-key-created", &format_utc(created)));
    }
    aws_sdk_secretsmanager::Client::new(sdk)
        .tag_resource()
        .secret_id(format!("hr-provisioner/{name}"))
        .set_tags(Some(tags))
        .send()
        .await
        .unwrap();
}

/// Every secret value in moto, read directly (not through the proxy).
async fn all_secret_values(sdk: &aws_config::SdkConfig) -> Vec<String> {
    let sm = aws_sdk_secretsmanager::Client::new(sdk);
    let list = sm
        .list_secrets()
        .include_planned_deletion(true)
        .max_results(100)
        .send()
        .await
        .unwrap();
    let mut values = Vec::new();
    for x in list.secret_list() {
        let Ok(v) = sm
            .get_secret_value()
            .secret_id(x.name().unwrap())
            .send()
            .await
        else {
            continue; // scheduled for deletion: its value is the canary anyway
        };
        let doc: Value = serde_json::from_str(v.secret_string().unwrap()).unwrap();
        for field in ["password", "secret_access_key"] {
            if let Some(s) = doc[field].as_str() {
                values.push(s.to_owned());
            }
        }
    }
    values.push(CANARY.to_owned());
    values
}

fn findings(json: &Value) -> BTreeSet<(String, String)> {
    json["findings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| {
            let subject = f["user_name"]
                .as_str()
                .or(f["secret_name"].as_str())
                .unwrap();
            (f["code"].as_str().unwrap().to_owned(), subject.to_owned())
        })
        .collect()
}

fn pair(code: &str, subject: &str) -> (String, String) {
    (code.to_owned(), subject.to_owned())
}

/// The clean state, then drift of every kind by hand; each output shape and exit
/// code through the built binary; only the four read operations on the wire.
#[tokio::test]
async fn clean_then_every_kind_of_drift() {
    let moto = Moto::start();
    moto.seed().await;
    let sdk = moto.sdk().await;
    let iam = aws_sdk_iam::Client::new(&sdk);
    let sm = aws_sdk_secretsmanager::Client::new(&sdk);

    // Clean: two joiners through the provisioner itself ...
    let p = moto.provisioner(&[("SIGNIN_URL", URL)]).await;
    let at = now();
    let r = run(
        &p,
        sqs(&[
            ("m1", &joined("j1", &at, "eve.eng", "engineering"), None),
            ("m2", &joined("j2", &at, "sam.sales", "sales"), None),
        ]),
    )
    .await;
    assert!(failures(&r).is_empty());
    for u in ["eve.eng", "sam.sales"] {
        complete_secret_tags(&sdk, u).await;
    }
    // ... a console user with MFA, a properly retired user and a tombstone, by hand.
    seed_user(&sdk, "mia.mfa", "", "active").await;
    add_group(&sdk, "mia.mfa", "staff").await;
    login_profile(&sdk, "mia.mfa").await;
    let serial = iam
        .create_virtual_mfa_device()
        .virtual_mfa_device_name("mia.mfa")
        .send()
        .await
        .unwrap()
        .virtual_mfa_device()
        .unwrap()
        .serial_number()
        .to_owned();
    iam.enable_mfa_device()
        .user_name("mia.mfa")
        .serial_number(serial)
        .authentication_code1("123456")
        .authentication_code2("654321")
        .send()
        .await
        .unwrap();
    seed_secret(&sdk, "mia.mfa", "active", false).await;
    seed_user(&sdk, "rita.retired", "sales", "retired").await;
    iam.put_user_policy()
        .user_name("rita.retired")
        .policy_name("hr-provisioner-deny-all")
        .policy_document(DENY_ALL)
        .send()
        .await
        .unwrap();
    seed_secret(&sdk, "rita.retired", "retired", true).await;
    seed_secret(&sdk, "ted.deleted", "deleted", true).await;

    let proxy = Proxy::start(&moto);
    let endpoint = proxy.url();
    let mut outputs: Vec<String> = Vec::new();

    let clean = audit(&endpoint, &[], &["--format", "json"], None);
    assert_eq!(clean.code, 0, "{}{}", clean.out, clean.err);
    let v: Value = serde_json::from_str(&clean.out).unwrap();
    assert!(
        v["findings"].as_array().unwrap().is_empty(),
        "{}",
        clean.out
    );
    let users: Vec<&str> = v["users"]
        .as_array()
        .unwrap()
        .iter()
        .map(|u| u["user_name"].as_str().unwrap())
        .collect();
    assert_eq!(users, ["eve.eng", "mia.mfa", "rita.retired", "sam.sales"]);
    let eve = &v["users"][0];
    assert_eq!(eve["rule"], "engineering");
    assert_eq!(eve["access_keys"][0]["stored"], true);
    assert!(eve["access_keys"][0]["id"]
        .as_str()
        .unwrap()
        .starts_with("AKIA"));
    assert_eq!(eve["secret"]["consistent"], true);
    assert_eq!(v["users"][1]["mfa"], true);
    assert_eq!(v["summary"]["tombstones"], 1);
    outputs.push(clean.out);
    let table = audit(&endpoint, &[], &[], None);
    assert_eq!(table.code, 0);
    assert!(table.out.contains("No finding.") && table.out.contains("eve.eng"));
    assert!(!table.out.contains('\u{1b}'), "no colour when piped");
    assert!(
        table.err.is_empty(),
        "no progress when piped: {}",
        table.err
    );
    outputs.push(table.out);
    let csv = audit(&endpoint, &[], &["audit", "--format", "csv"], None);
    assert_eq!(
        (csv.code, csv.out.as_str()),
        (0, "code,user_name,secret_name,detail,severity,controls\n")
    );

    // Drift, by hand.
    add_group(&sdk, "eve.eng", "sales").await; // extra group
    let by_hand = iam
        .create_policy()
        .policy_name("by-hand")
        .policy_document(DENY_ALL)
        .send()
        .await
        .unwrap()
        .policy()
        .unwrap()
        .arn()
        .unwrap()
        .to_owned();
    iam.attach_user_policy()
        .user_name("sam.sales")
        .policy_arn(&by_hand)
        .send()
        .await
        .unwrap(); // policy attached by hand
    iam.create_access_key()
        .user_name("sam.sales")
        .send()
        .await
        .unwrap(); // key outside the flow
    sm.delete_secret()
        .secret_id("hr-provisioner/eve.eng")
        .recovery_window_in_days(7)
        .send()
        .await
        .unwrap(); // an active user's secret deleted
    seed_secret(&sdk, "ghost", "active", false).await; // orphan
    seed_user(&sdk, "rex.retired", "", "retired").await; // retired with access left
    add_group(&sdk, "rex.retired", "staff").await;
    login_profile(&sdk, "rex.retired").await;
    seed_secret(&sdk, "rex.retired", "retired", true).await;
    iam.create_user()
        .user_name("mallory")
        .path("/employees/")
        .send()
        .await
        .unwrap(); // unmanaged in the path
    seed_user(&sdk, "gus.group", "", "active").await; // missing grant: no staff
    login_profile(&sdk, "gus.group").await;
    // Contract section 9: an end date long past, the user still active.
    iam.tag_user()
        .user_name("gus.group")
        .tags(itag("hr:end-date", "2020-01-31"))
        .send()
        .await
        .unwrap();
    // A pending schedule of an employee not started yet (read by name alone).
    let scheduler = aws_sdk_scheduler::Client::new(&sdk);
    scheduler
        .create_schedule_group()
        .name("hr-provisioner")
        .send()
        .await
        .unwrap();
    scheduler
        .create_schedule()
        .group_name("hr-provisioner")
        .name("hr-start-E9001")
        .schedule_expression("at(2030-01-01T00:00:00)")
        .flexible_time_window(
            aws_sdk_scheduler::types::FlexibleTimeWindow::builder()
                .mode(aws_sdk_scheduler::types::FlexibleTimeWindowMode::Off)
                .build()
                .unwrap(),
        )
        .target(
            aws_sdk_scheduler::types::Target::builder()
                .arn("arn:aws:sqs:us-east-1:123456789012:hr.fifo")
                .role_arn("arn:aws:iam::123456789012:role/hr-scheduler")
                .input("{}")
                .build()
                .unwrap(),
        )
        .send()
        .await
        .unwrap();
    seed_secret(&sdk, "gus.group", "active", false).await;
    seed_user(&sdk, "stan.stale", "", "active").await; // stale secret
    add_group(&sdk, "stan.stale", "staff").await;
    login_profile(&sdk, "stan.stale").await;
    seed_secret(&sdk, "stan.stale", "active", false).await;
    sm.tag_resource()
        .secret_id("hr-provisioner/stan.stale")
        .tags(stag("hr:last-event-id", "ev-older"))
        .send()
        .await
        .unwrap();
    seed_user(&sdk, "nina.name", "", "active").await; // name mismatch
    add_group(&sdk, "nina.name", "staff").await;
    login_profile(&sdk, "nina.name").await;
    seed_secret(&sdk, "nina.name", "active", false).await;
    iam.tag_user()
        .user_name("nina.name")
        .tags(itag("hr:email", "nina.other@example.com"))
        .send()
        .await
        .unwrap();
    // Contract v3 (section 8): a second user of eve's employee id, an SSH key on a
    // managed user, full administrator through a group, two active keys.
    seed_user(&sdk, "eve.twin", "", "active").await;
    add_group(&sdk, "eve.twin", "staff").await;
    iam.tag_user()
        .user_name("eve.twin")
        .tags(itag("hr:employee-id", "E-eve.eng"))
        .send()
        .await
        .unwrap();
    iam.upload_ssh_public_key()
        .user_name("gus.group")
        .ssh_public_key_body(SSH_KEY)
        .send()
        .await
        .unwrap();
    let god = iam
        .create_policy()
        .policy_name("god-mode")
        .policy_document(ALLOW_ALL)
        .send()
        .await
        .unwrap()
        .policy()
        .unwrap()
        .arn()
        .unwrap()
        .to_owned();
    iam.create_group()
        .group_name("admins")
        .send()
        .await
        .unwrap();
    iam.attach_group_policy()
        .group_name("admins")
        .policy_arn(&god)
        .send()
        .await
        .unwrap();
    add_group(&sdk, "nina.name", "admins").await;
    sm.tag_resource()
        .secret_id("hr-provisioner/nina.name")
        .tags(stag("hr:status", "retired"))
        .send()
        .await
        .unwrap(); // stale: the secret says retired, the user is active
    iam.create_access_key()
        .user_name("sam.sales")
        .send()
        .await
        .unwrap(); // a second active key
    let secret_values = all_secret_values(&sdk).await;

    // MFA_GRACE_DAYS=0: every console user without MFA is past its grace.
    let env = [("MFA_GRACE_DAYS", "0")];
    proxy.reset();
    let drift = audit(&endpoint, &env, &["--format", "json"], None);
    assert_eq!(drift.code, 1, "{}{}", drift.out, drift.err);
    let v: Value = serde_json::from_str(&drift.out).unwrap();
    let found = findings(&v);
    for want in [
        pair("extra-grant", "eve.eng"),
        pair("extra-grant", "sam.sales"),
        pair("unstored-key", "sam.sales"),
        pair("missing-secret", "eve.eng"),
        pair("orphan-secret", "hr-provisioner/ghost"),
        pair("retired-with-access", "rex.retired"),
        pair("unmanaged-in-path", "mallory"),
        pair("no-mfa", "sam.sales"),
        pair("no-mfa", "eve.eng"),
        pair("missing-grant", "gus.group"),
        pair("tampered", "stan.stale"),
        pair("stale-secret", "nina.name"),
        pair("name-mismatch", "nina.name"),
        pair("past-end-date", "gus.group"),
        pair("duplicate-employee", "eve.eng"),
        pair("duplicate-employee", "eve.twin"),
        pair("unmanaged-credential", "gus.group"),
        pair("full-admin", "nina.name"),
        pair("multiple-active-keys", "sam.sales"),
        pair("direct-policy", "sam.sales"),
    ] {
        assert!(found.contains(&want), "{want:?} not in {found:#?}");
    }
    let codes: BTreeSet<&str> = found.iter().map(|(c, _)| c.as_str()).collect();
    let all: BTreeSet<&str> = Code::ALL
        .iter()
        .map(|c| c.as_str())
        // moto dates every key now and records no use: unit-tested only.
        .filter(|c| !matches!(*c, "key-age" | "unused-credential"))
        .collect();
    assert_eq!(codes, all);
    // Clean parts stay clean: MFA user, properly retired user, tombstone.
    for quiet in ["mia.mfa", "rita.retired", "hr-provisioner/ted.deleted"] {
        assert!(found.iter().all(|(_, s)| s != quiet), "{quiet}: {found:#?}");
    }
    for f in v["findings"].as_array().unwrap() {
        assert!(f["detail"].as_str().is_some_and(|d| !d.is_empty()));
        assert!(
            f["user_name"].is_string() || f["secret_name"].is_string(),
            "{f}"
        );
    }
    // The calls the binary reports are the calls on the wire: four read operations,
    // and the two per-user lists (moto lacks ListServiceSpecificCredentials).
    let counts = proxy.counts();
    let ops: BTreeSet<(&str, &str)> = counts
        .iter()
        .flat_map(|(s, m)| m.keys().map(move |o| (s.as_str(), o.as_str())))
        .collect();
    assert_eq!(
        ops,
        BTreeSet::from([
            ("iam", "GenerateCredentialReport"),
            ("iam", "GetAccountAuthorizationDetails"),
            ("iam", "GetCredentialReport"),
            ("iam", "ListSSHPublicKeys"),
            ("iam", "ListServiceSpecificCredentials"),
            ("secretsmanager", "ListSecrets"),
            ("scheduler", "ListSchedules"),
        ])
    );
    let pending = v["schedules"].as_array().expect("pending schedules");
    assert_eq!(pending.len(), 1, "{pending:?}");
    assert_eq!(
        (
            &pending[0]["name"],
            &pending[0]["kind"],
            &pending[0]["employee_id"]
        ),
        (&"hr-start-E9001".into(), &"start".into(), &"E9001".into())
    );
    let on_wire: u64 = counts.values().flat_map(|m| m.values()).sum();
    assert_eq!(v["calls"]["total"].as_u64(), Some(on_wire));
    outputs.push(drift.out);
    outputs.push(drift.err);

    let table = audit(&endpoint, &env, &["audit"], None);
    assert_eq!(table.code, 1);
    for s in [
        "retired-with-access",
        "rex.retired",
        "NOT STORED",
        "sales (extra)",
        "staff (missing)",
        "past-end-date",
        "Pending schedules (1):",
        "hr-start-E9001 start employee E9001",
    ] {
        assert!(table.out.contains(s), "{s} not in\n{}", table.out);
    }
    outputs.push(table.out);
    let csv = audit(&endpoint, &env, &["--format", "csv"], None);
    assert_eq!(csv.code, 1);
    let mut rows = ::csv::Reader::from_reader(csv.out.as_bytes());
    assert_eq!(
        rows.headers().unwrap().iter().collect::<Vec<_>>(),
        [
            "code",
            "user_name",
            "secret_name",
            "detail",
            "severity",
            "controls"
        ]
    );
    let csv_rows_all: Vec<_> = ::csv::Reader::from_reader(csv.out.as_bytes())
        .records()
        .map(Result::unwrap)
        .collect();
    assert!(csv_rows_all
        .iter()
        .any(|r| &r[0] == "full-admin" && &r[5] == "CIS 2.14 IAM.1"));
    let csv_rows: Vec<_> = rows.records().map(Result::unwrap).collect();
    assert_eq!(csv_rows.len(), v["findings"].as_array().unwrap().len());
    assert!(csv_rows
        .iter()
        .any(|r| &r[0] == "orphan-secret" && r[1].is_empty() && &r[2] == "hr-provisioner/ghost"));
    outputs.push(csv.out);

    // No value of any secret reached any output, and none was ever asked for.
    for text in &outputs {
        for secret in &secret_values {
            assert!(
                !text.contains(secret.as_str()),
                "a secret value was printed"
            );
        }
    }
    assert!(proxy
        .counts()
        .values()
        .all(|m| !m.contains_key("GetSecretValue") && !m.contains_key("BatchGetSecretValue")));
}

/// Paging only: ten times the users make no extra call (moto answers
/// GetAccountAuthorizationDetails in one page; ListSecrets pages by 100).
#[tokio::test]
async fn calls_do_not_grow_with_users() {
    let moto = Moto::start();
    moto.seed().await;
    let sdk = moto.sdk().await;
    let proxy = Proxy::start(&moto);
    let seed = |from: usize, to: usize| {
        let sdk = sdk.clone();
        async move {
            for i in from..to {
                let name = format!("user{i:04}");
                seed_user(&sdk, &name, "", "active").await;
                seed_secret(&sdk, &name, "active", false).await;
            }
        }
    };
    seed(0, 9).await;
    proxy.reset();
    let small = audit(&proxy.url(), &[], &["--format", "json"], None);
    let small: Value = serde_json::from_str(&small.out).unwrap();
    seed(9, 90).await;
    let big = audit(&proxy.url(), &[], &["--format", "json"], None);
    let big: Value = serde_json::from_str(&big.out).unwrap();
    assert_eq!(small["summary"]["users"], 9);
    assert_eq!(big["summary"]["users"], 90);
    // The first run also started the report (GenerateCredentialReport once more).
    let calls = |v: &Value, op: &str| v["calls"]["by_operation"][op].as_u64().unwrap_or(0);
    for op in [
        "GetAccountAuthorizationDetails",
        "GetCredentialReport",
        "ListSecrets",
    ] {
        assert_eq!(calls(&small, op), 1, "{op}");
        assert_eq!(calls(&big, op), 1, "{op}");
    }
    // SSH keys and service-specific credentials exist only per user: exactly one
    // call each per managed user, and nothing else grows.
    assert_eq!(calls(&small, "ListSSHPublicKeys"), 9);
    assert_eq!(calls(&big, "ListSSHPublicKeys"), 90);
    let per_user =
        |v: &Value| calls(v, "ListSSHPublicKeys") + calls(v, "ListServiceSpecificCredentials");
    assert!(calls(&big, "ListServiceSpecificCredentials") >= 90);
    assert!(
        big["calls"]["total"].as_u64().unwrap() - per_user(&big)
            <= small["calls"]["total"].as_u64().unwrap() - per_user(&small)
    );
}

/// A bad setting and an unreachable AWS both end in exit status 2.
#[test]
fn could_not_read_is_exit_2() {
    let bad = audit(
        "http://127.0.0.1:9",
        &[("USER_PATH", "employees")],
        &[],
        None,
    );
    assert_eq!(bad.code, 2);
    assert!(bad.err.contains("USER_PATH"), "{}", bad.err);
    let down = audit("http://127.0.0.1:9", &[], &["--format", "json"], None);
    assert_eq!(down.code, 2, "{}", down.err);
    assert!(down.err.contains("could not read AWS"), "{}", down.err);
    assert!(down.out.is_empty());
}

/// `plan` parses like the function, prints the steps and changes nothing.
#[tokio::test]
async fn plan_prints_the_steps_and_changes_nothing() {
    let moto = Moto::start();
    moto.seed().await;
    let sdk = moto.sdk().await;
    let dir = std::env::temp_dir().join(format!("hr-iam-audit-plan-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("joiner.json");
    std::fs::write(&file, joined("p1", &now(), "paul.plan", "engineering")).unwrap();
    let env = [("SIGNIN_URL", URL)];
    let r = audit(&moto.url(), &env, &["plan", file.to_str().unwrap()], None);
    assert_eq!(r.code, 0, "{}{}", r.out, r.err);
    assert!(r.out.contains("outcome: planned"), "{}", r.out);
    for step in [
        "CreateUser",
        "AddUserToGroup:developers",
        "CreateAccessKey",
        "CreateSecret",
        "SendEmail",
    ] {
        assert!(r.out.contains(step), "{step} not in {}", r.out);
    }
    let iam = aws_sdk_iam::Client::new(&sdk);
    assert!(
        iam.get_user().user_name("paul.plan").send().await.is_err(),
        "nothing created"
    );
    assert!(moto.mails().is_empty());

    // Standard input, rejected: the reason, exit 2.
    let r = audit(
        &moto.url(),
        &env,
        &["plan", "-"],
        Some(r#"{"event_id":"x"}"#),
    );
    assert_eq!(r.code, 2);
    assert!(
        r.out.contains("outcome: rejected") && r.out.contains("reason:"),
        "{}",
        r.out
    );
    // An SQS event file: each record, here one whose FIFO group is not its employee.
    let records = serde_json::json!({"Records": [
        {"messageId": "m1", "body": joined("p2", &now(), "paul.plan", "sales"), "attributes": {}},
        {"messageId": "m2", "body": joined("p3", &now(), "olga.other", "sales"),
         "attributes": {"MessageGroupId": "E-someone-else"}}
    ]});
    let r = audit(
        &moto.url(),
        &env,
        &["plan", "--format", "json", "-"],
        Some(&records.to_string()),
    );
    assert_eq!(r.code, 2, "{}{}", r.out, r.err);
    let v: Value = serde_json::from_str(&r.out).unwrap();
    assert_eq!(v[0]["message_id"], "m1");
    assert_eq!(v[0]["outcome"], "planned");
    assert_eq!(v[1]["outcome"], "rejected");
    assert!(v[1]["reason"]
        .as_str()
        .unwrap()
        .contains("FIFO message group"));
    // Too old for MAX_EVENT_AGE_DAYS: the function's time window applies.
    std::fs::write(
        &file,
        joined("p4", "2020-01-01T00:00:00Z", "paul.plan", "sales"),
    )
    .unwrap();
    let r = audit(&moto.url(), &env, &["plan", file.to_str().unwrap()], None);
    assert_eq!(r.code, 2);
    assert!(r.out.contains("MAX_EVENT_AGE_DAYS"), "{}", r.out);
    let _ = std::fs::remove_dir_all(&dir);
}

/// The scheduled audit: one WARN line per finding, one EMF document with every
/// code, a summary as the answer.
#[tokio::test]
async fn the_scheduled_audit_logs_findings_and_emf() {
    let moto = Moto::start();
    moto.seed().await;
    let sdk = moto.sdk().await;
    aws_sdk_iam::Client::new(&sdk)
        .create_user()
        .user_name("mallory")
        .path("/employees/")
        .send()
        .await
        .unwrap();
    seed_secret(&sdk, "ghost", "active", false).await;
    let config =
        review::config_from_env(|k| (k == "PROVISIONING_RULES").then(|| RULES.into())).unwrap();
    let reader = Reader::new(&sdk, tokio::time::Instant::now() + Duration::from_secs(60));
    let (logs, _guard) = Logs::capture();
    let summary = scheduled(&config, &reader).await.unwrap();
    assert_eq!(summary["findings"], 2);
    let lines = logs.lines();
    let warns: Vec<&Value> = lines.iter().filter(|l| l["level"] == "WARN").collect();
    assert_eq!(warns.len(), 2, "{lines:#?}");
    assert!(warns
        .iter()
        .any(|l| l["code"] == "unmanaged-in-path" && l["user_name"] == "mallory"));
    assert!(warns
        .iter()
        .any(|l| l["code"] == "orphan-secret" && l["secret_name"] == "hr-provisioner/ghost"));
    let emf = lines.iter().find(|l| l.get("_aws").is_some()).unwrap();
    assert_eq!(
        emf["_aws"]["CloudWatchMetrics"][0]["Namespace"],
        "HrProvisioner/Audit"
    );
    assert_eq!(emf["findings"], 2);
    assert_eq!(emf["orphan-secret"], 1);
    assert_eq!(emf["no-mfa"], 0);
    assert!(!logs.text().contains(CANARY));

    // A rule naming a template that does not exist: logged, then an invocation error.
    logs.clear();
    let rules = r#"{"default":{"groups":[],"copy_from":"nobody"}}"#;
    let config =
        review::config_from_env(|k| (k == "PROVISIONING_RULES").then(|| rules.into())).unwrap();
    let err = scheduled(&config, &reader).await.unwrap_err();
    assert!(err.to_string().contains("nobody"), "{err}");
    let lines = logs.lines();
    assert!(lines.iter().any(|l| l["level"] == "ERROR"
        && l["incomplete"]
            .as_str()
            .is_some_and(|i| i.contains("nobody"))));
    assert!(
        lines.iter().any(|l| l.get("_aws").is_some()),
        "the counts are still emitted"
    );
}
