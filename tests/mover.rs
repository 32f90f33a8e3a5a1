//! Movers (`employee.changed`) against moto: permissions follow the employee.

mod common;

use std::sync::atomic::Ordering;
use std::sync::Arc;

use common::*;

fn changed(event_id: &str, at: &str, user: &str, dept: &str) -> String {
    body("changed", event_id, at, &format!("E-{user}"), user, dept)
}

async fn iam(moto: &Moto) -> aws_sdk_iam::Client {
    aws_sdk_iam::Client::new(&moto.sdk().await)
}

#[tokio::test]
async fn engineering_to_sales_and_back_keeps_hand_grants_and_credentials_in_step() {
    let moto = Moto::start();
    moto.seed().await;
    let (logs, _g) = Logs::capture();
    let p = moto.provisioner(&[]).await;
    let u = "move.user";
    assert!(failures(
        &run(
            &p,
            sqs(&[("m1", &joined("e1", t1(), u, "engineering"), None)])
        )
        .await
    )
    .is_empty());
    iam(&moto)
        .await
        .create_group()
        .group_name("hand-made")
        .send()
        .await
        .unwrap();
    iam(&moto)
        .await
        .add_user_to_group()
        .user_name(u)
        .group_name("hand-made")
        .send()
        .await
        .unwrap();
    let before = snapshot(&moto.sdk().await, u).await;
    assert_eq!(before.keys.len(), 1);

    // To sales: developers go, sales comes, the key is dropped, console stays.
    assert!(
        failures(&run(&p, sqs(&[("m2", &changed("e2", t2(), u, "sales"), None)])).await).is_empty()
    );
    let s = snapshot(&moto.sdk().await, u).await;
    assert_eq!(s.groups, ["hand-made", "sales"]);
    assert!(s.keys.is_empty() && s.login_profile);
    let secret = s.secret.clone().unwrap();
    assert!(secret.get("access_key_id").is_none() && secret.get("secret_access_key").is_none());
    assert_eq!(
        moto.live_password(u).as_deref(),
        secret["password"].as_str()
    );
    assert_eq!(s.tag("hr:department"), Some("sales"));
    assert_eq!(s.tag("hr:last-event-id"), Some("e2"));
    assert_eq!(
        moto.mails().len(),
        1,
        "no mail for a move that keeps console access"
    );
    let a = audit_of(&logs, "m2");
    let actions = a["actions"].to_string();
    for want in [
        "AddUserToGroup:sales",
        "RemoveUserFromGroup:developers",
        "RemoveUserFromGroup:staff",
        "DeleteAccessKey",
    ] {
        assert!(actions.contains(want), "{want}: {actions}");
    }
    assert!(!actions.contains("hand-made"));

    // Back to engineering: a new key, created and stored.
    assert!(failures(
        &run(
            &p,
            sqs(&[("m3", &changed("e3", t3(), u, "engineering"), None)])
        )
        .await
    )
    .is_empty());
    let s = snapshot(&moto.sdk().await, u).await;
    assert_eq!(s.groups, ["developers", "hand-made", "staff"]);
    let secret = s.secret.clone().unwrap();
    assert_eq!(
        s.keys,
        [secret["access_key_id"].as_str().unwrap().to_owned()]
    );
    assert_ne!(s.keys, before.keys);
    // Redelivered: unchanged. Older: stale.
    logs.clear();
    run(
        &p,
        sqs(&[("m4", &changed("e3", t3(), u, "engineering"), None)]),
    )
    .await;
    assert_eq!(audit_of(&logs, "m4")["outcome"], "unchanged");
    run(&p, sqs(&[("m5", &changed("e2", t2(), u, "sales"), None)])).await;
    assert_eq!(audit_of(&logs, "m5")["outcome"], "stale");
}

