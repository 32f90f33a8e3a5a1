//! The credential lifecycle (contract section 11) against moto: a key rotation
//! end to end with the time set through the writer's clock parameter (moto
//! dates every key "now"; nothing sleeps), a mover in the grace keeping both
//! keys, unused credentials disabled and restored by HR's next mover.

mod common;

use std::time::Duration;

use aws_sdk_iam::types::StatusType;
use common::*;
use hr_iam_provisioner::aws::Budget;
use hr_iam_provisioner::lifecycle::run::{Outcome, Writer};
use hr_iam_provisioner::review::read::Reader;
use hr_iam_provisioner::service::Provisioner;
use hr_iam_provisioner::state::SecretDoc;
use serde_json::Value;
use time::OffsetDateTime;

async fn lifecycle(moto: &Moto, p: &Provisioner, now: OffsetDateTime) -> Vec<Outcome> {
    let sdk = moto.sdk().await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    let writer = Writer {
        config: &p.config,
        services: &p.services,
        iam: aws_sdk_iam::Client::new(&sdk),
    };
    let mut reader = Reader::new(&sdk, deadline);
    reader.tolerate_unsupported = true;
    writer
        .run(&reader, now, &Budget::until(deadline))
        .await
        .expect("lifecycle run")
}

/// (id, active) of the user's keys, oldest first.
async fn keys(moto: &Moto, user: &str) -> Vec<(String, bool)> {
    let sdk = moto.sdk().await;
    let out = aws_sdk_iam::Client::new(&sdk)
        .list_access_keys()
        .user_name(user)
        .send()
        .await
        .unwrap();
    let mut v: Vec<_> = out
        .access_key_metadata()
        .iter()
        .map(|k| {
            (
                k.create_date().map(|d| d.as_nanos()).unwrap_or_default(),
                k.access_key_id().unwrap().to_owned(),
                k.status() == Some(&StatusType::Active),
            )
        })
        .collect();
    v.sort();
    v.into_iter().map(|(_, id, a)| (id, a)).collect()
}

async fn secret(moto: &Moto, user: &str) -> (SecretDoc, Vec<(String, String)>) {
    let sdk = moto.sdk().await;
    let sm = aws_sdk_secretsmanager::Client::new(&sdk);
    let name = format!("hr-provisioner/{user}");
    let v = sm.get_secret_value().secret_id(&name).send().await.unwrap();
    let doc = SecretDoc::parse(v.secret_string().unwrap()).unwrap();
    let d = sm.describe_secret().secret_id(&name).send().await.unwrap();
    let mut tags: Vec<_> = d
        .tags()
        .iter()
        .map(|t| (t.key().unwrap().to_owned(), t.value().unwrap().to_owned()))
        .collect();
    tags.sort();
    (doc, tags)
}

fn tag<'a>(tags: &'a [(String, String)], k: &str) -> Option<&'a str> {
    tags.iter()
        .find(|(key, _)| key == k)
        .map(|(_, v)| v.as_str())
}

async fn login_profile(moto: &Moto, user: &str) -> bool {
    let sdk = moto.sdk().await;
    aws_sdk_iam::Client::new(&sdk)
        .get_login_profile()
        .user_name(user)
        .send()
        .await
        .is_ok()
}

fn mails_to(moto: &Moto, to: &str) -> Vec<Value> {
    moto.mails()
        .into_iter()
        .filter(|m| m.to_string().contains(to))
        .collect()
}

