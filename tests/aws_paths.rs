//! The AWS path of the name-clash check and the in-invocation retry (issue 12),
//! through `aws-smithy-mocks` with real wire-format answers:
//! - a fresh joiner against AWS makes no account-wide ListUsers: IAM itself
//!   refuses a name that differs only in case, at CreateUser;
//! - when CreateUser does refuse it (EntityAlreadyExists), the record is run again
//!   at once, its lookup finds the holder, and it ends `rejected` with the clash
//!   reason (the emulator path, which scans up front, is
//!   `joiner::someone_elses_user_is_never_taken_over` against moto);
//! - a record failed by an error that may pass is run again within the invocation;
//! - a batch's records share their account-wide reads (issue 20).

mod common;

use std::collections::HashMap;
use std::time::Duration;

use aws_config::retry::RetryConfig;
use aws_lambda_events::event::sqs::{SqsEvent, SqsMessage};
use aws_sdk_iam::operation as op;
use aws_sdk_iam::types::{AccessKey, StatusType, User};
use aws_sdk_iam::Client as Iam;
use aws_sdk_secretsmanager::Client as Sm;
use aws_sdk_sesv2::Client as Ses;
use aws_smithy_mocks::{mock, mock_client, Rule, RuleMode};
use aws_smithy_runtime_api::http::{Response, StatusCode};
use aws_smithy_types::body::SdkBody;
use common::Logs;
use hr_iam_provisioner::apply::Services;
use hr_iam_provisioner::aws::iam::Iam as IamAdapter;
use hr_iam_provisioner::aws::kms::Kms;
use hr_iam_provisioner::aws::mail::Mailer;
use hr_iam_provisioner::aws::secrets::Secrets;
use hr_iam_provisioner::config::Config;
use hr_iam_provisioner::service::Provisioner;

fn iam_error(status: u16, code: &str) -> Response {
    let body = format!(
        r#"<ErrorResponse xmlns="https://iam.amazonaws.com/doc/2010-05-08/"><Error><Type>Sender</Type><Code>{code}</Code><Message>{code} from the mock</Message></Error><RequestId>r</RequestId></ErrorResponse>"#
    );
    Response::new(StatusCode::try_from(status).unwrap(), SdkBody::from(body))
}

/// ListSecrets by the employee's tag: no other secret of this employee (its
/// other users, contract section 5: one employee, one user).
fn no_other_secrets() -> Rule {
    mock!(Sm::list_secrets).then_output(|| {
        aws_sdk_secretsmanager::operation::list_secrets::ListSecretsOutput::builder()
            .set_secret_list(Some(vec![]))
            .build()
    })
}

macro_rules! client {
    ($krate:ident, $rules:expr) => {
        mock_client!($krate, RuleMode::MatchAny, $rules, |c| c
            .retry_config(RetryConfig::disabled()))
    };
}

/// The provisioner as deployed against AWS: no emulator, so no up-front scan.
fn aws_provisioner(iam: Iam, sm: Sm, ses: Ses) -> Provisioner {
    provisioner(iam, sm, ses, false)
}

/// The provisioner; `emulator` turns the up-front case scan on, as against moto.
fn provisioner(iam: Iam, sm: Sm, ses: Ses, emulator: bool) -> Provisioner {
    let mut m: HashMap<String, String> = HashMap::new();
    m.insert("SENDER_EMAIL".into(), "it@example.com".into());
    m.insert(
        "PROVISIONING_RULES".into(),
        r#"{"default":{"groups":["staff"],"console":true,"access_key":true}}"#.into(),
    );
    let config = Config::from_env(|k| m.get(k).cloned()).unwrap();
    let iam = IamAdapter::new(iam, emulator);
    assert_eq!(
        iam.case_scan, emulator,
        "the up-front scan only on an emulator"
    );
    let services = Services {
        iam,
        secrets: Secrets::new(sm, None),
        mailer: Mailer::new(ses, "it@example.com".into()),
        // Never called: no KMS alias in these tests.
        kms: Kms::new(aws_sdk_kms::Client::from_conf(
            aws_sdk_kms::Config::builder()
                .behavior_version_latest()
                .region(aws_sdk_kms::config::Region::new("us-east-1"))
                .build(),
        )),
        scheduler: None,
    };
    Provisioner::new(config, services)
}

