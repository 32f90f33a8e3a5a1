//! Issue 9's findings against moto: each test would have caught one of them.

mod common;

use common::*;

#[tokio::test]
async fn a_squatted_secret_rejects_the_joiner_with_nothing_changed() {
    let moto = Moto::start();
    moto.seed().await;
    let sm = aws_sdk_secretsmanager::Client::new(&moto.sdk().await);
    // Someone else created the secret under the name (no tags), and another one
    // carrying our tags but with a resource policy that lets others read it.
    sm.create_secret()
        .name("hr-provisioner/squat.one")
        .secret_string("{}")
        .send()
        .await
        .unwrap();
    sm.create_secret()
        .name("hr-provisioner/squat.two")
        .secret_string("{}")
        .tags(
            aws_sdk_secretsmanager::types::Tag::builder()
                .key("hr:managed-by")
                .value("hr-provisioner")
                .build(),
        )
        .tags(
            aws_sdk_secretsmanager::types::Tag::builder()
                .key("hr:employee-id")
                .value("E-squat.two")
                .build(),
        )
        .send()
        .await
        .unwrap();
    sm.put_resource_policy()
        .secret_id("hr-provisioner/squat.two")
        .resource_policy(r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Principal":{"AWS":"arn:aws:iam::999999999999:root"},"Action":"secretsmanager:GetSecretValue","Resource":"*"}]}"#)
        .send()
        .await
        .unwrap();
    let (logs, _g) = Logs::capture();
    let p = moto.provisioner(&[]).await;
    let resp = run(
        &p,
        sqs(&[
            ("m1", &joined("e1", t1(), "squat.one", "engineering"), None),
            ("m2", &joined("e2", t1(), "squat.two", "engineering"), None),
        ]),
    )
    .await;
    assert_eq!(failures(&resp), ["m1", "m2"]);
    for (m, user, why) in [
        ("m1", "squat.one", "not created by the provisioner"),
        ("m2", "squat.two", "resource policy"),
    ] {
        let a = audit_of(&logs, m);
        assert_eq!(a["outcome"], "rejected");
        assert!(a["reason"].as_str().unwrap().contains(why), "{a}");
        assert_eq!(a["actions"], serde_json::json!([]));
        assert!(!snapshot(&moto.sdk().await, user).await.exists);
    }
    let v = sm
        .get_secret_value()
        .secret_id("hr-provisioner/squat.one")
        .send()
        .await
        .unwrap();
    assert_eq!(
        v.secret_string(),
        Some("{}"),
        "the foreign secret is untouched"
    );
    assert!(moto.mails().is_empty());
}

#[tokio::test]
async fn secrets_carry_the_contract_tags_and_delete_mode_leaves_a_tombstone() {
    let moto = Moto::start();
    moto.seed().await;
    let (logs, _g) = Logs::capture();
    let p = moto
        .provisioner(&[("LEAVER_ACTION", "delete"), ("SECRET_RECOVERY_DAYS", "7")])
        .await;
    let j = joined("ev-j", t1(), "tomb.user", "engineering");
    assert!(failures(&run(&p, sqs(&[("m1", &j, None)])).await).is_empty());
    let s = snapshot(&moto.sdk().await, "tomb.user").await;
    let (tags, _) = secret_tags(&moto, "hr-provisioner/tomb.user").await;
    for (k, v) in [
        ("hr:employee-id", "E-tomb.user"),
        ("hr:managed-by", "hr-provisioner"),
        ("hr:status", "active"),
        ("hr:user-name", "tomb.user"),
        ("hr:last-event-id", "ev-j"),
        ("hr:last-event-at", t1()),
        ("hr:access-key-id", s.keys[0].as_str()),
    ] {
        assert_eq!(tags.get(k).map(String::as_str), Some(v), "{k}: {tags:?}");
    }
    assert!(tags["hr:access-key-created"].ends_with('Z'));

    let l = left("ev-l", t2(), "tomb.user");
    assert!(failures(&run(&p, sqs(&[("m2", &l, None)])).await).is_empty());
    let (tags, scheduled) = secret_tags(&moto, "hr-provisioner/tomb.user").await;
    assert!(scheduled);
    assert_eq!(tags["hr:status"], "deleted");
    assert_eq!(tags["hr:last-event-id"], "ev-l");
    assert!(!tags.contains_key("hr:access-key-id"));

    // The joiner redriven after the deletion: stale, nothing recreated.
    logs.clear();
    let resp = run(&p, sqs(&[("m3", &j, None)])).await;
    assert!(failures(&resp).is_empty());
    assert_eq!(audit_of(&logs, "m3")["outcome"], "stale");
    let iam = aws_sdk_iam::Client::new(&moto.sdk().await);
    assert!(iam.get_user().user_name("tomb.user").send().await.is_err());
    let (_, scheduled) = secret_tags(&moto, "hr-provisioner/tomb.user").await;
    assert!(scheduled, "the tombstone stays scheduled");
}

#[tokio::test]
async fn a_leaver_finds_the_user_through_its_secret_after_an_email_change() {
    let moto = Moto::start();
    moto.seed().await;
    let (logs, _g) = Logs::capture();
    let p = moto.provisioner(&[]).await;
    let j = body("joined", "ev-j", t1(), "E-77", "jane.doe", "engineering");
    assert!(failures(&run(&p, sqs(&[("m1", &j, Some("E-77"))])).await).is_empty());
    // HR changed the email: the name rule now gives jane.smith.
    let l = body("left", "ev-l", t2(), "E-77", "jane.smith", "engineering");
    let resp = run(&p, sqs(&[("m2", &l, Some("E-77"))])).await;
    assert!(failures(&resp).is_empty(), "{resp:?}");
    let a = audit_of(&logs, "m2");
    assert_eq!(a["outcome"], "applied");
    assert_eq!(a["user_name"], "jane.doe");
    let s = snapshot(&moto.sdk().await, "jane.doe").await;
    assert_eq!(s.tag("hr:status"), Some("retired"));
    assert!(s.groups.is_empty() && s.keys.is_empty() && !s.login_profile);
    assert!(logs.text().contains("users are never renamed"));
}

#[tokio::test]
async fn the_managed_deny_all_replaces_the_inline_policy() {
    let moto = Moto::start();
    moto.seed().await;
    let arn = create_policy(
        &moto.sdk().await,
        "hr-deny-all",
        r#"{"Version":"2012-10-17","Statement":[{"Effect":"Deny","Action":"*","Resource":"*"}]}"#,
    )
    .await;
    let (logs, _g) = Logs::capture();
    let p = moto.provisioner(&[("DENY_POLICY_ARN", &arn)]).await;
    let j = joined("ev-j", t1(), "deny.user", "engineering");
    let l = left("ev-l", t2(), "deny.user");
    assert!(failures(&run(&p, sqs(&[("m1", &j, None)])).await).is_empty());
    assert!(failures(&run(&p, sqs(&[("m2", &l, None)])).await).is_empty());
    let s = snapshot(&moto.sdk().await, "deny.user").await;
    assert_eq!(s.policies, std::slice::from_ref(&arn));
    assert!(s.inline.is_empty(), "no PutUserPolicy: {:?}", s.inline);
    let actions = audit_of(&logs, "m2")["actions"].to_string();
    assert!(!actions.contains("PutUserPolicy"), "{actions}");
    // The cut-off comes first.
    let a = audit_of(&logs, "m2");
    let first_two: Vec<&str> = a["actions"].as_array().unwrap()[..2]
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    assert!(
        first_two.contains(&format!("AttachUserPolicy:{arn}").as_str()),
        "{first_two:?}"
    );
    // A rehire takes it off again.
    let r = joined("ev-r", t3(), "deny.user", "engineering");
    assert!(failures(&run(&p, sqs(&[("m3", &r, None)])).await).is_empty());
    let s = snapshot(&moto.sdk().await, "deny.user").await;
    assert!(s.policies.is_empty(), "{:?}", s.policies);
    assert_eq!(s.tag("hr:status"), Some("active"));
}

#[tokio::test]
async fn future_and_expired_events_wrong_fifo_groups_are_rejected_and_stale_leavers_warn() {
    let moto = Moto::start();
    moto.seed().await;
    let (logs, _g) = Logs::capture();
    let p = moto.provisioner(&[]).await;
    let future = time::OffsetDateTime::now_utc() + time::Duration::hours(1);
    let future = future
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap();
    let old = "2020-01-01T00:00:00Z";
    let resp = run(
        &p,
        sqs(&[
            ("m1", &joined("e1", &future, "future.user", "sales"), None),
            ("m2", &joined("e2", old, "old.user", "sales"), None),
            (
                "m3",
                &joined("e3", t1(), "group.user", "sales"),
                Some("E-other"),
            ),
        ]),
    )
    .await;
    assert_eq!(failures(&resp), ["m1", "m2", "m3"]);
    for (m, why) in [
        ("m1", "future"),
        ("m2", "MAX_EVENT_AGE_DAYS"),
        ("m3", "message group"),
    ] {
        let a = audit_of(&logs, m);
        assert_eq!(a["outcome"], "rejected");
        assert!(a["reason"].as_str().unwrap().contains(why), "{a}");
    }
    for u in ["future.user", "old.user", "group.user"] {
        assert!(!snapshot(&moto.sdk().await, u).await.exists, "{u}");
    }
    // A leaver older than the user's last event did nothing: WARN, not INFO.
    let j = joined("e4", t2(), "warn.user", "sales");
    let l = left("e5", t1(), "warn.user");
    assert!(failures(&run(&p, sqs(&[("m4", &j, None)])).await).is_empty());
    logs.clear();
    assert!(failures(&run(&p, sqs(&[("m5", &l, None)])).await).is_empty());
    let line = logs
        .lines()
        .into_iter()
        .find(|l| l["message_id"] == "m5")
        .unwrap();
    assert_eq!(line["outcome"], "stale");
    assert_eq!(line["level"], "WARN");
}

#[tokio::test]
async fn the_welcome_mail_greets_plain_names_only_and_carries_nothing_else() {
    let moto = Moto::start();
    moto.seed().await;
    let p = moto.provisioner(&[]).await;
    let mut ev: serde_json::Value =
        serde_json::from_str(&joined("e1", t1(), "mail.user", "sales")).unwrap();
    ev["employee"]["first_name"] = "Visit evil.example.com".into();
    ev["employee"]["last_name"] = "https://evil.example.com".into();
    assert!(failures(&run(&p, sqs(&[("m1", &ev.to_string(), None)])).await).is_empty());
    let mails = moto.mails();
    assert_eq!(mails.len(), 1);
    let text = mails[0].to_string();
    assert!(!text.contains("evil"), "{text}");
    assert!(text.contains("Hello,"), "{text}");
}
