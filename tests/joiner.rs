//! Joiners against a real (moto) IAM, Secrets Manager and SES v2.

mod common;

use std::sync::atomic::Ordering;
use std::sync::Arc;

use common::*;

fn actions(audit: &serde_json::Value) -> Vec<String> {
    audit["actions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a.as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test]
async fn fresh_joiner_gets_user_groups_credentials_secret_and_one_mail() {
    let moto = Moto::start();
    moto.seed().await;
    let (logs, _g) = Logs::capture();
    let p = moto.provisioner(&[]).await;
    let resp = run(
        &p,
        sqs(&[("m1", &joined("ev-1", t1(), "jane.doe", "engineering"), None)]),
    )
    .await;
    assert!(failures(&resp).is_empty(), "{resp:?}");

    let sdk = moto.sdk().await;
    let s = snapshot(&sdk, "jane.doe").await;
    assert_eq!(s.path, "/employees/");
    assert_eq!(s.groups, ["developers", "staff"]);
    assert!(s.login_profile);
    assert_eq!(s.keys.len(), 1);
    for (k, v) in [
        ("hr:employee-id", "E-jane.doe"),
        ("hr:managed-by", "hr-provisioner"),
        ("hr:status", "active"),
        ("hr:last-event-at", t1()),
        ("hr:last-event-id", "ev-1"),
        ("hr:welcome", "sent:ev-1"),
    ] {
        assert_eq!(s.tag(k), Some(v), "tag {k}");
    }
    // The secret holds exactly the live credentials.
    let secret = s.secret.expect("secret");
    assert_eq!(secret["user_name"], "jane.doe");
    assert_eq!(secret["signin_url"], URL);
    assert_eq!(secret["access_key_id"], s.keys[0].as_str());
    assert!(secret["secret_access_key"]
        .as_str()
        .is_some_and(|k| k.len() >= 20));
    let password = secret["password"].as_str().unwrap().to_owned();
    assert_eq!(
        moto.live_password("jane.doe").as_deref(),
        Some(password.as_str())
    );
    assert!(
        password.len() >= 24,
        "account policy min length 24 respected"
    );

    // One mail with the user name and the URL, and no credential.
    let mails = moto.mails();
    assert_eq!(mails.len(), 1);
    let mail = mails[0].to_string();
    assert_eq!(
        mails[0]["destinations"]["ToAddresses"][0],
        "jane.doe@example.com"
    );
    assert_eq!(mails[0]["source"], SENDER);
    assert!(mail.contains("jane.doe") && mail.contains(URL));
    assert!(!mail.contains(&password));
    assert!(!mail.contains(secret["secret_access_key"].as_str().unwrap()));

    // One audit line, with the ordered actions; no secret anywhere in the logs.
    let audits = logs.audits();
    assert_eq!(audits.len(), 1);
    let a = &audits[0];
    assert_eq!(a["outcome"], "applied");
    assert_eq!(a["message_id"], "m1");
    assert_eq!(a["event_id"], "ev-1");
    assert_eq!(a["event_type"], "employee.joined");
    assert_eq!(a["employee_id"], "E-jane.doe");
    assert_eq!(a["user_name"], "jane.doe");
    assert_eq!(a["level"], "INFO");
    // The actions of one stage run at once, so their order varies; stages do not.
    let acts = actions(a);
    assert_eq!(acts.len(), 8, "{acts:?}");
    assert_eq!(acts[0], "CreateUser");
    let mut middle = acts[1..4].to_vec();
    middle.sort();
    assert_eq!(
        middle,
        [
            "AddUserToGroup:developers",
            "AddUserToGroup:staff",
            "CreateAccessKey"
        ]
    );
    assert_eq!(
        acts[4..],
        ["CreateSecret", "CreateLoginProfile", "SendEmail", "TagUser"]
    );
    let text = logs.text();
    assert!(!text.contains(&password));
    assert!(!text.contains(secret["secret_access_key"].as_str().unwrap()));
    let emf = logs
        .lines()
        .into_iter()
        .find(|l| l.get("_aws").is_some())
        .expect("EMF line");
    assert_eq!(emf["applied"], 1);
    assert_eq!(
        emf["_aws"]["CloudWatchMetrics"][0]["Namespace"],
        "HrProvisioner"
    );
}

#[tokio::test]
async fn duplicates_in_one_batch_and_redelivery_give_one_of_everything() {
    let moto = Moto::start();
    moto.seed().await;
    let (logs, _g) = Logs::capture();
    let p = moto.provisioner(&[]).await;
    let b = joined("ev-1", t1(), "dup.user", "engineering");
    let resp = run(
        &p,
        sqs(&[("m1", &b, None), ("m2", &b, None), ("m3", &b, None)]),
    )
    .await;
    assert!(failures(&resp).is_empty());
    let resp = run(&p, sqs(&[("m4", &b, None)])).await;
    assert!(failures(&resp).is_empty());

    let s = snapshot(&moto.sdk().await, "dup.user").await;
    assert_eq!(s.keys.len(), 1);
    assert_eq!(moto.mails().len(), 1);
    let secrets = aws_sdk_secretsmanager::Client::new(&moto.sdk().await)
        .list_secrets()
        .send()
        .await
        .unwrap();
    assert_eq!(secrets.secret_list().len(), 1);
    let outcomes: Vec<String> = logs
        .audits()
        .iter()
        .map(|a| a["outcome"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(outcomes, ["applied", "unchanged", "unchanged", "unchanged"]);
    for a in &logs.audits()[1..] {
        assert!(actions(a).is_empty());
    }
}

#[tokio::test]
async fn crash_after_each_change_then_redelivery_converges() {
    let moto = Moto::start();
    let b = joined("ev-1", t1(), "crash.user", "engineering");
    let mut k = 1;
    loop {
        moto.reset();
        moto.seed().await;
        let faults = Arc::new(CrashAfter::new(k));
        let crashing = moto.provisioner(&[]).await.with_faults(faults.clone());
        let resp = run(&crashing, sqs(&[("m1", &b, None)])).await;
        let changes = faults.seen.load(Ordering::SeqCst);
        if changes < k {
            // The undisturbed run made fewer than k changes: every point is covered.
            assert!(failures(&resp).is_empty());
            assert!(k > 8, "a fresh joiner makes 8 changes, covered all: k={k}");
            break;
        }
        assert_eq!(
            failures(&resp),
            ["m1"],
            "k={k}: the crashed record is retried"
        );
        // Redelivery to a fresh container.
        let fresh = moto.provisioner(&[]).await;
        let resp = run(&fresh, sqs(&[("m1", &b, None)])).await;
        assert!(failures(&resp).is_empty(), "k={k}");

        let s = snapshot(&moto.sdk().await, "crash.user").await;
        let secret = s.secret.clone().expect("secret");
        assert_eq!(s.groups, ["developers", "staff"], "k={k}");
        assert_eq!(
            s.keys,
            [secret["access_key_id"].as_str().unwrap().to_owned()],
            "k={k}: no orphan key"
        );
        assert_eq!(
            moto.live_password("crash.user").as_deref(),
            secret["password"].as_str(),
            "k={k}: the live password is the stored one"
        );
        assert_eq!(s.tag("hr:welcome"), Some("sent:ev-1"));
        let mails = moto.mails().len();
        // Only a crash between SendEmail and recording it repeats the mail.
        assert!(mails == 1 || (mails == 2 && k == 7), "k={k}: {mails} mails");
        // A third delivery has nothing left to do.
        let (logs, _g) = Logs::capture();
        let resp = run(&fresh, sqs(&[("m1", &b, None)])).await;
        assert!(failures(&resp).is_empty());
        assert_eq!(logs.audits()[0]["outcome"], "unchanged", "k={k}");
        k += 1;
    }
}

#[tokio::test]
async fn hostile_records_are_rejected_alone_without_any_aws_change() {
    let moto = Moto::start();
    moto.seed().await;
    let (logs, _g) = Logs::capture();
    let p = moto.provisioner(&[]).await;
    let good = joined("ev-ok", t1(), "good.user", "sales");
    let long_name = joined("ev-2", t1(), &"a".repeat(65), "sales");
    let lookalike = joined("ev-3", t1(), "j\u{0430}ne", "sales");
    let path = joined("ev-4", t1(), "../admin", "sales");
    let huge = format!(r#"{{"pad":"{}"}}"#, "x".repeat(1_000_000));
    let unknown = good
        .replace("employee.joined", "employee.promoted")
        .replace("ev-ok", "ev-5");
    let resp = run(
        &p,
        sqs(&[
            ("bad-json", "{not json", None),
            ("m-ok", &good, None),
            ("bad-name", &long_name, None),
            ("bad-lookalike", &lookalike, None),
            ("bad-path", &path, None),
            ("bad-huge", &huge, None),
            ("bad-type", &unknown, None),
            (
                "bad-missing",
                r#"{"event_id":"x","event_type":"employee.joined"}"#,
                None,
            ),
        ]),
    )
    .await;
    let mut f = failures(&resp);
    f.sort();
    assert_eq!(
        f,
        [
            "bad-huge",
            "bad-json",
            "bad-lookalike",
            "bad-missing",
            "bad-name",
            "bad-path",
            "bad-type"
        ]
    );
    let users = aws_sdk_iam::Client::new(&moto.sdk().await)
        .list_users()
        .send()
        .await
        .unwrap();
    let names: Vec<&str> = users.users().iter().map(|u| u.user_name()).collect();
    assert_eq!(names, ["good.user"]);
    for a in logs.audits() {
        if a["message_id"] == "m-ok" {
            assert_eq!(a["outcome"], "applied");
        } else {
            assert_eq!(a["outcome"], "rejected", "{a}");
            assert_eq!(a["level"], "ERROR");
            assert!(a["reason"].as_str().is_some_and(|r| !r.is_empty()));
            assert_eq!(a["actions"], serde_json::json!([]));
        }
    }
    assert_eq!(logs.audits().len(), 8);
}

#[tokio::test]
async fn someone_elses_user_is_never_taken_over() {
    let moto = Moto::start();
    moto.seed().await;
    let sdk = moto.sdk().await;
    let iam = aws_sdk_iam::Client::new(&sdk);
    // A name held in other case, an unmanaged user, one outside the path, and one
    // managed for another employee.
    iam.create_user()
        .user_name("Case.Clash")
        .path("/employees/")
        .send()
        .await
        .unwrap();
    iam.create_user()
        .user_name("plain.user")
        .path("/employees/")
        .send()
        .await
        .unwrap();
    iam.create_user()
        .user_name("admin.user")
        .path("/admins/")
        .tags(
            aws_sdk_iam::types::Tag::builder()
                .key("hr:managed-by")
                .value("hr-provisioner")
                .build()
                .unwrap(),
        )
        .tags(
            aws_sdk_iam::types::Tag::builder()
                .key("hr:employee-id")
                .value("E-admin.user")
                .build()
                .unwrap(),
        )
        .send()
        .await
        .unwrap();
    iam.create_user()
        .user_name("other.emp")
        .path("/employees/")
        .tags(
            aws_sdk_iam::types::Tag::builder()
                .key("hr:managed-by")
                .value("hr-provisioner")
                .build()
                .unwrap(),
        )
        .tags(
            aws_sdk_iam::types::Tag::builder()
                .key("hr:employee-id")
                .value("E-someone-else")
                .build()
                .unwrap(),
        )
        .send()
        .await
        .unwrap();
    let mut before = Vec::new();
    for u in ["Case.Clash", "plain.user", "admin.user", "other.emp"] {
        before.push(snapshot(&sdk, u).await);
    }
    let (logs, _g) = Logs::capture();
    let p = moto.provisioner(&[]).await;
    let resp = run(
        &p,
        sqs(&[
            ("m1", &joined("e1", t1(), "case.clash", "engineering"), None),
            ("m2", &joined("e2", t1(), "plain.user", "engineering"), None),
            ("m3", &joined("e3", t1(), "admin.user", "engineering"), None),
            ("m4", &joined("e4", t1(), "other.emp", "engineering"), None),
            ("m5", &left("e5", t2(), "plain.user"), None),
            ("m6", &left("e6", t2(), "admin.user"), None),
            ("m7", &left("e7", t2(), "case.clash"), None),
        ]),
    )
    .await;
    let mut f = failures(&resp);
    f.sort();
    assert_eq!(f, ["m1", "m2", "m3", "m4", "m5", "m6", "m7"]);
    for a in logs.audits() {
        assert_eq!(a["outcome"], "rejected", "{a}");
        assert_eq!(a["actions"], serde_json::json!([]));
    }
    for (i, u) in ["Case.Clash", "plain.user", "admin.user", "other.emp"]
        .iter()
        .enumerate()
    {
        assert_eq!(snapshot(&sdk, u).await, before[i], "{u} changed");
    }
    assert!(!snapshot(&sdk, "case.clash").await.exists);
    assert!(moto.mails().is_empty());
}

#[tokio::test]
async fn stale_events_change_nothing_and_succeed() {
    let moto = Moto::start();
    moto.seed().await;
    let (logs, _g) = Logs::capture();
    let p = moto.provisioner(&[]).await;
    run(
        &p,
        sqs(&[("m1", &joined("new", t2(), "late.user", "sales"), None)]),
    )
    .await;
    let sdk = moto.sdk().await;
    let before = snapshot(&sdk, "late.user").await;
    let resp = run(
        &p,
        sqs(&[
            ("m2", &joined("old", t1(), "late.user", "sales"), None),
            ("m3", &left("older-left", t1(), "late.user"), None),
        ]),
    )
    .await;
    assert!(failures(&resp).is_empty());
    assert_eq!(snapshot(&sdk, "late.user").await, before);
    let outcomes: Vec<_> = logs.audits().iter().map(|a| a["outcome"].clone()).collect();
    assert_eq!(outcomes, ["applied", "stale", "stale"]);
}

#[tokio::test]
async fn dry_run_plans_and_changes_nothing() {
    let moto = Moto::start();
    moto.seed().await;
    let (logs, _g) = Logs::capture();
    let p = moto.provisioner(&[("DRY_RUN", "true")]).await;
    let resp = run(
        &p,
        sqs(&[("m1", &joined("e1", t1(), "dry.user", "engineering"), None)]),
    )
    .await;
    assert!(failures(&resp).is_empty());
    assert!(!snapshot(&moto.sdk().await, "dry.user").await.exists);
    assert!(moto.mails().is_empty());
    let a = &logs.audits()[0];
    assert_eq!(a["outcome"], "planned");
    assert_eq!(actions(a)[0], "CreateUser");
    assert!(actions(a).contains(&"SendEmail".to_owned()));
}

#[tokio::test]
async fn fifo_group_stops_at_its_first_failure() {
    let moto = Moto::start();
    moto.seed().await;
    let (logs, _g) = Logs::capture();
    let p = moto.provisioner(&[]).await;
    let resp = run(
        &p,
        sqs(&[
            ("a1", "garbage", Some("E-fifo.a")),
            (
                "a2",
                &joined("e2", t1(), "fifo.a", "sales"),
                Some("E-fifo.a"),
            ),
            (
                "b1",
                &joined("e3", t1(), "fifo.b", "sales"),
                Some("E-fifo.b"),
            ),
        ]),
    )
    .await;
    assert_eq!(failures(&resp), ["a1", "a2"]);
    assert!(
        !snapshot(&moto.sdk().await, "fifo.a").await.exists,
        "a2 was not applied"
    );
    assert!(snapshot(&moto.sdk().await, "fifo.b").await.exists);
    let a2 = logs
        .audits()
        .into_iter()
        .find(|a| a["message_id"] == "a2")
        .unwrap();
    assert_eq!(a2["outcome"], "failed");
    assert!(a2["reason"].as_str().unwrap().contains("FIFO"));
}

#[tokio::test]
async fn signin_url_uses_the_account_alias_when_there_is_one() {
    let moto = Moto::start();
    moto.seed().await;
    aws_sdk_iam::Client::new(&moto.sdk().await)
        .create_account_alias()
        .account_alias("acme-corp")
        .send()
        .await
        .unwrap();
    let p = moto.provisioner(&[]).await;
    run(
        &p,
        sqs(&[("m1", &joined("e1", t1(), "alias.user", "sales"), None)]),
    )
    .await;
    let s = snapshot(&moto.sdk().await, "alias.user").await;
    assert_eq!(
        s.secret.unwrap()["signin_url"],
        "https://acme-corp.signin.aws.amazon.com/console"
    );
    assert!(moto.mails()[0]
        .to_string()
        .contains("https://acme-corp.signin.aws.amazon.com/console"));
}

#[tokio::test]
async fn a_batch_of_joiners_leaks_no_credential_anywhere() {
    let moto = Moto::start();
    moto.seed().await;
    let (logs, _g) = Logs::capture();
    let p = moto.provisioner(&[]).await;
    let bodies: Vec<String> = (0..10)
        .map(|i| joined(&format!("e{i}"), t1(), &format!("user{i}"), "engineering"))
        .collect();
    let recs: Vec<(String, &str)> = bodies
        .iter()
        .enumerate()
        .map(|(i, b)| (format!("m{i}"), b.as_str()))
        .collect();
    let recs: Vec<(&str, &str, Option<&str>)> =
        recs.iter().map(|(id, b)| (id.as_str(), *b, None)).collect();
    let resp = run(&p, sqs(&recs)).await;
    assert!(failures(&resp).is_empty());
    let response_text = serde_json::to_string(&resp).unwrap();
    let mails = serde_json::to_string(&moto.mails()).unwrap();
    let text = logs.text();
    let sdk = moto.sdk().await;
    let mut checked = 0;
    for i in 0..10 {
        let s = snapshot(&sdk, &format!("user{i}")).await;
        let secret = s.secret.unwrap();
        for field in ["password", "secret_access_key"] {
            let v = secret[field].as_str().unwrap();
            for (what, hay) in [
                ("logs", &text),
                ("response", &response_text),
                ("mails", &mails),
            ] {
                assert!(!hay.contains(v), "{field} of user{i} found in {what}");
            }
            checked += 1;
        }
    }
    assert_eq!(checked, 20);
    assert_eq!(logs.audits().len(), 10);
}

#[tokio::test]
async fn custom_path_prefix_kms_key_boundary_and_managed_policies_are_used() {
    let moto = Moto::start();
    moto.seed().await;
    let sdk = moto.sdk().await;
    let iam = aws_sdk_iam::Client::new(&sdk);
    let policy = iam
        .create_policy()
        .policy_name("ReadBilling")
        .policy_document(r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"aws-portal:ViewBilling","Resource":"*"}]}"#)
        .send()
        .await
        .unwrap();
    let policy_arn = policy.policy().unwrap().arn().unwrap().to_owned();
    let rules = format!(
        r#"{{"default":{{"groups":["staff"],"console":true,"access_key":true,"managed_policies":["{policy_arn}"]}}}}"#
    );
    let (logs, _g) = Logs::capture();
    let p = moto
        .provisioner(&[
            ("USER_PATH", "/people/hr/"),
            ("SECRET_PREFIX", "iam/users/"),
            ("SECRET_KMS_KEY_ID", "alias/hr-secrets"),
            (
                "PERMISSIONS_BOUNDARY_ARN",
                "arn:aws:iam::123456789012:policy/employee-boundary",
            ),
            ("PROVISIONING_RULES", &rules),
        ])
        .await;
    let resp = run(
        &p,
        sqs(&[("m1", &joined("e1", t1(), "custom.cfg", "finance"), None)]),
    )
    .await;
    assert!(failures(&resp).is_empty(), "{resp:?} {}", logs.text());
    let u = iam.get_user().user_name("custom.cfg").send().await.unwrap();
    assert_eq!(u.user().unwrap().path(), "/people/hr/");
    let attached = iam
        .list_attached_user_policies()
        .user_name("custom.cfg")
        .send()
        .await
        .unwrap();
    assert_eq!(
        attached.attached_policies()[0].policy_arn(),
        Some(policy_arn.as_str())
    );
    let sm = aws_sdk_secretsmanager::Client::new(&sdk);
    let d = sm
        .describe_secret()
        .secret_id("iam/users/custom.cfg")
        .send()
        .await
        .unwrap();
    assert_eq!(d.kms_key_id(), Some("alias/hr-secrets"));
    let tags: Vec<(String, String)> = d
        .tags()
        .iter()
        .map(|t| {
            (
                t.key().unwrap_or_default().to_owned(),
                t.value().unwrap_or_default().to_owned(),
            )
        })
        .collect();
    assert!(tags.contains(&("hr:managed-by".into(), "hr-provisioner".into())));
    assert!(tags.contains(&("hr:employee-id".into(), "E-custom.cfg".into())));
    assert!(acts_contain(
        &logs.audits()[0],
        &format!("AttachUserPolicy:{policy_arn}")
    ));
    // A user at the default path is outside this USER_PATH: refused.
    iam.create_user()
        .user_name("outside.path")
        .path("/employees/")
        .send()
        .await
        .unwrap();
    let resp = run(&p, sqs(&[("m2", &left("e2", t2(), "outside.path"), None)])).await;
    assert_eq!(failures(&resp), ["m2"]);
}

fn acts_contain(audit: &serde_json::Value, action: &str) -> bool {
    actions(audit).iter().any(|a| a == action)
}

/// A login profile whose password no secret holds (made by hand, or by a run that
/// died) is reset to a stored one; a key the secret does not hold is replaced.
#[tokio::test]
async fn unstored_password_is_reset_and_unstored_key_replaced() {
    let moto = Moto::start();
    moto.seed().await;
    let sdk = moto.sdk().await;
    let p = moto.provisioner(&[]).await;
    run(
        &p,
        sqs(&[("m1", &joined("e1", t1(), "drift.user", "engineering"), None)]),
    )
    .await;
    let sm = aws_sdk_secretsmanager::Client::new(&sdk);
    sm.put_secret_value()
        .secret_id("hr-provisioner/drift.user")
        .secret_string(format!(
            r#"{{"user_name":"drift.user","signin_url":"{URL}"}}"#
        ))
        .send()
        .await
        .unwrap();
    let before = moto.live_password("drift.user");
    let (logs, _g) = Logs::capture();
    let resp = run(
        &p,
        sqs(&[("m2", &joined("e2", t2(), "drift.user", "engineering"), None)]),
    )
    .await;
    assert!(failures(&resp).is_empty());
    let acts = actions(&logs.audits()[0]);
    assert!(acts.contains(&"UpdateLoginProfile".to_owned()), "{acts:?}");
    assert!(
        acts.iter().any(|a| a.starts_with("DeleteAccessKey:")),
        "{acts:?}"
    );
    let s = snapshot(&sdk, "drift.user").await;
    let secret = s.secret.unwrap();
    assert!(
        secret.get("password_pending").is_none(),
        "pending flag cleared"
    );
    let live = moto.live_password("drift.user");
    assert_eq!(live.as_deref(), secret["password"].as_str());
    assert_ne!(live, before);
    assert_eq!(
        s.keys,
        [secret["access_key_id"].as_str().unwrap().to_owned()]
    );
}

/// Issue 20: a record handed back untouched (too little time left to start it),
/// and the records of its FIFO group held behind it, are visible again at once;
/// a record that failed for a reason keeps the visibility timeout (its back-off).
#[tokio::test]
async fn records_handed_back_untouched_are_visible_again_at_once() {
    use aws_lambda_events::event::sqs::SqsMessage;
    use aws_sdk_sqs::types::{MessageSystemAttributeName, QueueAttributeName};
    use hr_iam_provisioner::aws::queue::Queue;

    let moto = Moto::start();
    moto.seed().await;
    let sdk = moto.sdk().await;
    let sqs = aws_sdk_sqs::Client::new(&sdk);
    let url = sqs
        .create_queue()
        .queue_name("hr-events.fifo")
        .attributes(QueueAttributeName::FifoQueue, "true")
        .attributes(QueueAttributeName::ContentBasedDeduplication, "true")
        .send()
        .await
        .unwrap()
        .queue_url()
        .unwrap()
        .to_owned();
    let arn = sqs
        .get_queue_attributes()
        .queue_url(&url)
        .attribute_names(QueueAttributeName::QueueArn)
        .send()
        .await
        .unwrap()
        .attributes()
        .and_then(|a| a.get(&QueueAttributeName::QueueArn).cloned())
        .unwrap();
    let bodies = [
        joined("ev-h1", t1(), "hand.back", "engineering"),
        body(
            "changed",
            "ev-h2",
            t2(),
            "E-hand.back",
            "hand.back",
            "sales",
        ),
    ];
    for b in &bodies {
        sqs.send_message()
            .queue_url(&url)
            .message_body(b)
            .message_group_id("E-hand.back")
            .send()
            .await
            .unwrap();
    }
    let receive = |visibility: i32| {
        sqs.receive_message()
            .queue_url(&url)
            .max_number_of_messages(10)
            .visibility_timeout(visibility)
            .message_system_attribute_names(MessageSystemAttributeName::All)
            .send()
    };
    let event_of = |msgs: &[aws_sdk_sqs::types::Message]| {
        let mut ev = aws_lambda_events::event::sqs::SqsEvent::default();
        ev.records = msgs
            .iter()
            .map(|m| {
                let mut r = SqsMessage::default();
                r.message_id = m.message_id().map(str::to_owned);
                r.receipt_handle = m.receipt_handle().map(str::to_owned);
                r.body = m.body().map(str::to_owned);
                r.event_source_arn = Some(arn.clone());
                r.attributes
                    .insert("MessageGroupId".into(), "E-hand.back".into());
                r
            })
            .collect();
        ev
    };
    let got = receive(300).await.unwrap();
    assert_eq!(got.messages().len(), 2);
    let p = moto
        .provisioner(&[])
        .await
        .with_queue(Queue::new(sqs.clone()));
    let (logs, _g) = Logs::capture();
    // A deadline already at hand: nothing can be started.
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_millis(1);
    let resp = p
        .handle_batch(event_of(got.messages()), ARN, deadline)
        .await;
    assert_eq!(failures(&resp).len(), 2, "{resp:?}");
    let text = logs.text();
    assert!(
        text.contains("not started") || text.contains("deadline was reached"),
        "{text}"
    );
    assert!(text.contains("visible again at once"), "{text}");
    assert!(
        !snapshot(&sdk, "hand.back").await.exists,
        "nothing was done"
    );
    // Both are back at once, in order (the FIFO group is no longer held).
    let again = receive(300).await.unwrap();
    let ids = |m: &[aws_sdk_sqs::types::Message]| {
        m.iter()
            .map(|x| x.message_id().unwrap_or_default().to_owned())
            .collect::<Vec<_>>()
    };
    assert_eq!(ids(again.messages()), ids(got.messages()));

    // Delivered with time enough: the joiner is applied, the mover after it too.
    let resp = run(&p, event_of(again.messages())).await;
    assert!(failures(&resp).is_empty(), "{resp:?}");

    // A record that fails for a reason (a mover of a user that does not exist)
    // keeps its visibility timeout.
    sqs.send_message()
        .queue_url(&url)
        .message_body(body(
            "changed",
            "ev-h3",
            t2(),
            "E-no.one",
            "no.one",
            "sales",
        ))
        .message_group_id("E-no.one")
        .send()
        .await
        .unwrap();
    let got = receive(300).await.unwrap();
    assert_eq!(got.messages().len(), 1);
    let resp = run(&p, event_of(got.messages())).await;
    assert_eq!(failures(&resp).len(), 1, "{resp:?}");
    assert!(receive(300).await.unwrap().messages().is_empty());
}