fn joiner(user: &str) -> SqsEvent {
    let mut m = SqsMessage::default();
    m.message_id = Some("m1".into());
    // An hour ago: inside the function's time window whenever the tests run.
    let at = (time::OffsetDateTime::now_utc() - time::Duration::hours(1))
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap();
    m.body = Some(format!(
        r#"{{"event_id":"e1","event_type":"employee.joined","occurred_at":"{at}",
            "employee":{{"employee_id":"E1","email":"{user}@example.com"}}}}"#
    ));
    let mut ev = SqsEvent::default();
    ev.records = vec![m];
    ev
}

async fn run(p: &Provisioner, ev: SqsEvent) -> Vec<String> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    p.handle_batch(
        ev,
        "arn:aws:lambda:us-east-1:123456789012:function:f",
        deadline,
    )
    .await
    .batch_item_failures
    .into_iter()
    .map(|f| f.item_identifier)
    .collect()
}

fn user(name: &str) -> User {
    User::builder()
        .user_name(name)
        .path("/staff/")
        .user_id("AIDAHOLDER")
        .arn(format!("arn:aws:iam::123456789012:user/staff/{name}"))
        .create_date(aws_smithy_types::DateTime::from_secs(0))
        .build()
        .unwrap()
}

fn list_users(names: &'static [&'static str]) -> Rule {
    mock!(Iam::list_users).then_output(move || {
        op::list_users::ListUsersOutput::builder()
            .set_users(Some(names.iter().map(|n| user(n)).collect()))
            .build()
            .unwrap()
    })
}

/// Every other call a fresh joiner makes, answered OK.
fn the_rest() -> (Vec<Rule>, Vec<Rule>, Vec<Rule>) {
    let iam = vec![
        mock!(Iam::list_account_aliases).then_output(|| {
            op::list_account_aliases::ListAccountAliasesOutput::builder()
                .set_account_aliases(Some(vec![]))
                .build()
                .unwrap()
        }),
        mock!(Iam::get_account_password_policy)
            .then_http_response(|| iam_error(404, "NoSuchEntity")),
        mock!(Iam::add_user_to_group)
            .then_output(|| op::add_user_to_group::AddUserToGroupOutput::builder().build()),
        mock!(Iam::create_access_key).then_output(|| {
            op::create_access_key::CreateAccessKeyOutput::builder()
                .access_key(
                    AccessKey::builder()
                        .user_name("jane.doe")
                        .access_key_id("AKIAMOCK")
                        .status(StatusType::Active)
                        .secret_access_key("mock-secret-key-value")
                        .build()
                        .unwrap(),
                )
                .build()
        }),
        mock!(Iam::create_login_profile)
            .then_output(|| op::create_login_profile::CreateLoginProfileOutput::builder().build()),
        mock!(Iam::tag_user).then_output(|| op::tag_user::TagUserOutput::builder().build()),
    ];
    let sm = vec![
        no_other_secrets(),
        mock!(Sm::create_secret).then_output(|| {
            aws_sdk_secretsmanager::operation::create_secret::CreateSecretOutput::builder().build()
        }),
        // No secret under the name yet (read before any write).
        mock!(Sm::describe_secret).then_http_response(|| {
            let mut r = Response::new(
                StatusCode::try_from(400).unwrap(),
                SdkBody::from(
                    r#"{"__type":"ResourceNotFoundException","message":"not found from the mock"}"#,
                ),
            );
            r.headers_mut()
                .insert("x-amzn-errortype", "ResourceNotFoundException".to_owned());
            r
        }),
    ];
    let ses = vec![mock!(Ses::send_email)
        .then_output(|| aws_sdk_sesv2::operation::send_email::SendEmailOutput::builder().build())];
    (iam, sm, ses)
}

#[tokio::test]
async fn a_fresh_joiner_against_aws_lists_no_users() {
    let get_user = mock!(Iam::get_user).then_http_response(|| iam_error(404, "NoSuchEntity"));
    let create_user = mock!(Iam::create_user)
        .then_output(|| op::create_user::CreateUserOutput::builder().build());
    let scan = list_users(&["someone.else"]);
    let (mut iam, sm, ses) = the_rest();
    iam.extend([get_user.clone(), create_user.clone(), scan.clone()]);
    let p = aws_provisioner(
        client!(aws_sdk_iam, &iam.iter().collect::<Vec<_>>()),
        client!(aws_sdk_secretsmanager, &sm.iter().collect::<Vec<_>>()),
        client!(aws_sdk_sesv2, &ses.iter().collect::<Vec<_>>()),
    );
    let (logs, _g) = Logs::capture();
    let failed = run(&p, joiner("jane.doe")).await;
    assert!(failed.is_empty(), "{}", logs.text());
    assert_eq!(get_user.num_calls(), 1);
    assert_eq!(create_user.num_calls(), 1);
    assert_eq!(
        scan.num_calls(),
        0,
        "no ListUsers for a fresh joiner against AWS"
    );
    assert_eq!(ses[0].num_calls(), 1);
}

