//! Issue 16 against moto: offboarding is never silently skipped. Each test is one
//! of the ordinary HR situations (or one insider move) in which a leaver used to
//! leave the employee with full access while the batch said all was well.

mod common;

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::TcpListener;

use common::*;
use hr_iam_provisioner::apply::Services;
use hr_iam_provisioner::aws::kms::Kms;
use hr_iam_provisioner::aws::secrets::Secrets;
use hr_iam_provisioner::config::Config;
use hr_iam_provisioner::service::Provisioner;
use hr_iam_provisioner::wiring;
use serde_json::json;

/// An event of employee `id` under user name `user`.
fn ev(kind: &str, event_id: &str, at: &str, id: &str, user: &str, dept: &str) -> String {
    body(kind, event_id, at, id, user, dept)
}

async fn users_of(moto: &Moto, employee_id: &str) -> Vec<String> {
    let iam = aws_sdk_iam::Client::new(&moto.sdk().await);
    let mut out = Vec::new();
    let list = iam.list_users().send().await.expect("list users");
    for u in list.users() {
        let tags = iam
            .list_user_tags()
            .user_name(u.user_name())
            .send()
            .await
            .expect("tags");
        if tags
            .tags()
            .iter()
            .any(|t| t.key() == "hr:employee-id" && t.value() == employee_id)
        {
            out.push(u.user_name().to_owned());
        }
    }
    out.sort();
    out
}

/// The first two changes are the cut-off (made at once, in either order).
fn assert_cut_off_first(a: &serde_json::Value) {
    let mut first: Vec<String> = a["actions"].as_array().unwrap()[..2]
        .iter()
        .map(|v| v.as_str().unwrap().to_owned())
        .collect();
    first.sort();
    assert_eq!(
        first,
        ["PutUserPolicy:hr-provisioner-deny-all", "TagUser"],
        "{a}"
    );
}

fn retired(s: &Snapshot) -> bool {
    s.tag("hr:status") == Some("retired")
        && s.inline == ["hr-provisioner-deny-all"]
        && !s.login_profile
        && s.keys.is_empty()
        && s.groups.is_empty()
}

#[tokio::test]
async fn a_re_sent_hire_with_a_corrected_email_is_applied_to_the_existing_user() {
    let moto = Moto::start();
    moto.seed().await;
    let p = moto.provisioner(&[]).await;
    let sdk = moto.sdk().await;
    let (logs, _g) = Logs::capture();
    let first = ev("joined", "h1", t1(), "E-resend", "jane.typo", "engineering");
    run(&p, sqs(&[("m1", &first, Some("E-resend"))])).await;
    // HR corrects the address and re-sends the hire: same employee, new name rule.
    let again = ev(
        "joined",
        "h2",
        t2(),
        "E-resend",
        "jane.fixed",
        "engineering",
    );
    let r = run(&p, sqs(&[("m2", &again, Some("E-resend"))])).await;
    assert!(failures(&r).is_empty(), "{r:?}");
    let a = audit_of(&logs, "m2");
    assert_eq!(a["user_name"], "jane.typo", "{a}");
    assert_eq!(users_of(&moto, "E-resend").await, ["jane.typo"]);
    assert_eq!(
        moto.mails().len(),
        1,
        "no second welcome for the same person"
    );
    // The leaver, under the corrected name, retires that one user.
    let leave = ev("left", "l1", t3(), "E-resend", "jane.fixed", "engineering");
    let r = run(&p, sqs(&[("m3", &leave, Some("E-resend"))])).await;
    assert!(failures(&r).is_empty(), "{r:?}");
    assert!(retired(&snapshot(&sdk, "jane.typo").await));
    assert_eq!(audit_of(&logs, "m3")["outcome"], "applied");
}

