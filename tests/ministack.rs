//! The same function against ministack, a second emulator that is strict where
//! moto is lenient and AWS is strict: it keeps permissions boundaries, raises
//! DeleteConflict on DeleteUser while anything is attached, and refuses changes to
//! a secret pending deletion. A whole life (joiner, repeated joiner, mover,
//! leaver in delete mode, redriven joiner, rehire) must hold there too.

mod common;

use common::*;

async fn user_exists(iam: &aws_sdk_iam::Client, name: &str) -> bool {
    iam.get_user().user_name(name).send().await.is_ok()
}

async fn groups(iam: &aws_sdk_iam::Client, name: &str) -> Vec<String> {
    let mut g: Vec<String> = iam
        .list_groups_for_user()
        .user_name(name)
        .send()
        .await
        .unwrap()
        .groups()
        .iter()
        .map(|g| g.group_name().to_owned())
        .collect();
    g.sort();
    g
}

async fn secret_tag(sm: &aws_sdk_secretsmanager::Client, name: &str, key: &str) -> Option<String> {
    let d = sm.describe_secret().secret_id(name).send().await.unwrap();
    d.tags()
        .iter()
        .find(|t| t.key() == Some(key))
        .and_then(|t| t.value().map(str::to_owned))
}

fn mail_count(emu: &Moto) -> usize {
    emu.ministack_mails().len()
}

#[tokio::test]
async fn a_whole_life_holds_on_a_stricter_emulator() {
    let emu = Moto::start_ministack();
    emu.seed().await;
    let sdk = emu.sdk().await;
    let iam = aws_sdk_iam::Client::new(&sdk);
    let sm = aws_sdk_secretsmanager::Client::new(&sdk);
    let boundary = create_policy(
        &sdk,
        "employee-boundary",
        r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"*","Resource":"*"}]}"#,
    )
    .await;
    let (logs, _g) = Logs::capture();
    let p = emu
        .provisioner(&[
            ("LEAVER_ACTION", "delete"),
            ("SECRET_RECOVERY_DAYS", "7"),
            ("PERMISSIONS_BOUNDARY_ARN", &boundary),
            ("SIGNIN_URL", URL),
        ])
        .await;
    let u = "life.user";
    let secret = "hr-provisioner/life.user";
    let outcome = |m: &str| {
        logs.audits()
            .into_iter()
            .find(|a| a["message_id"] == m)
            .map(|a| a["outcome"].as_str().unwrap_or_default().to_owned())
    };

    // Joiner: the boundary is kept (moto drops it), the secret is tagged.
    let j = joined("e1", t1(), u, "engineering");
    assert!(
        failures(&run(&p, sqs(&[("m1", &j, None)])).await).is_empty(),
        "{}",
        logs.text()
    );
    let got = iam.get_user().user_name(u).send().await.unwrap();
    assert_eq!(
        got.user()
            .and_then(|u| u.permissions_boundary())
            .and_then(|b| b.permissions_boundary_arn()),
        Some(boundary.as_str())
    );
    assert_eq!(groups(&iam, u).await, ["developers", "staff"]);
    assert_eq!(
        secret_tag(&sm, secret, "hr:status").await.as_deref(),
        Some("active")
    );
    let key = iam.list_access_keys().user_name(u).send().await.unwrap();
    let key_id = key.access_key_metadata()[0]
        .access_key_id()
        .unwrap()
        .to_owned();
    assert_eq!(
        secret_tag(&sm, secret, "hr:access-key-id").await,
        Some(key_id)
    );
    assert_eq!(mail_count(&emu), 1);

    // A repeated joined with a new event id: converges, no second mail.
    let j2 = joined("e2", t1(), u, "engineering");
    assert!(failures(&run(&p, sqs(&[("m2", &j2, None)])).await).is_empty());
    assert_eq!(mail_count(&emu), 1, "no repeated welcome mail");

    // Someone takes the boundary off: the mover puts it back before any grant.
    iam.delete_user_permissions_boundary()
        .user_name(u)
        .send()
        .await
        .unwrap();
    // Mover: engineering to sales.
    let mv = body("changed", "e3", t2(), &format!("E-{u}"), u, "sales");
    assert!(
        failures(&run(&p, sqs(&[("m3", &mv, None)])).await).is_empty(),
        "{}",
        logs.text()
    );
    assert_eq!(groups(&iam, u).await, ["sales"]);
    let got = iam.get_user().user_name(u).send().await.unwrap();
    assert_eq!(
        got.user()
            .and_then(|u| u.permissions_boundary())
            .and_then(|b| b.permissions_boundary_arn()),
        Some(boundary.as_str()),
        "boundary restored"
    );
    let actions: Vec<String> = logs
        .audits()
        .into_iter()
        .find(|a| a["message_id"] == "m3")
        .map(|a| serde_json::from_value(a["actions"].clone()).unwrap())
        .unwrap_or_default();
    let put = actions
        .iter()
        .position(|a| a == "PutUserPermissionsBoundary");
    let grant = actions.iter().position(|a| a == "AddUserToGroup:sales");
    assert!(put.is_some() && put < grant, "{actions:?}");
    assert!(iam
        .list_access_keys()
        .user_name(u)
        .send()
        .await
        .unwrap()
        .access_key_metadata()
        .is_empty());
    assert_eq!(secret_tag(&sm, secret, "hr:access-key-id").await, None);

    // Leaver in delete mode: DeleteUser succeeds only with nothing attached; the
    // tombstone's tags are written before deletion is scheduled.
    let l = left("e4", t3(), u);
    let resp = run(&p, sqs(&[("m4", &l, None)])).await;
    assert!(failures(&resp).is_empty(), "{}", logs.text());
    assert!(!user_exists(&iam, u).await);
    let d = sm.describe_secret().secret_id(secret).send().await.unwrap();
    assert!(d.deleted_date().is_some());
    assert_eq!(
        secret_tag(&sm, secret, "hr:status").await.as_deref(),
        Some("deleted")
    );
    assert_eq!(
        secret_tag(&sm, secret, "hr:last-event-id").await.as_deref(),
        Some("e4")
    );

    // The older joiner redriven: stale through the tombstone, nothing recreated.
    run(&p, sqs(&[("m5", &j, None)])).await;
    assert_eq!(outcome("m5").as_deref(), Some("stale"));
    assert!(!user_exists(&iam, u).await);

    // A rehire, newer than the leaver: the user comes back, the secret is restored.
    let now = time::OffsetDateTime::now_utc()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap();
    let r = joined("e6", &now, u, "engineering");
    assert!(
        failures(&run(&p, sqs(&[("m6", &r, None)])).await).is_empty(),
        "{}",
        logs.text()
    );
    assert!(user_exists(&iam, u).await);
    let d = sm.describe_secret().secret_id(secret).send().await.unwrap();
    assert!(d.deleted_date().is_none());
    assert_eq!(
        secret_tag(&sm, secret, "hr:status").await.as_deref(),
        Some("active")
    );
    assert_eq!(mail_count(&emu), 2);
}
