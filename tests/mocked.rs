//! AWS answers that moto never gives, through `aws-smithy-mocks`: throttling on
//! every service, NoSuchEntity right after CreateUser (eventual consistency),
//! DeleteConflict on DeleteUser, LimitExceeded. The answers are real wire-format
//! error bodies, so the SDK's own error parsing is part of the test.

use std::collections::HashMap;
use std::time::Duration;

use aws_config::retry::RetryConfig;
use aws_lambda_events::event::sqs::{SqsEvent, SqsMessage};
use aws_sdk_iam::operation::create_access_key::CreateAccessKeyOutput;
use aws_sdk_iam::operation::get_user::GetUserOutput;
use aws_sdk_iam::types::{AccessKey, StatusType, Tag, User};
use aws_sdk_iam::Client as Iam;
use aws_sdk_secretsmanager::Client as Sm;
use aws_sdk_sesv2::Client as Ses;
use aws_smithy_mocks::{mock, mock_client, Rule, RuleMode};
use aws_smithy_runtime_api::http::{Response, StatusCode};
use aws_smithy_types::body::SdkBody;
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

fn json_error(status: u16, kind: &str) -> Response {
    let mut r = Response::new(
        StatusCode::try_from(status).unwrap(),
        SdkBody::from(format!(
            r#"{{"__type":"{kind}","message":"{kind} from the mock"}}"#
        )),
    );
    r.headers_mut().insert("x-amzn-errortype", kind.to_owned());
    r
}