#[tokio::test]
async fn a_leaver_retires_every_user_of_the_employee() {
    let moto = Moto::start();
    moto.seed().await;
    let p = moto.provisioner(&[]).await;
    let sdk = moto.sdk().await;
    let (logs, _g) = Logs::capture();
    // Two users of one employee, as an older version could leave them: each with
    // its secret (two joiners under two ids, then the second re-tagged by hand).
    let a = ev("joined", "d1", t1(), "E-dup", "dup.one", "engineering");
    let b = ev("joined", "d2", t1(), "E-dup2", "dup.two", "sales");
    run(&p, sqs(&[("m1", &a, None), ("m2", &b, None)])).await;
    let iam = aws_sdk_iam::Client::new(&sdk);
    let sm = aws_sdk_secretsmanager::Client::new(&sdk);
    let tag = |k: &str, v: &str| {
        aws_sdk_iam::types::Tag::builder()
            .key(k)
            .value(v)
            .build()
            .unwrap()
    };
    iam.tag_user()
        .user_name("dup.two")
        .tags(tag("hr:employee-id", "E-dup"))
        .send()
        .await
        .unwrap();
    sm.tag_resource()
        .secret_id("hr-provisioner/dup.two")
        .tags(
            aws_sdk_secretsmanager::types::Tag::builder()
                .key("hr:employee-id")
                .value("E-dup")
                .build(),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(users_of(&moto, "E-dup").await, ["dup.one", "dup.two"]);
    let leave = ev("left", "l1", t2(), "E-dup", "dup.one", "engineering");
    let r = run(&p, sqs(&[("m3", &leave, None)])).await;
    assert!(failures(&r).is_empty(), "{r:?}");
    for u in ["dup.one", "dup.two"] {
        let s = snapshot(&sdk, u).await;
        assert!(retired(&s), "{u}: {s:?}");
    }
    let line = audit_of(&logs, "m3");
    assert_eq!(line["users"], json!(["dup.one", "dup.two"]), "{line}");
}

#[tokio::test]
async fn a_leaver_dated_like_the_last_mover_is_applied_whatever_its_id() {
    let moto = Moto::start();
    moto.seed().await;
    let p = moto.provisioner(&[]).await;
    let sdk = moto.sdk().await;
    let (logs, _g) = Logs::capture();
    let j = ev("joined", "j", t1(), "E-tie", "tie.user", "engineering");
    // HR dates by day: the mover and the leaver share one instant, and the
    // leaver's id sorts first.
    let m = ev("changed", "zzz-mover", t2(), "E-tie", "tie.user", "sales");
    let l = ev("left", "aaa-leaver", t2(), "E-tie", "tie.user", "sales");
    for (id, body) in [("m1", &j), ("m2", &m), ("m3", &l)] {
        let r = run(&p, sqs(&[(id, body, Some("E-tie"))])).await;
        assert!(failures(&r).is_empty(), "{id}: {r:?}");
    }
    assert_eq!(audit_of(&logs, "m3")["outcome"], "applied");
    assert!(retired(&snapshot(&sdk, "tie.user").await));
}

#[tokio::test]
async fn a_stale_leaver_against_an_active_user_fails_for_a_person_to_decide() {
    let moto = Moto::start();
    moto.seed().await;
    let p = moto.provisioner(&[]).await;
    let sdk = moto.sdk().await;
    let (logs, _g) = Logs::capture();
    let j = ev("joined", "j", t1(), "E-late", "late.user", "engineering");
    let m = ev("changed", "m", t3(), "E-late", "late.user", "sales");
    run(&p, sqs(&[("m1", &j, None), ("m2", &m, None)])).await;
    // A leaver older than the mover arrives late (a rescinded termination?).
    let l = ev("left", "l", t2(), "E-late", "late.user", "sales");
    let r = run(&p, sqs(&[("m3", &l, None)])).await;
    assert_eq!(failures(&r), ["m3"]);
    let a = audit_of(&logs, "m3");
    assert_eq!(a["outcome"], "failed");
    assert_eq!(a["reason"], "stale-leaver-on-active-user", "{a}");
    assert_eq!(a["level"], "ERROR");
    let s = snapshot(&sdk, "late.user").await;
    assert_eq!(s.tag("hr:status"), Some("active"), "nothing changed: {s:?}");
}

#[tokio::test]
async fn a_forged_future_last_event_fails_loudly_and_the_leaver_still_cuts_off() {
    let moto = Moto::start();
    moto.seed().await;
    let p = moto.provisioner(&[]).await;
    let sdk = moto.sdk().await;
    let (logs, _g) = Logs::capture();
    let j = ev("joined", "j", t1(), "E-forge", "forged.user", "engineering");
    run(&p, sqs(&[("m1", &j, None)])).await;
    // One TagUser by an insider: the user would be immune to every later event.
    aws_sdk_iam::Client::new(&sdk)
        .tag_user()
        .user_name("forged.user")
        .tags(
            aws_sdk_iam::types::Tag::builder()
                .key("hr:last-event-at")
                .value("2030-01-01T00:00:00Z")
                .build()
                .unwrap(),
        )
        .send()
        .await
        .unwrap();
    let before = snapshot(&sdk, "forged.user").await;
    let m = ev("changed", "m", t2(), "E-forge", "forged.user", "sales");
    let r = run(&p, sqs(&[("m2", &m, None)])).await;
    assert_eq!(failures(&r), ["m2"]);
    let a = audit_of(&logs, "m2");
    assert_eq!(a["reason"], "tampered", "{a}");
    assert_eq!(a["actions"], json!([]));
    assert_eq!(snapshot(&sdk, "forged.user").await, before);
    // The leaver: cut off and stripped, and still failed so that someone looks.
    let l = ev("left", "l", t3(), "E-forge", "forged.user", "sales");
    let r = run(&p, sqs(&[("m3", &l, None)])).await;
    assert_eq!(failures(&r), ["m3"]);
    let a = audit_of(&logs, "m3");
    assert_eq!(a["reason"], "tampered", "{a}");
    assert_cut_off_first(&a);
    assert!(retired(&snapshot(&sdk, "forged.user").await));
}

#[tokio::test]
async fn a_user_renamed_outside_the_function_is_found_by_its_id_and_retired() {
    let moto = Moto::start();
    moto.seed().await;
    let p = moto.provisioner(&[]).await;
    let sdk = moto.sdk().await;
    let (logs, _g) = Logs::capture();
    // A sales user (no access key): moto loses track of a renamed user's keys.
    let j = ev("joined", "j", t1(), "E-ren", "ren.user", "sales");
    run(&p, sqs(&[("m1", &j, None)])).await;
    let iam = aws_sdk_iam::Client::new(&sdk);
    let user_id = iam
        .get_user()
        .user_name("ren.user")
        .send()
        .await
        .unwrap()
        .user()
        .unwrap()
        .user_id()
        .to_owned();
    let (tags, _) = secret_tags(&moto, "hr-provisioner/ren.user").await;
    assert_eq!(tags.get("hr:user-id"), Some(&user_id), "{tags:?}");
    let kept: Vec<_> = iam
        .list_user_tags()
        .user_name("ren.user")
        .send()
        .await
        .unwrap()
        .tags()
        .to_vec();
    iam.update_user()
        .user_name("ren.user")
        .new_user_name("ren.hidden")
        .send()
        .await
        .unwrap();
    // AWS keeps a user's tags through UpdateUser; moto drops them: put them back
    // as AWS would have kept them.
    iam.tag_user()
        .user_name("ren.hidden")
        .set_tags(Some(kept))
        .send()
        .await
        .unwrap();
    let l = ev("left", "l", t2(), "E-ren", "ren.user", "sales");
    let r = run(&p, sqs(&[("m2", &l, None)])).await;
    assert!(failures(&r).is_empty(), "{r:?} {}", audit_of(&logs, "m2"));
    let a = audit_of(&logs, "m2");
    assert_eq!(a["user_name"], "ren.hidden", "{a}");
    let s = snapshot(&sdk, "ren.hidden").await;
    assert!(retired(&s), "{s:?} {a}");

    // Deleted by hand behind its live secret: the leaver fails, never unchanged.
    let j = ev("joined", "j2", t1(), "E-gone", "gone.user", "sales");
    run(&p, sqs(&[("m3", &j, None)])).await;
    iam.delete_login_profile()
        .user_name("gone.user")
        .send()
        .await
        .unwrap();
    iam.remove_user_from_group()
        .user_name("gone.user")
        .group_name("sales")
        .send()
        .await
        .unwrap();
    iam.delete_user()
        .user_name("gone.user")
        .send()
        .await
        .unwrap();
    let l = ev("left", "l2", t2(), "E-gone", "gone.user", "sales");
    let r = run(&p, sqs(&[("m4", &l, None)])).await;
    assert_eq!(failures(&r), ["m4"]);
    assert_eq!(audit_of(&logs, "m4")["outcome"], "failed");
}

#[tokio::test]
async fn a_secret_under_an_alias_of_another_key_is_foreign_and_our_alias_is_resolved() {
    let moto = Moto::start();
    moto.seed().await;
    let sdk = moto.sdk().await;
    let kms = aws_sdk_kms::Client::new(&sdk);
    let key = |d: &'static str| {
        let kms = kms.clone();
        async move {
            kms.create_key()
                .description(d)
                .send()
                .await
                .unwrap()
                .key_metadata()
                .unwrap()
                .arn()
                .unwrap()
                .to_owned()
        }
    };
    let ours = key("ours").await;
    let theirs = key("theirs").await;
    for (alias, target) in [("alias/hr-ours", &ours), ("alias/squatter", &theirs)] {
        kms.create_alias()
            .alias_name(alias)
            .target_key_id(target)
            .send()
            .await
            .unwrap();
    }
    let sm = aws_sdk_secretsmanager::Client::new(&sdk);
    let t = |k: &str, v: &str| {
        aws_sdk_secretsmanager::types::Tag::builder()
            .key(k)
            .value(v)
            .build()
    };
    // Tagged as ours, encrypted under the squatter's alias: they can decrypt it.
    sm.create_secret()
        .name("hr-provisioner/alias.victim")
        .secret_string("{}")
        .kms_key_id("alias/squatter")
        .tags(t("hr:managed-by", "hr-provisioner"))
        .tags(t("hr:employee-id", "E-alias"))
        .send()
        .await
        .unwrap();
    let (logs, _g) = Logs::capture();
    let p = moto
        .provisioner(&[("SECRET_KMS_KEY_ID", ours.as_str())])
        .await;
    let j = ev(
        "joined",
        "j",
        t1(),
        "E-alias",
        "alias.victim",
        "engineering",
    );
    let r = run(&p, sqs(&[("m1", &j, None)])).await;
    assert_eq!(failures(&r), ["m1"]);
    let a = audit_of(&logs, "m1");
    assert_eq!(a["outcome"], "rejected", "{a}");
    assert!(!snapshot(&sdk, "alias.victim").await.exists);
    assert!(moto.mails().is_empty());

    // Configured by our own alias: the secrets it creates are ours, and the next
    // event finds them so.
    let p = moto
        .provisioner(&[("SECRET_KMS_KEY_ID", "alias/hr-ours")])
        .await;
    let j = ev("joined", "j2", t1(), "E-own", "own.alias", "engineering");
    let m = ev("changed", "m2", t2(), "E-own", "own.alias", "sales");
    let r = run(&p, sqs(&[("m2", &j, None), ("m3", &m, None)])).await;
    assert!(failures(&r).is_empty(), "{r:?}");
    assert_eq!(audit_of(&logs, "m3")["outcome"], "applied");
}

