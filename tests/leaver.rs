//! Leavers and rehires against moto: full clean-up, guards, crashes, ordering.

mod common;

use std::sync::atomic::Ordering;
use std::sync::Arc;

use aws_config::SdkConfig;
use common::*;

/// Gives a joined user one of everything a leaver must remove.
async fn attach_everything(sdk: &SdkConfig, user: &str) -> String {
    let iam = aws_sdk_iam::Client::new(sdk);
    let policy = iam
        .create_policy()
        .policy_name(format!("extra-{user}"))
        .policy_document(r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"s3:ListAllMyBuckets","Resource":"*"}]}"#)
        .send()
        .await
        .unwrap();
    let arn = policy.policy().unwrap().arn().unwrap().to_owned();
    iam.attach_user_policy()
        .user_name(user)
        .policy_arn(&arn)
        .send()
        .await
        .unwrap();
    iam.put_user_policy()
        .user_name(user)
        .policy_name("inline-extra")
        .policy_document(r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"sqs:ListQueues","Resource":"*"}]}"#)
        .send()
        .await
        .unwrap();
    iam.upload_ssh_public_key()
        .user_name(user)
        .ssh_public_key_body(include_str!("fixtures/ssh-key.pub"))
        .send()
        .await
        .unwrap();
    iam.upload_signing_certificate()
        .user_name(user)
        .certificate_body(include_str!("fixtures/signing-cert.pem"))
        .send()
        .await
        .unwrap();
    let device = iam
        .create_virtual_mfa_device()
        .virtual_mfa_device_name(user)
        .path("/employees/")
        .send()
        .await
        .unwrap();
    let serial = device
        .virtual_mfa_device()
        .unwrap()
        .serial_number()
        .to_owned();
    iam.enable_mfa_device()
        .user_name(user)
        .serial_number(&serial)
        .authentication_code1("123456")
        .authentication_code2("654321")
        .send()
        .await
        .unwrap();
    // A second key, made by hand.
    iam.create_access_key()
        .user_name(user)
        .send()
        .await
        .unwrap();
    serial
}

async fn virtual_devices(sdk: &SdkConfig) -> Vec<String> {
    aws_sdk_iam::Client::new(sdk)
        .list_virtual_mfa_devices()
        .send()
        .await
        .unwrap()
        .virtual_mfa_devices()
        .iter()
        .map(|d| d.serial_number().to_owned())
        .collect()
}

fn assert_retired(s: &Snapshot) {
    assert!(s.groups.is_empty() && s.policies.is_empty(), "{s:?}");
    assert!(
        !s.login_profile && s.keys.is_empty() && s.mfa.is_empty(),
        "{s:?}"
    );
    assert!(s.ssh.is_empty() && s.certs.is_empty(), "{s:?}");
    assert!(s.secret_scheduled, "secret scheduled for deletion");
}