#[tokio::test]
async fn a_name_iam_refuses_at_create_user_is_rejected_as_a_clash() {
    let (logs, _g) = Logs::capture();
    // GetUser does not find "jane.doe"; CreateUser refuses it: "Jane.Doe" exists.
    let get_user = mock!(Iam::get_user).then_http_response(|| iam_error(404, "NoSuchEntity"));
    let create_user =
        mock!(Iam::create_user).then_http_response(|| iam_error(409, "EntityAlreadyExists"));
    let scan = list_users(&["someone.else", "Jane.Doe"]);
    let (mut iam, sm, ses) = the_rest();
    iam.extend([get_user.clone(), create_user.clone(), scan.clone()]);
    let p = aws_provisioner(
        client!(aws_sdk_iam, &iam.iter().collect::<Vec<_>>()),
        client!(aws_sdk_secretsmanager, &sm.iter().collect::<Vec<_>>()),
        client!(aws_sdk_sesv2, &ses.iter().collect::<Vec<_>>()),
    );
    assert_eq!(run(&p, joiner("jane.doe")).await, ["m1"]);
    let audits = logs.audits();
    assert_eq!(audits.len(), 1, "{audits:?}");
    let a = &audits[0];
    assert_eq!(a["outcome"], "rejected", "{a}");
    assert_eq!(
        a["reason"],
        "user name jane.doe is taken, case-insensitively, by existing user Jane.Doe"
    );
    assert_eq!(a["actions"], serde_json::json!([]), "nothing was changed");
    assert_eq!(create_user.num_calls(), 1, "never tried twice");
    assert_eq!(
        scan.num_calls(),
        1,
        "the holder is looked for only after the refusal"
    );
    assert_eq!(get_user.num_calls(), 2);
    assert_eq!(ses[0].num_calls(), 0);
    assert_eq!(sm[1].num_calls(), 0, "no CreateSecret");
}

/// EntityAlreadyExists for the very name (created a moment ago, not yet readable:
/// IAM is eventually consistent) is no clash: the record fails for redelivery and is
/// never rejected.
#[tokio::test]
async fn a_refused_name_listed_as_is_is_not_a_clash() {
    let (logs, _g) = Logs::capture();
    let get_user = mock!(Iam::get_user).then_http_response(|| iam_error(404, "NoSuchEntity"));
    let create_user =
        mock!(Iam::create_user).then_http_response(|| iam_error(409, "EntityAlreadyExists"));
    let scan = list_users(&["jane.doe"]);
    let (mut iam, sm, ses) = the_rest();
    iam.extend([get_user.clone(), create_user.clone(), scan.clone()]);
    let p = aws_provisioner(
        client!(aws_sdk_iam, &iam.iter().collect::<Vec<_>>()),
        client!(aws_sdk_secretsmanager, &sm.iter().collect::<Vec<_>>()),
        client!(aws_sdk_sesv2, &ses.iter().collect::<Vec<_>>()),
    );
    assert_eq!(run(&p, joiner("jane.doe")).await, ["m1"]);
    let a = &logs.audits()[0];
    assert_eq!(a["outcome"], "failed", "{a}");
    assert_eq!(create_user.num_calls(), 1);
    assert_eq!(ses[0].num_calls(), 0);
}