/// An HTTP endpoint that denies every call, as Secrets Manager does for a role
/// whose permissions were taken away.
fn denying_endpoint() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut s) = stream else { break };
            let mut buf = [0u8; 65536];
            let _ = s.read(&mut buf);
            let body = r#"{"__type":"AccessDeniedException","message":"denied by the test"}"#;
            let _ = write!(
                s,
                "HTTP/1.1 400 Bad Request\r\nContent-Type: application/x-amz-json-1.1\r\nx-amzn-errortype: AccessDeniedException\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
        }
    });
    port
}

#[tokio::test]
async fn the_cut_off_needs_iam_alone_when_secrets_manager_denies_every_call() {
    let moto = Moto::start();
    moto.seed().await;
    let p = moto.provisioner(&[]).await;
    let sdk = moto.sdk().await;
    let j = ev(
        "joined",
        "j",
        t1(),
        "E-smdown",
        "smdown.user",
        "engineering",
    );
    run(&p, sqs(&[("m1", &j, None)])).await;

    // The same function, with Secrets Manager denying everything.
    let mut env: BTreeMap<String, String> = BTreeMap::new();
    env.insert("SENDER_EMAIL".into(), SENDER.into());
    env.insert("PROVISIONING_RULES".into(), RULES.into());
    let config = Config::from_env(|k| env.get(k).cloned()).unwrap();
    let real = wiring::services(&sdk, &config, true);
    let denied = aws_sdk_secretsmanager::config::Builder::from(&sdk)
        .endpoint_url(format!("http://127.0.0.1:{}", denying_endpoint()))
        .build();
    let services = Services {
        secrets: Secrets::new(aws_sdk_secretsmanager::Client::from_conf(denied), None),
        kms: Kms::new(aws_sdk_kms::Client::new(&sdk)),
        ..real
    };
    let cut = Provisioner::new(config, services);
    let (logs, _g) = Logs::capture();
    let l = ev("left", "l", t2(), "E-smdown", "smdown.user", "engineering");
    let r = run(&cut, sqs(&[("m2", &l, None)])).await;
    assert_eq!(
        failures(&r),
        ["m2"],
        "retried until Secrets Manager answers"
    );
    let a = audit_of(&logs, "m2");
    assert_cut_off_first(&a);
    let s = snapshot(&sdk, "smdown.user").await;
    assert_eq!(s.tag("hr:status"), Some("retired"));
    assert_eq!(s.inline, ["hr-provisioner-deny-all"]);

    // Once Secrets Manager answers again, the redelivery finishes the leaver.
    let r = run(&p, sqs(&[("m2", &l, None)])).await;
    assert!(failures(&r).is_empty(), "{r:?}");
    assert!(retired(&snapshot(&sdk, "smdown.user").await));
}