#[tokio::test]
async fn disable_removes_everything_and_keeps_the_user() {
    let moto = Moto::start();
    moto.seed().await;
    let sdk = moto.sdk().await;
    let p = moto.provisioner(&[]).await;
    run(
        &p,
        sqs(&[("j", &joined("j1", t1(), "leo.full", "engineering"), None)]),
    )
    .await;
    attach_everything(&sdk, "leo.full").await;
    let (logs, _g) = Logs::capture();
    let resp = run(&p, sqs(&[("l", &left("l1", t2(), "leo.full"), None)])).await;
    assert!(failures(&resp).is_empty(), "{resp:?}");
    let s = snapshot(&sdk, "leo.full").await;
    assert!(s.exists);
    assert_retired(&s);
    assert_eq!(s.inline, ["hr-provisioner-deny-all"]);
    assert_eq!(s.tag("hr:status"), Some("retired"));
    assert_eq!(s.tag("hr:last-event-id"), Some("l1"));
    assert!(
        virtual_devices(&sdk).await.is_empty(),
        "virtual MFA device deleted"
    );
    let a = &logs.audits()[0];
    assert_eq!(a["outcome"], "applied");
    let acts: Vec<&str> = a["actions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    // The claim and the deny run together, first; the secret is scheduled last.
    let mut first = acts[..2].to_vec();
    first.sort();
    assert_eq!(first, ["PutUserPolicy:hr-provisioner-deny-all", "TagUser"]);
    assert!(acts[acts.len() - 2..].contains(&"DeleteSecret"), "{acts:?}");
    // The secret no longer holds credentials the user does not have.
    let sm = aws_sdk_secretsmanager::Client::new(&sdk);
    sm.restore_secret()
        .secret_id("hr-provisioner/leo.full")
        .send()
        .await
        .unwrap();
    let v = sm
        .get_secret_value()
        .secret_id("hr-provisioner/leo.full")
        .send()
        .await
        .unwrap();
    let doc: serde_json::Value = serde_json::from_str(v.secret_string().unwrap()).unwrap();
    assert!(
        doc.get("password").is_none() && doc.get("secret_access_key").is_none(),
        "{doc}"
    );
    sm.delete_secret()
        .secret_id("hr-provisioner/leo.full")
        .send()
        .await
        .unwrap();

    // A duplicate leaver is unchanged.
    logs.clear();
    run(&p, sqs(&[("l", &left("l1", t2(), "leo.full"), None)])).await;
    assert_eq!(logs.audits()[0]["outcome"], "unchanged");
}

#[tokio::test]
async fn delete_removes_the_user_and_its_virtual_mfa_device() {
    let moto = Moto::start();
    moto.seed().await;
    let sdk = moto.sdk().await;
    let p = moto.provisioner(&[("LEAVER_ACTION", "delete")]).await;
    run(
        &p,
        sqs(&[("j", &joined("j1", t1(), "del.full", "engineering"), None)]),
    )
    .await;
    attach_everything(&sdk, "del.full").await;
    let (logs, g) = Logs::capture();
    let resp = run(&p, sqs(&[("l", &left("l1", t2(), "del.full"), None)])).await;
    assert!(failures(&resp).is_empty(), "{resp:?}");
    let acts = logs.audits()[0]["actions"].clone();
    println!(
        "delete leaver, fully attached: {} changes: {acts}",
        acts.as_array().unwrap().len()
    );
    assert_eq!(acts.as_array().unwrap().last().unwrap(), "DeleteUser");
    drop(g);
    let s = snapshot(&sdk, "del.full").await;
    assert!(!s.exists);
    assert!(s.secret_scheduled);
    assert!(virtual_devices(&sdk).await.is_empty());
    // Redelivery: the user is gone, nothing to do.
    let (logs, _g) = Logs::capture();
    let resp = run(&p, sqs(&[("l", &left("l1", t2(), "del.full"), None)])).await;
    assert!(failures(&resp).is_empty());
    assert_eq!(logs.audits()[0]["outcome"], "unchanged");
}

#[tokio::test]
async fn leaver_for_an_unknown_user_is_unchanged() {
    let moto = Moto::start();
    moto.seed().await;
    let (logs, _g) = Logs::capture();
    let p = moto.provisioner(&[]).await;
    let resp = run(&p, sqs(&[("l", &left("l1", t2(), "nobody.here"), None)])).await;
    assert!(failures(&resp).is_empty());
    assert_eq!(logs.audits()[0]["outcome"], "unchanged");
}

#[tokio::test]
async fn leaver_crash_after_each_change_then_redelivery_converges() {
    let moto = Moto::start();
    for action in ["disable", "delete"] {
        let mut k = 1;
        loop {
            moto.reset();
            moto.seed().await;
            let sdk = moto.sdk().await;
            let env = [("LEAVER_ACTION", action)];
            let p = moto.provisioner(&env).await;
            run(
                &p,
                sqs(&[(
                    "j",
                    &joined("j1", t1(), "crash.leaver", "engineering"),
                    None,
                )]),
            )
            .await;
            attach_everything(&sdk, "crash.leaver").await;
            let faults = Arc::new(CrashAfter::new(k));
            let crashing = moto.provisioner(&env).await.with_faults(faults.clone());
            let b = left("l1", t2(), "crash.leaver");
            let resp = run(&crashing, sqs(&[("l", &b, None)])).await;
            if faults.seen.load(Ordering::SeqCst) < k {
                assert!(failures(&resp).is_empty());
                assert!(
                    k > 12,
                    "{action}: a fully attached leaver makes many changes: k={k}"
                );
                break;
            }
            assert_eq!(failures(&resp), ["l"], "{action} k={k}");
            let resp = run(&moto.provisioner(&env).await, sqs(&[("l", &b, None)])).await;
            assert!(failures(&resp).is_empty(), "{action} k={k}: {resp:?}");
            let s = snapshot(&sdk, "crash.leaver").await;
            assert_eq!(s.exists, action == "disable", "{action} k={k}");
            if s.exists {
                assert_retired(&s);
                assert_eq!(s.inline, ["hr-provisioner-deny-all"]);
            }
            assert!(s.secret_scheduled, "{action} k={k}");
            assert!(
                virtual_devices(&sdk).await.is_empty(),
                "{action} k={k}: orphan virtual MFA"
            );
            k += 1;
        }
    }
}

#[tokio::test]
async fn rehire_gets_fresh_credentials_matching_the_restored_secret() {
    let moto = Moto::start();
    moto.seed().await;
    let sdk = moto.sdk().await;
    let p = moto.provisioner(&[]).await;
    run(
        &p,
        sqs(&[("j", &joined("j1", t1(), "re.hire", "engineering"), None)]),
    )
    .await;
    let first = snapshot(&sdk, "re.hire").await;
    let first_password = moto.live_password("re.hire");
    run(&p, sqs(&[("l", &left("l1", t2(), "re.hire"), None)])).await;
    let (logs, _g) = Logs::capture();
    let resp = run(
        &p,
        sqs(&[("r", &joined("j2", t3(), "re.hire", "engineering"), None)]),
    )
    .await;
    assert!(failures(&resp).is_empty());
    assert_eq!(logs.audits()[0]["outcome"], "applied");
    let s = snapshot(&sdk, "re.hire").await;
    assert_eq!(s.tag("hr:status"), Some("active"));
    assert!(s.inline.is_empty(), "deny-all removed");
    assert_eq!(s.groups, ["developers", "staff"]);
    let secret = s.secret.clone().expect("secret restored");
    assert_eq!(
        s.keys,
        [secret["access_key_id"].as_str().unwrap().to_owned()]
    );
    assert_ne!(s.keys, first.keys, "a new key");
    let live = moto.live_password("re.hire");
    assert_eq!(live.as_deref(), secret["password"].as_str());
    assert_ne!(live, first_password, "a new password");
    assert_eq!(moto.mails().len(), 2, "a rehire sends the mail again");
    // A stale leaver after the rehire changes nothing.
    logs.clear();
    let resp = run(&p, sqs(&[("l", &left("l1", t2(), "re.hire"), None)])).await;
    assert!(failures(&resp).is_empty());
    assert_eq!(logs.audits()[0]["outcome"], "stale");
    assert_eq!(snapshot(&sdk, "re.hire").await, s);
}

#[tokio::test]
async fn rehire_after_delete_recreates_the_user_and_restores_the_secret() {
    let moto = Moto::start();
    moto.seed().await;
    let sdk = moto.sdk().await;
    let p = moto.provisioner(&[("LEAVER_ACTION", "delete")]).await;
    run(
        &p,
        sqs(&[("j", &joined("j1", t1(), "back.again", "sales"), None)]),
    )
    .await;
    run(&p, sqs(&[("l", &left("l1", t2(), "back.again"), None)])).await;
    let resp = run(
        &p,
        sqs(&[("r", &joined("j2", t3(), "back.again", "sales"), None)]),
    )
    .await;
    assert!(failures(&resp).is_empty(), "{resp:?}");
    let s = snapshot(&sdk, "back.again").await;
    assert!(s.exists && s.login_profile && !s.secret_scheduled);
    assert!(s.secret.unwrap()["password"].is_string());
}

/// A standard queue may hand a leaver and its joiner over in one batch, leaver
/// first: they still apply in event order, and the user ends retired.
#[tokio::test]
async fn leaver_before_its_joiner_in_one_batch_still_ends_retired() {
    let moto = Moto::start();
    moto.seed().await;
    let (logs, _g) = Logs::capture();
    let p = moto.provisioner(&[]).await;
    let resp = run(
        &p,
        sqs(&[
            ("l", &left("l1", t2(), "swap.order"), None),
            ("j", &joined("j1", t1(), "swap.order", "sales"), None),
        ]),
    )
    .await;
    assert!(failures(&resp).is_empty());
    let s = snapshot(&moto.sdk().await, "swap.order").await;
    assert_eq!(s.tag("hr:status"), Some("retired"));
    assert!(!s.login_profile && s.keys.is_empty() && s.groups.is_empty());
    let order: Vec<_> = logs
        .audits()
        .iter()
        .map(|a| a["message_id"].clone())
        .collect();
    assert_eq!(order, ["j", "l"]);
}
