//! End to end through moto: the front door's real AWS adapter (token secrets in
//! Secrets Manager, SendMessage to a FIFO queue, IAM reads), the queue drained
//! into the provisioner as Lambda's event source mapping would, and IAM checked.

mod common;

use aws_sdk_sqs::types::MessageSystemAttributeName;
use common::{run, snapshot, sqs, Logs, Moto};
use hr_iam_provisioner::event::format_utc;
use hr_iam_provisioner::frontdoor::http::{FrontDoor, Request, Response};
use hr_iam_provisioner::frontdoor::store::{AwsStore, StoreConfig};
use hr_iam_provisioner::frontdoor::webhook::sign;
use hr_iam_provisioner::frontdoor::Settings;
use hr_iam_provisioner::service::Provisioner;
use serde_json::{json, Value};
use time::OffsetDateTime;

const TOKEN: &str = "e2e-scim-token-0123456789abcdef012345";
const OLD_TOKEN: &str = "e2e-scim-token-old-0123456789abcdef01";
const KEY: &str = "e2e-webhook-key-0123456789abcdef01234";

struct Env {
    moto: Moto,
    door: FrontDoor<AwsStore>,
    provisioner: Provisioner,
    queue_url: String,
}

async fn setup() -> Env {
    let moto = Moto::start();
    moto.seed().await;
    let sdk = moto.sdk().await;
    let q = aws_sdk_sqs::Client::new(&sdk)
        .create_queue()
        .queue_name("hr-events.fifo")
        .attributes(aws_sdk_sqs::types::QueueAttributeName::FifoQueue, "true")
        .send()
        .await
        .expect("queue");
    let queue_url = q.queue_url().expect("url").to_owned();
    let sm = aws_sdk_secretsmanager::Client::new(&sdk);
    for (name, value) in [
        ("hr-front-door/webhook", json!({"current": KEY}).to_string()),
        (
            "hr-front-door/scim",
            json!({"current": TOKEN, "previous": OLD_TOKEN}).to_string(),
        ),
    ] {
        sm.create_secret()
            .name(name)
            .secret_string(value)
            .send()
            .await
            .expect("secret");
    }
    let settings = Settings::from_env(|_| None).expect("settings");
    let config = StoreConfig::from_env(
        |k| match k {
            "QUEUE_URL" => Some(queue_url.clone()),
            "WEBHOOK_SECRET_ID" => Some("hr-front-door/webhook".into()),
            "SCIM_TOKEN_SECRET_ID" => Some("hr-front-door/scim".into()),
            _ => None,
        },
        &settings.user_path,
    )
    .expect("store config");
    let door = FrontDoor::new(AwsStore::new(&sdk, config), settings);
    let provisioner = moto.provisioner(&[]).await;
    Env {
        moto,
        door,
        provisioner,
        queue_url,
    }
}

impl Env {
    /// Receives what the queue holds and runs it through the provisioner, as the
    /// event source mapping does; returns the bodies.
    async fn drain(&self) -> Vec<Value> {
        let sdk = self.moto.sdk().await;
        let client = aws_sdk_sqs::Client::new(&sdk);
        let out = client
            .receive_message()
            .queue_url(&self.queue_url)
            .max_number_of_messages(10)
            .message_system_attribute_names(MessageSystemAttributeName::All)
            .send()
            .await
            .expect("receive");
        let msgs = out.messages();
        let records: Vec<(String, String, Option<String>)> = msgs
            .iter()
            .map(|m| {
                (
                    m.message_id().unwrap_or_default().to_owned(),
                    m.body().unwrap_or_default().to_owned(),
                    m.attributes()
                        .and_then(|a| a.get(&MessageSystemAttributeName::MessageGroupId))
                        .cloned(),
                )
            })
            .collect();
        let refs: Vec<(&str, &str, Option<&str>)> = records
            .iter()
            .map(|(i, b, g)| (i.as_str(), b.as_str(), g.as_deref()))
            .collect();
        let resp = run(&self.provisioner, sqs(&refs)).await;
        assert!(
            resp.batch_item_failures.is_empty(),
            "the provisioner applied every record: {resp:?}"
        );
        for m in msgs {
            client
                .delete_message()
                .queue_url(&self.queue_url)
                .receipt_handle(m.receipt_handle().unwrap_or_default())
                .send()
                .await
                .expect("delete");
        }
        records
            .iter()
            .map(|(_, b, _)| serde_json::from_str(b).expect("JSON"))
            .collect()
    }
}