#[tokio::test]
async fn nothing_planted_survives_and_the_emptied_secret_keeps_no_previous_credentials() {
    let moto = Moto::start();
    moto.seed().await;
    let p = moto.provisioner(&[]).await;
    let sdk = moto.sdk().await;
    let j = ev("joined", "j", t1(), "E-plant", "plant.user", "engineering");
    run(&p, sqs(&[("m1", &j, None)])).await;
    let iam = aws_sdk_iam::Client::new(&sdk);
    iam.upload_ssh_public_key()
        .user_name("plant.user")
        .ssh_public_key_body(include_str!("fixtures/ssh-key.pub"))
        .send()
        .await
        .unwrap();
    iam.upload_signing_certificate()
        .user_name("plant.user")
        .certificate_body(include_str!("fixtures/signing-cert.pem"))
        .send()
        .await
        .unwrap();
    // A mover adopts the user: what the function never issues goes.
    let (logs, _g) = Logs::capture();
    let m = ev("changed", "m", t2(), "E-plant", "plant.user", "engineering");
    let r = run(&p, sqs(&[("m2", &m, None)])).await;
    assert!(failures(&r).is_empty(), "{r:?}");
    let s = snapshot(&sdk, "plant.user").await;
    assert!(s.ssh.is_empty() && s.certs.is_empty(), "{s:?}");
    let actions = audit_of(&logs, "m2")["actions"].to_string();
    assert!(
        actions.contains("DeleteSSHPublicKey:") && actions.contains("DeleteSigningCertificate:"),
        "{actions}"
    );
    assert_eq!(s.keys.len(), 1, "the stored key stays");

    // The leaver empties the secret; the version holding the credentials loses
    // its AWSPREVIOUS label.
    let l = ev("left", "l", t3(), "E-plant", "plant.user", "engineering");
    run(&p, sqs(&[("m3", &l, None)])).await;
    let d = aws_sdk_secretsmanager::Client::new(&sdk)
        .describe_secret()
        .secret_id("hr-provisioner/plant.user")
        .send()
        .await
        .unwrap();
    let stages: Vec<String> = d
        .version_ids_to_stages()
        .map(|m| m.values().flatten().cloned().collect())
        .unwrap_or_default();
    assert!(!stages.iter().any(|s| s == "AWSPREVIOUS"), "{stages:?}");
    assert!(audit_of(&logs, "m3")["actions"]
        .to_string()
        .contains("UpdateSecretVersionStage:AWSPREVIOUS"));
}