/// CreateUser answers a transient 500 (not retried by the call: it might have
/// happened); the record is run again within the invocation, finds no user, and
/// is applied, instead of waiting out SQS's visibility timeout.
#[tokio::test]
async fn a_record_failed_by_a_passing_error_is_run_again_in_the_invocation() {
    let get_user = mock!(Iam::get_user).then_http_response(|| iam_error(404, "NoSuchEntity"));
    let create_user = mock!(Iam::create_user)
        .sequence()
        .http_response(|| iam_error(500, "ServiceFailure"))
        .output(|| op::create_user::CreateUserOutput::builder().build())
        .build();
    let scan = list_users(&[]);
    let (mut iam, sm, ses) = the_rest();
    iam.extend([get_user.clone(), create_user.clone(), scan.clone()]);
    let p = aws_provisioner(
        client!(aws_sdk_iam, &iam.iter().collect::<Vec<_>>()),
        client!(aws_sdk_secretsmanager, &sm.iter().collect::<Vec<_>>()),
        client!(aws_sdk_sesv2, &ses.iter().collect::<Vec<_>>()),
    );
    assert!(run(&p, joiner("jane.doe")).await.is_empty());
    assert_eq!(create_user.num_calls(), 2);
    assert_eq!(
        get_user.num_calls(),
        2,
        "the second run read the user again"
    );
    assert_eq!(scan.num_calls(), 0);
    assert_eq!(ses[0].num_calls(), 1, "one mail");
}

/// An SES endpoint that answers every SendEmail with a message id, counting them.
#[derive(Debug, Clone, Default)]
struct CountingSes(std::sync::Arc<std::sync::atomic::AtomicUsize>);

impl aws_smithy_runtime_api::client::http::HttpConnector for CountingSes {
    fn call(
        &self,
        request: aws_smithy_runtime_api::client::orchestrator::HttpRequest,
    ) -> aws_smithy_runtime_api::client::http::HttpConnectorFuture {
        assert!(request.uri().contains("/v2/email/outbound-emails"));
        self.0.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let resp = Response::new(
            StatusCode::try_from(200).unwrap(),
            SdkBody::from(r#"{"MessageId":"m-1"}"#),
        );
        aws_smithy_runtime_api::client::http::HttpConnectorFuture::ready(Ok(resp))
    }
}

/// SES behind the function's own pacer (as `wiring` builds it), on `sent`.
fn paced_ses(sent: &CountingSes) -> Ses {
    use aws_smithy_runtime_api::client::http::{http_client_fn, SharedHttpConnector};
    use hr_iam_provisioner::aws::pace::{paced, Pacer};
    let sent = sent.clone();
    let inner = http_client_fn(move |_, _| SharedHttpConnector::new(sent.clone()));
    let conf = aws_sdk_sesv2::Config::builder()
        .behavior_version_latest()
        .region(aws_sdk_sesv2::config::Region::new("us-east-1"))
        .credentials_provider(aws_sdk_sesv2::config::Credentials::new(
            "test", "test", None, None, "test",
        ))
        .retry_config(RetryConfig::disabled())
        .http_client(paced(inner, Pacer::new("sesv2", 10.0)))
        .build();
    Ses::from_conf(conf)
}

async fn run_until(p: &Provisioner, ev: SqsEvent, within: Duration) -> Vec<String> {
    let deadline = tokio::time::Instant::now() + within;
    p.handle_batch(
        ev,
        "arn:aws:lambda:us-east-1:123456789012:function:f",
        deadline,
    )
    .await
    .batch_item_failures
    .into_iter()
    .map(|f| f.item_identifier)
    .collect()
}

/// The welcome mail is not sent when the record could not record it (the
/// hr:welcome tag) before its deadline: the record is handed back with the
/// mail still owed, and the redelivery sends it once. With time enough, it is sent.
#[tokio::test]
async fn no_welcome_mail_too_close_to_the_deadline_to_record_it() {
    let (logs, _g) = Logs::capture();
    let rules = || {
        let (mut iam, sm, _) = the_rest();
        iam.push(mock!(Iam::get_user).then_http_response(|| iam_error(404, "NoSuchEntity")));
        iam.push(
            mock!(Iam::create_user)
                .then_output(|| op::create_user::CreateUserOutput::builder().build()),
        );
        (iam, sm)
    };
    // 600 ms left: less than the time the tag needs after the mail (at least 1 s).
    let (iam, sm) = rules();
    let sent = CountingSes::default();
    let p = aws_provisioner(
        client!(aws_sdk_iam, &iam.iter().collect::<Vec<_>>()),
        client!(aws_sdk_secretsmanager, &sm.iter().collect::<Vec<_>>()),
        paced_ses(&sent),
    );
    let failed = run_until(&p, joiner("jane.doe"), Duration::from_millis(600)).await;
    assert_eq!(failed, ["m1"]);
    assert_eq!(
        sent.0.load(std::sync::atomic::Ordering::SeqCst),
        0,
        "no mail sent"
    );
    let a = &logs.audits()[0];
    assert_eq!(a["outcome"], "failed", "{a}");
    assert!(
        a["reason"]
            .as_str()
            .unwrap()
            .contains("not sent: too little time left"),
        "{a}"
    );
    logs.clear();
    // With time enough: one mail.
    let (iam, sm) = rules();
    let sent = CountingSes::default();
    let p = aws_provisioner(
        client!(aws_sdk_iam, &iam.iter().collect::<Vec<_>>()),
        client!(aws_sdk_secretsmanager, &sm.iter().collect::<Vec<_>>()),
        paced_ses(&sent),
    );
    assert!(run_until(&p, joiner("jane.doe"), Duration::from_secs(30))
        .await
        .is_empty());
    assert_eq!(sent.0.load(std::sync::atomic::Ordering::SeqCst), 1);
}

/// Ten joiners of ten employees in one batch.
fn ten_joiners() -> SqsEvent {
    let at = (time::OffsetDateTime::now_utc() - time::Duration::hours(1))
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap();
    let mut ev = SqsEvent::default();
    ev.records = (1..=10)
        .map(|i| {
            let mut m = SqsMessage::default();
            m.message_id = Some(format!("m{i}"));
            m.body = Some(format!(
                r#"{{"event_id":"e{i}","event_type":"employee.joined","occurred_at":"{at}",
                    "employee":{{"employee_id":"E{i}","email":"user{i}@example.com"}}}}"#
            ));
            m
        })
        .collect();
    ev
}