#[tokio::test]
async fn console_added_by_a_move_gets_a_password_and_one_mail() {
    let moto = Moto::start();
    moto.seed().await;
    let rules = r#"{"default":{"groups":["staff"],"console":true},
        "departments":{"robots":{"groups":["developers"],"console":false,"access_key":true},
                       "sales":{"groups":["sales"],"console":true}}}"#;
    let p = moto.provisioner(&[("PROVISIONING_RULES", rules)]).await;
    let u = "robot.user";
    assert!(
        failures(&run(&p, sqs(&[("m1", &joined("e1", t1(), u, "robots"), None)])).await).is_empty()
    );
    let s = snapshot(&moto.sdk().await, u).await;
    assert!(!s.login_profile && s.keys.len() == 1);
    assert_eq!(moto.mails().len(), 1, "the creation's mail");
    assert!(
        failures(&run(&p, sqs(&[("m2", &changed("e2", t2(), u, "sales"), None)])).await).is_empty()
    );
    let s = snapshot(&moto.sdk().await, u).await;
    assert!(s.login_profile && s.keys.is_empty());
    let secret = s.secret.unwrap();
    assert_eq!(
        moto.live_password(u).as_deref(),
        secret["password"].as_str()
    );
    assert_eq!(
        moto.mails().len(),
        2,
        "console access is new: one more mail"
    );
    // And dropped again: the profile and the stored password go.
    assert!(
        failures(&run(&p, sqs(&[("m3", &changed("e3", t3(), u, "robots"), None)])).await)
            .is_empty()
    );
    let s = snapshot(&moto.sdk().await, u).await;
    assert!(!s.login_profile);
    assert!(s.secret.unwrap().get("password").is_none());
    assert_eq!(moto.mails().len(), 2);
}

#[tokio::test]
async fn changed_for_a_missing_or_retired_user() {
    let moto = Moto::start();
    moto.seed().await;
    let (logs, _g) = Logs::capture();
    let p = moto.provisioner(&[]).await;
    let resp = run(
        &p,
        sqs(&[("m1", &changed("e1", t1(), "ghost", "sales"), None)]),
    )
    .await;
    assert_eq!(
        failures(&resp),
        ["m1"],
        "its joiner may still come: retried"
    );
    assert_eq!(audit_of(&logs, "m1")["outcome"], "failed");
    let u = "gone.user";
    run(&p, sqs(&[("m2", &joined("e2", t1(), u, "sales"), None)])).await;
    run(&p, sqs(&[("m3", &left("e3", t2(), u), None)])).await;
    let resp = run(
        &p,
        sqs(&[("m4", &changed("e4", t3(), u, "engineering"), None)]),
    )
    .await;
    assert!(failures(&resp).is_empty());
    assert_eq!(audit_of(&logs, "m4")["outcome"], "unchanged");
    let s = snapshot(&moto.sdk().await, u).await;
    assert!(s.groups.is_empty() && s.tag("hr:status") == Some("retired"));
}

#[tokio::test]
async fn a_mover_found_only_through_its_secret_keeps_its_user_name() {
    let moto = Moto::start();
    moto.seed().await;
    let (logs, _g) = Logs::capture();
    let p = moto.provisioner(&[]).await;
    let j = body("joined", "e1", t1(), "E-5", "old.name", "engineering");
    run(&p, sqs(&[("m1", &j, None)])).await;
    let c = body("changed", "e2", t2(), "E-5", "new.name", "sales");
    assert!(failures(&run(&p, sqs(&[("m2", &c, None)])).await).is_empty());
    assert_eq!(audit_of(&logs, "m2")["user_name"], "old.name");
    let s = snapshot(&moto.sdk().await, "old.name").await;
    assert_eq!(s.groups, ["sales"]);
    assert!(
        !snapshot(&moto.sdk().await, "new.name").await.exists,
        "never renamed"
    );
}