#[tokio::test]
async fn a_leaver_under_a_configured_kms_key_empties_and_schedules_its_own_secret() {
    let moto = Moto::start();
    moto.seed().await;
    let sdk = moto.sdk().await;
    let key = aws_sdk_kms::Client::new(&sdk)
        .create_key()
        .send()
        .await
        .unwrap()
        .key_metadata()
        .unwrap()
        .arn()
        .unwrap()
        .to_owned();
    let p = moto
        .provisioner(&[("SECRET_KMS_KEY_ID", key.as_str())])
        .await;
    let (logs, _g) = Logs::capture();
    let j = ev("joined", "j", t1(), "E-kms", "kms.user", "engineering");
    let l = ev("left", "l", t2(), "E-kms", "kms.user", "engineering");
    let r = run(&p, sqs(&[("m1", &j, None), ("m2", &l, None)])).await;
    assert!(failures(&r).is_empty(), "{r:?} {}", logs.text());
    let a = audit_of(&logs, "m2");
    assert_eq!(a["outcome"], "applied", "{a}");
    let actions = a["actions"].to_string();
    assert!(
        actions.contains("PutSecretValue") && actions.contains("DeleteSecret"),
        "the secret is ours: emptied and scheduled ({actions})"
    );
    let s = snapshot(&sdk, "kms.user").await;
    assert!(retired(&s) && s.secret_scheduled, "{s:?}");
}