fn provisioner(iam: Iam, sm: Sm, ses: Ses, env: &[(&str, &str)]) -> Provisioner {
    let mut m: HashMap<String, String> = HashMap::new();
    m.insert("SENDER_EMAIL".into(), "it@example.com".into());
    m.insert(
        "PROVISIONING_RULES".into(),
        r#"{"default":{"groups":["developers","staff"],"console":true,"access_key":true}}"#.into(),
    );
    for (k, v) in env {
        m.insert((*k).into(), (*v).into());
    }
    let config = Config::from_env(|k| m.get(k).cloned()).unwrap();
    let services = Services {
        iam: IamAdapter::new(iam, false),
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

/// An hour ago: inside the function's time window whenever the tests run.
fn recent() -> String {
    let t = time::OffsetDateTime::now_utc() - time::Duration::hours(1);
    t.format(&time::format_description::well_known::Rfc3339)
        .unwrap()
}

fn event(kind: &str) -> SqsEvent {
    let at = recent();
    let mut m = SqsMessage::default();
    m.message_id = Some("m1".into());
    m.body = Some(format!(
        r#"{{"event_id":"e1","event_type":"employee.{kind}","occurred_at":"{at}",
            "employee":{{"employee_id":"E1","email":"jane.doe@example.com"}}}}"#
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

/// DescribeSecret: no secret under the name.
fn no_secret() -> Rule {
    mock!(Sm::describe_secret).then_http_response(|| json_error(400, "ResourceNotFoundException"))
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

fn ok_everything_else() -> (Vec<Rule>, Vec<Rule>, Vec<Rule>) {
    let iam = vec![
        mock!(Iam::list_users).then_output(|| {
            aws_sdk_iam::operation::list_users::ListUsersOutput::builder()
                .set_users(Some(vec![]))
                .build()
                .unwrap()
        }),
        mock!(Iam::list_account_aliases).then_output(|| {
            aws_sdk_iam::operation::list_account_aliases::ListAccountAliasesOutput::builder()
                .set_account_aliases(Some(vec![]))
                .build()
                .unwrap()
        }),
        mock!(Iam::get_account_password_policy)
            .then_http_response(|| iam_error(404, "NoSuchEntity")),
        mock!(Iam::create_login_profile).then_output(|| {
            aws_sdk_iam::operation::create_login_profile::CreateLoginProfileOutput::builder()
                .build()
        }),
        mock!(Iam::tag_user)
            .then_output(|| aws_sdk_iam::operation::tag_user::TagUserOutput::builder().build()),
    ];
    let sm = vec![
        no_other_secrets(),
        mock!(Sm::create_secret).then_output(|| {
            aws_sdk_secretsmanager::operation::create_secret::CreateSecretOutput::builder().build()
        }),
        no_secret(),
    ];
    let ses = vec![mock!(Ses::send_email)
        .then_output(|| aws_sdk_sesv2::operation::send_email::SendEmailOutput::builder().build())];
    (iam, sm, ses)
}

fn key() -> CreateAccessKeyOutput {
    CreateAccessKeyOutput::builder()
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
}

#[tokio::test]
async fn throttling_and_eventual_consistency_are_retried_to_success() {
    let get_user = mock!(Iam::get_user)
        .sequence()
        .http_response(|| iam_error(400, "Throttling"))
        .times(2)
        .http_response(|| iam_error(404, "NoSuchEntity"))
        .build();
    let create_user = mock!(Iam::create_user)
        .sequence()
        .http_response(|| iam_error(400, "Throttling"))
        .output(|| aws_sdk_iam::operation::create_user::CreateUserOutput::builder().build())
        .build();
    // IAM does not see the new user yet, then does.
    let add_to_group = mock!(Iam::add_user_to_group)
        .sequence()
        .http_response(|| iam_error(404, "NoSuchEntity"))
        .times(2)
        .output(|| {
            aws_sdk_iam::operation::add_user_to_group::AddUserToGroupOutput::builder().build()
        })
        .repeatedly()
        .build();
    let create_key = mock!(Iam::create_access_key)
        .sequence()
        .http_response(|| iam_error(400, "Throttling"))
        .output(key)
        .build();
    let (mut iam_rules, _, _) = ok_everything_else();
    iam_rules.extend([
        get_user.clone(),
        create_user.clone(),
        add_to_group.clone(),
        create_key.clone(),
    ]);
    let create_secret = mock!(Sm::create_secret)
        .sequence()
        .http_response(|| json_error(400, "ThrottlingException"))
        .output(|| {
            aws_sdk_secretsmanager::operation::create_secret::CreateSecretOutput::builder().build()
        })
        .build();
    let send = mock!(Ses::send_email)
        .sequence()
        .http_response(|| json_error(429, "TooManyRequestsException"))
        .output(|| aws_sdk_sesv2::operation::send_email::SendEmailOutput::builder().build())
        .build();
    let iam_refs: Vec<&Rule> = iam_rules.iter().collect();
    let p = provisioner(
        client!(aws_sdk_iam, &iam_refs),
        client!(
            aws_sdk_secretsmanager,
            &[&create_secret, &no_secret(), &no_other_secrets()]
        ),
        client!(aws_sdk_sesv2, &[&send]),
        &[],
    );
    assert!(run(&p, event("joined")).await.is_empty());
    assert_eq!(get_user.num_calls(), 3);
    assert_eq!(create_user.num_calls(), 2, "one throttled, one made");
    assert_eq!(
        add_to_group.num_calls(),
        4,
        "two NoSuchEntity after create, then both groups"
    );
    assert_eq!(create_key.num_calls(), 2);
    assert_eq!(create_secret.num_calls(), 2);
    assert_eq!(send.num_calls(), 2);
}

/// A front end's 503 page (no AWS error code) on CreateUser: the call is not repeated
/// (it may have created the user), the record fails, and it runs again within the
/// invocation like any transient failure; the second run finds no user and creates it.
#[tokio::test]
async fn a_codeless_503_fails_the_call_and_the_record_runs_again_in_the_invocation() {
    let page = || {
        Response::new(
            StatusCode::try_from(503).unwrap(),
            SdkBody::from("<html><body><h1>503 Service Unavailable</h1></body></html>"),
        )
    };
    let get_user = mock!(Iam::get_user).then_http_response(|| iam_error(404, "NoSuchEntity"));
    let create_user = mock!(Iam::create_user)
        .sequence()
        .http_response(page)
        .output(|| aws_sdk_iam::operation::create_user::CreateUserOutput::builder().build())
        .build();
    let add_to_group = mock!(Iam::add_user_to_group).then_output(|| {
        aws_sdk_iam::operation::add_user_to_group::AddUserToGroupOutput::builder().build()
    });
    let create_key = mock!(Iam::create_access_key).then_output(key);
    let (mut iam_rules, sm, ses) = ok_everything_else();
    iam_rules.extend([
        get_user.clone(),
        create_user.clone(),
        add_to_group.clone(),
        create_key.clone(),
    ]);
    let iam_refs: Vec<&Rule> = iam_rules.iter().collect();
    let p = provisioner(
        client!(aws_sdk_iam, &iam_refs),
        client!(aws_sdk_secretsmanager, &sm.iter().collect::<Vec<_>>()),
        client!(aws_sdk_sesv2, &ses.iter().collect::<Vec<_>>()),
        &[],
    );
    assert!(
        run(&p, event("joined")).await.is_empty(),
        "applied in the end"
    );
    assert_eq!(
        create_user.num_calls(),
        2,
        "one 503, then made by the second run"
    );
    assert!(
        get_user.num_calls() >= 2,
        "the second run read the user again"
    );
    assert_eq!(create_key.num_calls(), 1);
}

/// Throttling is retried for as long as the deadline allows (not a fixed number of
/// attempts: IAM's rate is account-wide); the deadline ends it, and the record is
/// failed for redelivery.
#[tokio::test]
async fn a_budget_that_runs_out_fails_the_record_for_redelivery() {
    let get_user = mock!(Iam::get_user).then_http_response(|| iam_error(400, "Throttling"));
    let (mut iam_rules, sm, ses) = ok_everything_else();
    iam_rules.push(get_user.clone());
    let iam_refs: Vec<&Rule> = iam_rules.iter().collect();
    let p = provisioner(
        client!(aws_sdk_iam, &iam_refs),
        client!(aws_sdk_secretsmanager, &sm.iter().collect::<Vec<_>>()),
        client!(aws_sdk_sesv2, &ses.iter().collect::<Vec<_>>()),
        &[],
    );
    let started = tokio::time::Instant::now();
    let deadline = started + Duration::from_secs(5);
    let failed: Vec<String> = p
        .handle_batch(
            event("joined"),
            "arn:aws:lambda:us-east-1:123456789012:function:f",
            deadline,
        )
        .await
        .batch_item_failures
        .into_iter()
        .map(|f| f.item_identifier)
        .collect();
    assert_eq!(failed, ["m1"]);
    assert!(
        get_user.num_calls() > 10,
        "throttling is retried past 10 attempts: {}",
        get_user.num_calls()
    );
    assert!(
        started.elapsed() < Duration::from_secs(6),
        "and the deadline ends it"
    );
}

#[tokio::test]
async fn limit_exceeded_on_create_access_key_fails_without_retry_or_secret() {
    let get_user = mock!(Iam::get_user).then_http_response(|| iam_error(404, "NoSuchEntity"));
    let create_user = mock!(Iam::create_user)
        .then_output(|| aws_sdk_iam::operation::create_user::CreateUserOutput::builder().build());
    let groups = mock!(Iam::add_user_to_group).then_output(|| {
        aws_sdk_iam::operation::add_user_to_group::AddUserToGroupOutput::builder().build()
    });
    let create_key =
        mock!(Iam::create_access_key).then_http_response(|| iam_error(409, "LimitExceeded"));
    let (mut iam_rules, sm, ses) = ok_everything_else();
    iam_rules.extend([get_user, create_user, groups, create_key.clone()]);
    let iam_refs: Vec<&Rule> = iam_rules.iter().collect();
    let p = provisioner(
        client!(aws_sdk_iam, &iam_refs),
        client!(aws_sdk_secretsmanager, &sm.iter().collect::<Vec<_>>()),
        client!(aws_sdk_sesv2, &ses.iter().collect::<Vec<_>>()),
        &[],
    );
    assert_eq!(run(&p, event("joined")).await, ["m1"]);
    assert_eq!(create_key.num_calls(), 1);
    assert_eq!(
        sm[1].num_calls(),
        0,
        "the stage after a failure does not run"
    );
    assert_eq!(ses[0].num_calls(), 0);
}

fn managed_user() -> GetUserOutput {
    let tag = |k: &str, v: &str| Tag::builder().key(k).value(v).build().unwrap();
    GetUserOutput::builder()
        .user(
            User::builder()
                .user_name("jane.doe")
                .path("/employees/")
                .user_id("AIDA")
                .arn("arn:aws:iam::123456789012:user/employees/jane.doe")
                .create_date(aws_smithy_types::DateTime::from_secs(0))
                .tags(tag("hr:managed-by", "hr-provisioner"))
                .tags(tag("hr:employee-id", "E1"))
                .tags(tag("hr:status", "active"))
                .build()
                .unwrap(),
        )
        .build()
}

/// DeleteUser answers DeleteConflict because a group membership appeared after the
/// read: the function reads again, removes it, and deletes the user.
#[tokio::test]
async fn delete_conflict_is_resolved_by_reading_again_and_removing_what_remains() {
    use aws_sdk_iam::operation as op;
    let groups = mock!(Iam::list_groups_for_user)
        .sequence()
        .output(|| {
            op::list_groups_for_user::ListGroupsForUserOutput::builder()
                .set_groups(Some(vec![]))
                .build()
                .unwrap()
        })
        .output(|| {
            op::list_groups_for_user::ListGroupsForUserOutput::builder()
                .groups(
                    aws_sdk_iam::types::Group::builder()
                        .group_name("late-group")
                        .path("/")
                        .group_id("AGPA")
                        .arn("arn:aws:iam::123456789012:group/late-group")
                        .create_date(aws_smithy_types::DateTime::from_secs(0))
                        .build()
                        .unwrap(),
                )
                .build()
                .unwrap()
        })
        .output(|| {
            op::list_groups_for_user::ListGroupsForUserOutput::builder()
                .set_groups(Some(vec![]))
                .build()
                .unwrap()
        })
        .repeatedly()
        .build();
    let delete_user = mock!(Iam::delete_user)
        .sequence()
        .http_response(|| iam_error(409, "DeleteConflict"))
        .output(|| op::delete_user::DeleteUserOutput::builder().build())
        .build();
    let remove = mock!(Iam::remove_user_from_group)
        .then_output(|| op::remove_user_from_group::RemoveUserFromGroupOutput::builder().build());
    let rules = vec![
        mock!(Iam::get_user).then_output(managed_user),
        groups.clone(),
        delete_user.clone(),
        remove.clone(),
        mock!(Iam::list_attached_user_policies)
            .then_output(|| op::list_attached_user_policies::ListAttachedUserPoliciesOutput::builder().build()),
        mock!(Iam::list_user_policies).then_output(|| {
            op::list_user_policies::ListUserPoliciesOutput::builder().set_policy_names(Some(vec![])).build().unwrap()
        }),
        mock!(Iam::get_login_profile).then_http_response(|| iam_error(404, "NoSuchEntity")),
        mock!(Iam::list_access_keys).then_output(|| {
            op::list_access_keys::ListAccessKeysOutput::builder().set_access_key_metadata(Some(vec![])).build().unwrap()
        }),
        mock!(Iam::list_mfa_devices)
            .then_output(|| op::list_mfa_devices::ListMfaDevicesOutput::builder().set_mfa_devices(Some(vec![])).build().unwrap()),
        mock!(Iam::list_ssh_public_keys).then_output(|| op::list_ssh_public_keys::ListSshPublicKeysOutput::builder().build()),
        mock!(Iam::list_signing_certificates).then_output(|| {
            op::list_signing_certificates::ListSigningCertificatesOutput::builder().set_certificates(Some(vec![])).build().unwrap()
        }),
        mock!(Iam::list_service_specific_credentials)
            .then_output(|| op::list_service_specific_credentials::ListServiceSpecificCredentialsOutput::builder().build()),
        mock!(Iam::list_virtual_mfa_devices).then_output(|| {
            op::list_virtual_mfa_devices::ListVirtualMfaDevicesOutput::builder()
                .set_virtual_mfa_devices(Some(vec![]))
                .build()
                .unwrap()
        }),
        mock!(Iam::tag_user).then_output(|| op::tag_user::TagUserOutput::builder().build()),
        mock!(Iam::put_user_policy).then_output(|| op::put_user_policy::PutUserPolicyOutput::builder().build()),
        mock!(Iam::delete_user_policy).then_output(|| op::delete_user_policy::DeleteUserPolicyOutput::builder().build()),
    ];
    let sm = mock!(Sm::get_secret_value)
        .then_http_response(|| json_error(400, "ResourceNotFoundException"));
    let refs: Vec<&Rule> = rules.iter().collect();
    let p = provisioner(
        client!(aws_sdk_iam, &refs),
        client!(
            aws_sdk_secretsmanager,
            &[&sm, &no_secret(), &no_other_secrets()]
        ),
        client!(aws_sdk_sesv2, &[] as &[&Rule]),
        &[("LEAVER_ACTION", "delete")],
    );
    assert!(run(&p, event("left")).await.is_empty());
    assert_eq!(delete_user.num_calls(), 2);
    assert_eq!(remove.num_calls(), 1, "the late group was removed");
}

/// A panic while handling one record fails that record only.
#[tokio::test]
async fn a_panicking_record_fails_alone() {
    let boom = mock!(Iam::get_user)
        .match_requests(|r| r.user_name() == Some("boom"))
        .then_output(|| panic!("injected panic"));
    let fine = mock!(Iam::get_user)
        .match_requests(|r| r.user_name() == Some("fine"))
        .then_output(managed_user);
    let rules = [boom, fine];
    let refs: Vec<&Rule> = rules.iter().collect();
    let p = provisioner(
        client!(aws_sdk_iam, &refs),
        client!(aws_sdk_secretsmanager, &[] as &[&Rule]),
        client!(aws_sdk_sesv2, &[] as &[&Rule]),
        &[("SIGNIN_URL", "https://x.signin.aws.amazon.com/console")],
    );
    let at = recent();
    let rec = |id: &str, user: &str| {
        let mut m = SqsMessage::default();
        m.message_id = Some(id.into());
        m.body = Some(format!(
            r#"{{"event_id":"e-{id}","event_type":"employee.left","occurred_at":"{at}",
                "employee":{{"employee_id":"E9","username":"{user}"}}}}"#
        ));
        m
    };
    let mut ev = SqsEvent::default();
    ev.records = vec![rec("m-boom", "boom"), rec("m-fine", "fine")];
    // "fine" belongs to employee E1, so the E9 leaver is refused (rejected) without a
    // panic; "boom" panics inside the SDK call and is failed.
    let failed = run(&p, ev).await;
    assert_eq!(failed, ["m-boom", "m-fine"]);
}

/// A tombstone that someone gave a resource policy while it was pending deletion
/// (AWS refuses to read the policy then): restored, checked, never written.
#[tokio::test]
async fn a_restored_secret_with_a_resource_policy_never_receives_a_credential() {
    use aws_sdk_secretsmanager::operation as smop;
    use aws_sdk_secretsmanager::types::Tag as SmTag;
    let get_user = mock!(Iam::get_user).then_http_response(|| iam_error(404, "NoSuchEntity"));
    let create_user = mock!(Iam::create_user)
        .then_output(|| aws_sdk_iam::operation::create_user::CreateUserOutput::builder().build());
    let groups = mock!(Iam::add_user_to_group).then_output(|| {
        aws_sdk_iam::operation::add_user_to_group::AddUserToGroupOutput::builder().build()
    });
    let create_key = mock!(Iam::create_access_key).then_output(key);
    let (mut iam_rules, _, ses) = ok_everything_else();
    iam_rules.extend([get_user, create_user, groups, create_key]);
    let iam_refs: Vec<&Rule> = iam_rules.iter().collect();
    let tombstone = mock!(Sm::describe_secret).then_output(|| {
        smop::describe_secret::DescribeSecretOutput::builder()
            .name("hr-provisioner/jane.doe")
            .deleted_date(aws_smithy_types::DateTime::from_secs(1))
            .tags(
                SmTag::builder()
                    .key("hr:managed-by")
                    .value("hr-provisioner")
                    .build(),
            )
            .tags(SmTag::builder().key("hr:employee-id").value("E1").build())
            .tags(SmTag::builder().key("hr:status").value("deleted").build())
            .tags(
                SmTag::builder()
                    .key("hr:last-event-at")
                    .value("2020-01-01T00:00:00Z")
                    .build(),
            )
            .tags(
                SmTag::builder()
                    .key("hr:last-event-id")
                    .value("old")
                    .build(),
            )
            .build()
    });
    let restore = mock!(Sm::restore_secret)
        .then_output(|| smop::restore_secret::RestoreSecretOutput::builder().build());
    let policy = mock!(Sm::get_resource_policy).then_output(|| {
        smop::get_resource_policy::GetResourcePolicyOutput::builder()
            .resource_policy(r#"{"Statement":[{"Effect":"Allow","Principal":"*","Action":"secretsmanager:GetSecretValue"}]}"#)
            .build()
    });
    let put = mock!(Sm::put_secret_value)
        .then_output(|| smop::put_secret_value::PutSecretValueOutput::builder().build());
    let p = provisioner(
        client!(aws_sdk_iam, &iam_refs),
        client!(
            aws_sdk_secretsmanager,
            &[&tombstone, &restore, &policy, &put, &no_other_secrets()]
        ),
        client!(aws_sdk_sesv2, &ses.iter().collect::<Vec<_>>()),
        &[],
    );
    assert_eq!(run(&p, event("joined")).await, ["m1"]);
    assert_eq!(restore.num_calls(), 1);
    assert_eq!(
        policy.num_calls(),
        1,
        "checked once restored, not while pending"
    );
    assert_eq!(put.num_calls(), 0, "no credential written");
    assert_eq!(ses[0].num_calls(), 0);
}