#[tokio::test(flavor = "current_thread")]
async fn a_key_is_rotated_end_to_end_and_a_mover_in_the_grace_keeps_both() {
    let moto = Moto::start();
    moto.seed().await;
    // Unused credentials are not this test's subject: a long threshold.
    let p = moto.provisioner(&[("UNUSED_DISABLE_DAYS", "3650")]).await;
    let r = run(
        &p,
        sqs(&[("m1", &joined("ev-1", t1(), "jane.doe", "engineering"), None)]),
    )
    .await;
    assert!(failures(&r).is_empty());
    let before = keys(&moto, "jane.doe").await;
    assert_eq!(before.len(), 1);
    let old = before[0].0.clone();
    let now = OffsetDateTime::now_utc();

    // Young key: nothing to do, and no per-user write.
    assert!(lifecycle(&moto, &p, now + time::Duration::days(82))
        .await
        .is_empty());

    // 83 days = KEY_MAX_AGE_DAYS 90 - grace 7: a new key, stored with the old one.
    let mails_before = mails_to(&moto, "jane.doe@example.com").len();
    let out = lifecycle(&moto, &p, now + time::Duration::days(84)).await;
    assert_eq!(out.len(), 1, "{out:?}");
    assert_eq!(
        out[0].actions,
        [
            "CreateAccessKey",
            "PutSecretValue:rotated",
            "SendEmail:new-key",
            "TagUser:hr:key-rotation"
        ],
        "{out:?}"
    );
    let during = keys(&moto, "jane.doe").await;
    assert_eq!(during.len(), 2);
    assert!(during.iter().all(|(_, active)| *active));
    let new = during.iter().find(|(id, _)| *id != old).unwrap().0.clone();
    let (doc, tags) = secret(&moto, "jane.doe").await;
    assert_eq!(doc.access_key_id.as_deref(), Some(new.as_str()));
    assert_eq!(doc.previous_access_key_id.as_deref(), Some(old.as_str()));
    assert!(doc.secret_access_key.is_some() && doc.previous_secret_access_key.is_some());
    assert_eq!(tag(&tags, "hr:access-key-id"), Some(new.as_str()));
    assert_eq!(tag(&tags, "hr:previous-access-key-id"), Some(old.as_str()));
    let mails = mails_to(&moto, "jane.doe@example.com");
    assert_eq!(mails.len(), mails_before + 1);
    let mail = mails.last().unwrap().to_string();
    assert!(mail.contains("new AWS access key"), "{mail}");
    assert!(
        !mail.contains(&new) && !mail.contains(&old),
        "no key id in the mail"
    );
    let secret_key = doc.secret_access_key.as_ref().unwrap().expose().to_owned();
    assert!(!mail.contains(&secret_key));

    // HR's mover during the grace: the core keeps the previous key (it is in the
    // secret), and the secret keeps it too.
    let r = run(
        &p,
        sqs(&[(
            "m2",
            &body(
                "changed",
                "ev-2",
                t2(),
                "E-jane.doe",
                "jane.doe",
                "engineering",
            ),
            None,
        )]),
    )
    .await;
    assert!(failures(&r).is_empty());
    assert_eq!(keys(&moto, "jane.doe").await.len(), 2);
    let (doc, _) = secret(&moto, "jane.doe").await;
    assert_eq!(doc.previous_access_key_id.as_deref(), Some(old.as_str()));

    // A day later: in the grace, nothing, and the mail is not repeated.
    assert!(lifecycle(&moto, &p, now + time::Duration::days(1))
        .await
        .is_empty());
    // Grace over (7 days after the new key, created moments after `now`): old key
    // deactivated, deleted, dropped.
    let out = lifecycle(
        &moto,
        &p,
        now + time::Duration::days(7) + time::Duration::minutes(5),
    )
    .await;
    assert_eq!(
        out[0].actions,
        [
            format!("UpdateAccessKey:{old}:Inactive"),
            format!("DeleteAccessKey:{old}"),
            "PutSecretValue:previous-dropped".into()
        ]
    );
    assert_eq!(keys(&moto, "jane.doe").await, vec![(new.clone(), true)]);
    let (doc, tags) = secret(&moto, "jane.doe").await;
    assert_eq!(doc.access_key_id.as_deref(), Some(new.as_str()));
    assert!(doc.previous_access_key_id.is_none() && doc.previous_secret_access_key.is_none());
    assert_eq!(tag(&tags, "hr:previous-access-key-id"), None);
    assert_eq!(
        mails_to(&moto, "jane.doe@example.com").len(),
        mails_before + 1
    );
    // Converged: the next run has nothing to do.
    assert!(lifecycle(&moto, &p, now + time::Duration::days(8))
        .await
        .is_empty());
}

#[tokio::test(flavor = "current_thread")]
async fn unused_credentials_are_disabled_and_hrs_next_mover_restores_them() {
    let moto = Moto::start();
    moto.seed().await;
    // No rotation here: keys may live ten years.
    let p = moto.provisioner(&[("KEY_MAX_AGE_DAYS", "3650")]).await;
    let r = run(
        &p,
        sqs(&[("m1", &joined("ev-1", t1(), "jane.doe", "engineering"), None)]),
    )
    .await;
    assert!(failures(&r).is_empty());
    let old = keys(&moto, "jane.doe").await[0].0.clone();
    let now = OffsetDateTime::now_utc();
    // 44 days without use: still fine (moto records no use: counted from creation).
    assert!(lifecycle(&moto, &p, now + time::Duration::days(44))
        .await
        .is_empty());
    let out = lifecycle(&moto, &p, now + time::Duration::days(46)).await;
    assert_eq!(out.len(), 1);
    assert_eq!(
        out[0].actions,
        [
            format!("UpdateAccessKey:{old}:Inactive"),
            "DeleteLoginProfile".into(),
            "PutSecretValue:password-dropped".into()
        ],
        "{out:?}"
    );
    assert!(
        out[0].reasons.iter().any(|r| r.contains("45 days")),
        "{out:?}"
    );
    assert_eq!(keys(&moto, "jane.doe").await, vec![(old.clone(), false)]);
    assert!(!login_profile(&moto, "jane.doe").await);
    let (doc, _) = secret(&moto, "jane.doe").await;
    assert!(doc.password.is_none());
    assert_eq!(
        doc.access_key_id.as_deref(),
        Some(old.as_str()),
        "the inactive key stays stored"
    );
    // Disabled things stay disabled: the next run changes nothing.
    assert!(lifecycle(&moto, &p, now + time::Duration::days(47))
        .await
        .is_empty());

    // HR's next employee.changed restores: a new password and login profile, and
    // the inactive key replaced by a fresh active one.
    let r = run(
        &p,
        sqs(&[(
            "m2",
            &body(
                "changed",
                "ev-2",
                t2(),
                "E-jane.doe",
                "jane.doe",
                "engineering",
            ),
            None,
        )]),
    )
    .await;
    assert!(failures(&r).is_empty());
    assert!(login_profile(&moto, "jane.doe").await);
    let after = keys(&moto, "jane.doe").await;
    assert_eq!(after.len(), 1);
    assert!(after[0].1 && after[0].0 != old, "{after:?}");
    let (doc, _) = secret(&moto, "jane.doe").await;
    assert!(doc.password.is_some());
    assert_eq!(doc.access_key_id.as_deref(), Some(after[0].0.as_str()));
}