/// Issue 20: the records of a batch share their account-wide reads. Ten joiners
/// make one ListSecrets by employee (the ten ids in one filter, AWS's maximum)
/// and, on an emulator, one ListUsers for the case check; each record still
/// makes its own reads of its own user and secret.
#[tokio::test]
async fn a_batch_of_ten_joiners_lists_secrets_and_users_once() {
    for emulator in [false, true] {
        let asked: std::sync::Arc<std::sync::Mutex<Vec<Vec<String>>>> = Default::default();
        let seen = asked.clone();
        let list_secrets = mock!(Sm::list_secrets)
            .match_requests(move |r| {
                let values = r
                    .filters()
                    .iter()
                    .find(|f| {
                        f.key()
                            == Some(&aws_sdk_secretsmanager::types::FilterNameStringType::TagValue)
                    })
                    .map(|f| f.values().to_vec())
                    .unwrap_or_default();
                seen.lock().unwrap().push(values);
                true
            })
            .then_output(|| {
                aws_sdk_secretsmanager::operation::list_secrets::ListSecretsOutput::builder()
                    .set_secret_list(Some(vec![]))
                    .build()
            });
        let get_user = mock!(Iam::get_user).then_http_response(|| iam_error(404, "NoSuchEntity"));
        let create_user = mock!(Iam::create_user)
            .then_output(|| op::create_user::CreateUserOutput::builder().build());
        let scan = list_users(&["someone.else"]);
        let (mut iam, mut sm, ses) = the_rest();
        iam.extend([get_user.clone(), create_user.clone(), scan.clone()]);
        // the_rest()'s first Secrets Manager rule is its ListSecrets: this one instead.
        sm[0] = list_secrets.clone();
        let p = provisioner(
            client!(aws_sdk_iam, &iam.iter().collect::<Vec<_>>()),
            client!(aws_sdk_secretsmanager, &sm.iter().collect::<Vec<_>>()),
            client!(aws_sdk_sesv2, &ses.iter().collect::<Vec<_>>()),
            emulator,
        );
        let (logs, _g) = Logs::capture();
        let failed = run(&p, ten_joiners()).await;
        assert!(failed.is_empty(), "{failed:?}: {}", logs.text());
        assert_eq!(create_user.num_calls(), 10);
        assert_eq!(ses[0].num_calls(), 10);
        assert_eq!(
            list_secrets.num_calls(),
            1,
            "emulator {emulator}: {:?}",
            asked.lock().unwrap()
        );
        let mut ids = asked.lock().unwrap()[0].clone();
        ids.sort();
        let mut want: Vec<String> = (1..=10).map(|i| format!("E{i}")).collect();
        want.sort();
        assert_eq!(ids, want);
        if emulator {
            assert_eq!(scan.num_calls(), 1, "one case scan for the batch");
            assert_eq!(get_user.num_calls(), 0);
        } else {
            assert_eq!(scan.num_calls(), 0);
            assert_eq!(get_user.num_calls(), 10);
        }
    }
}