#[tokio::test]
async fn permissions_are_copied_from_a_marked_template_only() {
    let moto = Moto::start();
    moto.seed().await;
    let iam = iam(&moto).await;
    iam.create_user()
        .user_name("tpl-eng")
        .path("/templates/")
        .send()
        .await
        .unwrap();
    iam.add_user_to_group()
        .user_name("tpl-eng")
        .group_name("developers")
        .send()
        .await
        .unwrap();
    let ro = create_policy(
        &moto.sdk().await,
        "eng-read",
        r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"s3:ListAllMyBuckets","Resource":"*"}]}"#,
    )
    .await;
    iam.attach_user_policy()
        .user_name("tpl-eng")
        .policy_arn(&ro)
        .send()
        .await
        .unwrap();
    iam.create_user()
        .user_name("not-a-template")
        .path("/employees/")
        .send()
        .await
        .unwrap();
    let rules = r#"{"default":{"groups":["staff"],"console":true},
        "departments":{"engineering":{"groups":["staff"],"console":true,"copy_from":"tpl-eng"},
                       "sales":{"groups":["sales"],"console":true}}}"#;
    let (logs, _g) = Logs::capture();
    let p = moto.provisioner(&[("PROVISIONING_RULES", rules)]).await;
    assert!(failures(
        &run(
            &p,
            sqs(&[("m1", &joined("e1", t1(), "tpl.user", "engineering"), None)])
        )
        .await
    )
    .is_empty());
    let s = snapshot(&moto.sdk().await, "tpl.user").await;
    assert_eq!(s.groups, ["developers", "staff"]);
    assert_eq!(s.policies, std::slice::from_ref(&ro));
    // Moving away removes what the template granted.
    run(
        &p,
        sqs(&[("m2", &changed("e2", t2(), "tpl.user", "sales"), None)]),
    )
    .await;
    let s = snapshot(&moto.sdk().await, "tpl.user").await;
    assert_eq!(s.groups, ["sales"]);
    assert!(s.policies.is_empty());

    // A user that is not under TEMPLATE_PATH is refused with a clear reason.
    let bad = r#"{"default":{"groups":[],"console":true,"copy_from":"not-a-template"}}"#;
    let p = moto.provisioner(&[("PROVISIONING_RULES", bad)]).await;
    let resp = run(
        &p,
        sqs(&[("m3", &joined("e3", t1(), "tpl.two", "x"), None)]),
    )
    .await;
    assert_eq!(failures(&resp), ["m3"]);
    let a = audit_of(&logs, "m3");
    assert_eq!(a["outcome"], "rejected");
    assert!(
        a["reason"].as_str().unwrap().contains("TEMPLATE_PATH"),
        "{a}"
    );
    assert!(!snapshot(&moto.sdk().await, "tpl.two").await.exists);
}

#[tokio::test]
async fn a_crash_after_every_change_of_a_mover_then_redelivery_converges() {
    let moto = Moto::start();
    let u = "crash.mover";
    let mv = changed("e2", t2(), u, "sales");
    let mut k = 1;
    loop {
        moto.reset();
        moto.seed().await;
        let p = moto.provisioner(&[]).await;
        run(
            &p,
            sqs(&[("m1", &joined("e1", t1(), u, "engineering"), None)]),
        )
        .await;
        let faults = Arc::new(CrashAfter::new(k));
        let crashing = moto.provisioner(&[]).await.with_faults(faults.clone());
        let resp = run(&crashing, sqs(&[("m2", &mv, None)])).await;
        let changes = faults.seen.load(Ordering::SeqCst);
        if changes < k {
            assert!(failures(&resp).is_empty());
            assert!(
                k > 5,
                "a move from engineering to sales makes several changes: k={k}"
            );
            break;
        }
        assert_eq!(failures(&resp), ["m2"], "k={k}");
        let fresh = moto.provisioner(&[]).await;
        assert!(
            failures(&run(&fresh, sqs(&[("m2", &mv, None)])).await).is_empty(),
            "k={k}"
        );
        let s = snapshot(&moto.sdk().await, u).await;
        let secret = s.secret.clone().unwrap();
        assert_eq!(s.groups, ["sales"], "k={k}");
        assert!(s.keys.is_empty(), "k={k}: the dropped key is gone");
        assert!(secret.get("access_key_id").is_none(), "k={k}");
        assert_eq!(
            moto.live_password(u).as_deref(),
            secret["password"].as_str(),
            "k={k}"
        );
        assert_eq!(moto.mails().len(), 1, "k={k}: no mail for a move");
        k += 1;
    }
}