fn scim(method: &str, path: &str, query: &str, body: Option<Value>, at: OffsetDateTime) -> Request {
    Request {
        method: method.into(),
        path: path.into(),
        query: query.into(),
        headers: vec![("authorization".into(), format!("Bearer {TOKEN}"))],
        body: body.map(|b| b.to_string().into_bytes()).unwrap_or_default(),
        time: Some(at),
        request_id: format!("req-{method}"),
        source_ip: "127.0.0.1".into(),
        origin: "https://fd.example".into(),
    }
}

fn json_of(r: &Response) -> Value {
    serde_json::from_str(&r.body).unwrap_or(Value::Null)
}

#[tokio::test(flavor = "current_thread")]
async fn webhook_and_scim_requests_reach_iam_through_the_queue() {
    let (logs, _guard) = Logs::capture();
    let env = setup().await;
    let sdk = env.moto.sdk().await;
    let t0 = OffsetDateTime::now_utc() - time::Duration::minutes(2);

    // 1. A signed webhook joiner.
    let body = json!({
        "event_id": "wh-e2e-1",
        "event_type": "employee.joined",
        "occurred_at": format_utc(t0),
        "employee": {"employee_id": "E-WH", "email": "wh.user@example.com",
                     "first_name": "Webhook", "department": "engineering"}
    })
    .to_string();
    let t = OffsetDateTime::now_utc().unix_timestamp();
    let req = Request {
        method: "POST".into(),
        path: "/events".into(),
        headers: vec![(
            "x-hr-signature".into(),
            format!("t={t},v1={}", sign(KEY.as_bytes(), t, body.as_bytes())),
        )],
        body: body.clone().into_bytes(),
        ..Request::default()
    };
    let r = env.door.handle(&req).await;
    assert_eq!(
        (r.status, json_of(&r)),
        (202, json!({"event_id": "wh-e2e-1"}))
    );
    // A resend within FIFO's 5-minute window is dropped by the queue.
    assert_eq!(env.door.handle(&req).await.status, 202);
    let applied = env.drain().await;
    assert_eq!(
        applied.len(),
        1,
        "one event for the signed request and its resend"
    );
    let s = snapshot(&sdk, "wh.user").await;
    assert!(s.exists);
    assert_eq!(s.groups, ["developers", "staff"]);
    assert_eq!(s.tag("hr:employee-id"), Some("E-WH"));

    // 2. A SCIM create (Entra's shape, with the enterprise extension).
    let create = json!({
        "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User",
                    "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"],
        "externalId": "E-SCIM",
        "userName": "Scim.User",
        "active": true,
        "emails": [{"primary": true, "type": "work", "value": "scim.user@example.com"}],
        "name": {"givenName": "Scim", "familyName": "User"},
        "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User": {"department": "sales", "manager": {"value": "wh.user"}}
    });
    let r = env
        .door
        .handle(&scim(
            "POST",
            "/scim/v2/Users",
            "",
            Some(create),
            t0 + time::Duration::seconds(10),
        ))
        .await;
    assert_eq!(r.status, 201, "{}", r.body);
    assert_eq!(json_of(&r)["id"], "scim.user");
    let applied = env.drain().await;
    assert_eq!(
        applied[0]["employee"]["manager_email"], "wh.user@example.com",
        "manager id -> email from IAM"
    );
    let s = snapshot(&sdk, "scim.user").await;
    assert_eq!(s.groups, ["sales"]);
    assert!(s.login_profile);
    assert_eq!(s.tag("hr:status"), Some("active"));
    assert_eq!(s.tag("hr:manager-email"), Some("wh.user@example.com"));

    // GET answers from IAM's tags.
    let r = env
        .door
        .handle(&scim(
            "GET",
            "/scim/v2/Users",
            "filter=userName%20eq%20%22SCIM.user%22",
            None,
            OffsetDateTime::now_utc(),
        ))
        .await;
    let v = json_of(&r);
    assert_eq!(v["totalResults"], 1, "{}", r.body);
    assert_eq!(v["Resources"][0]["externalId"], "E-SCIM");
    assert_eq!(
        v["Resources"][0]["urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"]
            ["department"],
        "sales"
    );

    // 3. A mover by PATCH (Okta's shape), then Entra's disable with a string boolean.
    let mover = json!({"schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
        "Operations": [{"op": "replace", "value": {"urn:ietf:params:scim:schemas:extension:enterprise:2.0:User": {"department": "engineering"}}}]});
    let r = env
        .door
        .handle(&scim(
            "PATCH",
            "/scim/v2/Users/scim.user",
            "",
            Some(mover),
            t0 + time::Duration::seconds(20),
        ))
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let applied = env.drain().await;
    assert_eq!(applied[0]["event_type"], "employee.changed");
    assert_eq!(
        applied[0]["employee"]["email"], "scim.user@example.com",
        "merged onto IAM's record"
    );
    let s = snapshot(&sdk, "scim.user").await;
    assert_eq!(s.groups, ["developers", "staff"]);
    assert_eq!(s.keys.len(), 1, "engineering's rule issues a key");

    let disable = json!({"schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
        "Operations": [{"op": "Replace", "path": "active", "value": "False"}]});
    let r = env
        .door
        .handle(&scim(
            "PATCH",
            "/scim/v2/Users/scim.user",
            "",
            Some(disable),
            t0 + time::Duration::seconds(30),
        ))
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let applied = env.drain().await;
    assert_eq!(applied[0]["event_type"], "employee.left");
    let s = snapshot(&sdk, "scim.user").await;
    assert_eq!(s.tag("hr:status"), Some("retired"));
    assert!(s.groups.is_empty() && s.keys.is_empty() && !s.login_profile);
    let r = env
        .door
        .handle(&scim(
            "GET",
            "/scim/v2/Users/scim.user",
            "",
            None,
            OffsetDateTime::now_utc(),
        ))
        .await;
    assert_eq!(json_of(&r)["active"], false);

    // A wrong token and a bad signature reach nothing.
    let mut bad = scim("GET", "/scim/v2/Users", "", None, OffsetDateTime::now_utc());
    bad.headers = vec![(
        "authorization".into(),
        "Bearer nope-0123456789abcdef0123456789".into(),
    )];
    assert_eq!(env.door.handle(&bad).await.status, 401);
    let mut forged = req.clone();
    forged.headers = vec![(
        "x-hr-signature".into(),
        format!("t={t},v1={}", "0".repeat(64)),
    )];
    assert_eq!(env.door.handle(&forged).await.status, 401);
    assert!(env.drain().await.is_empty(), "nothing enqueued");

    // One audit line per request, with ids and no other body values.
    let lines: Vec<Value> = logs
        .lines()
        .into_iter()
        .filter(|l| l["front_door"] == json!(true))
        .collect();
    assert_eq!(lines.len(), 9, "{lines:#?}");
    assert_eq!(
        lines.iter().filter(|l| l["outcome"] == "refused").count(),
        2
    );
    let text = serde_json::to_string(&lines).unwrap();
    for value in [
        "Webhook",
        "Scim\"",
        "scim.user@example.com",
        "sales",
        TOKEN,
        KEY,
    ] {
        assert!(!text.contains(value), "{value} in the audit lines");
    }
    assert!(lines.iter().all(|l| l["audit"] == json!(true)));
}
