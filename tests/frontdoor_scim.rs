//! The front door's routing, webhook and SCIM answers against an in-memory store
//! (no network): the requests Okta and Entra document (tests/fixtures/scim), the
//! signature rules, the error objects, and that nothing is enqueued on any error.
//! The same flows through moto SQS and the real provisioner: tests/frontdoor_e2e.rs.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;

use hr_iam_provisioner::event::{format_utc, parse_body, EventType};
use hr_iam_provisioner::frontdoor::http::{FrontDoor, Request, Response};
use hr_iam_provisioner::frontdoor::scim::Held;
use hr_iam_provisioner::frontdoor::webhook::sign;
use hr_iam_provisioner::frontdoor::{Settings, Store, StoreError};
use hr_iam_provisioner::password::Secret;
use serde_json::{json, Value};
use time::OffsetDateTime;

const TOKEN: &str = "scim-token-0123456789abcdef0123456789";
const OLD_TOKEN: &str = "scim-token-previous-0123456789abcdef01";
const KEY: &str = "webhook-key-0123456789abcdef0123456789";
const OLD_KEY: &str = "webhook-key-previous-0123456789abcdef";

#[derive(Default)]
struct Mem {
    users: Mutex<BTreeMap<String, Held>>,
    /// (body, group, deduplication id)
    sent: Mutex<Vec<(String, String, String)>>,
    queue_down: AtomicBool,
}

impl Store for Mem {
    async fn webhook_keys(&self) -> Result<Vec<Secret>, StoreError> {
        Ok(vec![Secret::new(KEY.into()), Secret::new(OLD_KEY.into())])
    }
    async fn scim_tokens(&self) -> Result<Vec<Secret>, StoreError> {
        Ok(vec![
            Secret::new(TOKEN.into()),
            Secret::new(OLD_TOKEN.into()),
        ])
    }
    async fn send(&self, body: &str, group: &str, dedup_id: &str) -> Result<(), StoreError> {
        if self.queue_down.load(Ordering::Relaxed) {
            return Err(StoreError {
                op: "SendMessage",
                detail: "ServiceUnavailable".into(),
            });
        }
        self.sent
            .lock()
            .unwrap()
            .push((body.into(), group.into(), dedup_id.into()));
        Ok(())
    }
    async fn user(&self, name: &str) -> Result<Option<Held>, StoreError> {
        Ok(self.users.lock().unwrap().get(name).cloned())
    }
    async fn user_names(&self) -> Result<Vec<String>, StoreError> {
        Ok(self.users.lock().unwrap().keys().cloned().collect())
    }
}

impl Mem {
    fn sent(&self) -> Vec<(String, String, String)> {
        self.sent.lock().unwrap().clone()
    }
    /// What the provisioner would leave in IAM tags after the last event sent.
    fn apply_last(&self) {
        let (body, _, _) = self.sent().last().cloned().expect("an event was sent");
        let ev = parse_body(&body).expect("valid event");
        let mut users = self.users.lock().unwrap();
        let h = users.entry(ev.user_name.clone()).or_insert_with(|| Held {
            user_name: ev.user_name.clone(),
            tags: BTreeMap::new(),
            created: Some("2026-12-01T00:00:00Z".into()),
        });
        let e = &ev.employee;
        let status = if ev.event_type == EventType::Left {
            "retired"
        } else {
            "active"
        };
        for (k, v) in [
            ("hr:employee-id", Some(e.employee_id.clone())),
            ("hr:managed-by", Some("hr-provisioner".into())),
            ("hr:status", Some(status.into())),
            ("hr:email", e.email.clone()),
            ("hr:department", e.department.clone()),
            ("hr:manager-email", e.manager_email.clone()),
            ("hr:last-event-id", Some(ev.event_id.clone())),
            ("hr:last-event-at", Some(ev.occurred_at_tag())),
        ] {
            match v {
                Some(v) => h.tags.insert(k.into(), v),
                None => h.tags.remove(k),
            };
        }
    }
}

fn now() -> OffsetDateTime {
    OffsetDateTime::now_utc()
}

fn door() -> FrontDoor<Mem> {
    FrontDoor::new(
        Mem::default(),
        Settings {
            user_path: "/employees/".into(),
            max_event_age_days: 14,
        },
    )
}

fn scim_req(method: &str, path: &str, query: &str, body: Option<&Value>) -> Request {
    Request {
        method: method.into(),
        path: path.into(),
        query: query.into(),
        headers: vec![("authorization".into(), format!("Bearer {TOKEN}"))],
        body: body.map(|b| b.to_string().into_bytes()).unwrap_or_default(),
        time: Some(now()),
        request_id: "req-1".into(),
        source_ip: "192.0.2.10".into(),
        origin: "https://fd.example".into(),
    }
}

fn json_of(r: &Response) -> Value {
    serde_json::from_str(&r.body).unwrap_or(Value::Null)
}

/// A fixture's request, with `{id}` and `{manager}` substituted.
fn fixture(name: &str, id: &str, manager: &str) -> Request {
    let path = format!("{}/tests/fixtures/scim/{name}", env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    let text = text.replace("{id}", id).replace("{manager}", manager);
    let v: Value = serde_json::from_str(&text).expect("fixture JSON");
    assert!(
        v["source"]
            .as_str()
            .is_some_and(|s| s.starts_with("https://")),
        "{name} names its source"
    );
    let r = &v["request"];
    scim_req(
        r["method"].as_str().unwrap(),
        r["path"].as_str().unwrap(),
        r["query"].as_str().unwrap_or(""),
        r.get("body"),
    )
}

fn last_event(d: &FrontDoor<Mem>) -> hr_iam_provisioner::event::HrEvent {
    let (body, group, dedup) = d.store.sent().last().cloned().expect("sent");
    let ev = parse_body(&body).expect("the provisioner accepts it");
    assert_eq!(group, ev.employee.employee_id, "group = employee_id");
    assert_eq!(dedup, ev.event_id, "deduplication id = event_id");
    ev
}

#[tokio::test]
async fn okta_documented_requests_drive_joiner_mover_leaver_rehire() {
    let d = door();
    let id = "test.user@okta.local";
    // Okta asks first: nobody yet.
    let r = d
        .handle(&fixture("okta-01-filter-username.json", id, ""))
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(json_of(&r)["totalResults"], 0);
    assert_eq!(
        json_of(&r)["schemas"][0],
        "urn:ietf:params:scim:api:messages:2.0:ListResponse"
    );

    let r = d.handle(&fixture("okta-02-create-user.json", id, "")).await;
    assert_eq!(r.status, 201, "{}", r.body);
    let created = json_of(&r);
    assert_eq!(created["id"], id, "the id is the IAM user name");
    assert_eq!(created["externalId"], "00ujl29u0le5T6Aj10h7");
    assert!(r
        .headers
        .iter()
        .any(|(k, v)| k == "location" && v.ends_with("/scim/v2/Users/test.user@okta.local")));
    assert!(!r.body.contains("1mz050nq"), "the password is never echoed");
    let ev = last_event(&d);
    assert_eq!(ev.event_type, EventType::Joined);
    assert_eq!(ev.user_name, id);
    assert_eq!(ev.employee.employee_id, "00ujl29u0le5T6Aj10h7");
    assert_eq!(ev.employee.email.as_deref(), Some("test.user@okta.local"));
    assert_eq!(ev.employee.first_name.as_deref(), Some("Test"));
    assert_eq!(ev.employee.last_name.as_deref(), Some("User"));
    assert!(
        !d.store.sent()[0].0.contains("1mz050nq"),
        "the password never reaches the queue"
    );
    d.store.apply_last();

    for f in ["okta-01-filter-username.json", "okta-04-list-users.json"] {
        let r = d.handle(&fixture(f, id, "")).await;
        let v = json_of(&r);
        assert_eq!(
            (r.status, v["totalResults"].clone()),
            (200, json!(1)),
            "{f}: {}",
            r.body
        );
        assert_eq!(v["Resources"][0]["userName"], id, "{f}");
        assert_eq!(v["Resources"][0]["active"], true, "{f}");
    }
    let r = d.handle(&fixture("okta-03-get-user.json", id, "")).await;
    assert_eq!(r.status, 200);
    assert_eq!(json_of(&r)["emails"][0]["value"], "test.user@okta.local");

    let r = d
        .handle(&fixture("okta-05-replace-user.json", id, ""))
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let ev = last_event(&d);
    assert_eq!(ev.event_type, EventType::Changed);
    assert_eq!(ev.employee.first_name.as_deref(), Some("Another"));
    assert_eq!(
        ev.employee.employee_id, "00ujl29u0le5T6Aj10h7",
        "kept from IAM"
    );
    d.store.apply_last();

    let r = d.handle(&fixture("okta-06-deactivate.json", id, "")).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(json_of(&r)["active"], false);
    assert_eq!(last_event(&d).event_type, EventType::Left);
    d.store.apply_last();
    let r = d.handle(&fixture("okta-03-get-user.json", id, "")).await;
    assert_eq!(json_of(&r)["active"], false, "GET shows what IAM holds");

    let r = d.handle(&fixture("okta-07-reactivate.json", id, "")).await;
    assert_eq!(r.status, 200, "{}", r.body);
    let ev = last_event(&d);
    assert_eq!(ev.event_type, EventType::Joined, "reactivating is a rehire");
    assert_eq!(
        ev.employee.email.as_deref(),
        Some("test.user@okta.local"),
        "email from IAM"
    );
    assert_eq!(d.store.sent().len(), 4);
}

#[tokio::test]
async fn entra_documented_requests() {
    let d = door();
    let id = "test_user_ab6490ee-1e48-479e-a20b-2d77186b5dd1";
    let r = d
        .handle(&fixture(
            "entra-04-get-user-by-query-zero-results.json",
            id,
            "",
        ))
        .await;
    assert_eq!(
        (r.status, json_of(&r)["totalResults"].clone()),
        (200, json!(0))
    );

    let r = d
        .handle(&fixture("entra-01-create-user.json", id, ""))
        .await;
    assert_eq!(r.status, 201, "{}", r.body);
    assert_eq!(json_of(&r)["id"], id, "userName lower-cased (section 1)");
    let ev = last_event(&d);
    assert_eq!(
        ev.employee.employee_id,
        "0a21f0f2-8d2a-4f8e-bf98-7363c4aed4ef"
    );
    assert_eq!(
        ev.employee.email.as_deref(),
        Some("Test_User_fd0ea19b-0777-472c-9f96-4f70d2226f2e@testuser.com")
    );
    d.store.apply_last();

    // A second managed user, the manager of the first.
    let mut boss = d.store.users.lock().unwrap().get(id).cloned().unwrap();
    boss.user_name = "boss".into();
    boss.tags.insert("hr:employee-id".into(), "E-BOSS".into());
    boss.tags
        .insert("hr:email".into(), "boss@example.com".into());
    d.store.users.lock().unwrap().insert("boss".into(), boss);

    for f in ["entra-02-get-user.json", "entra-03-get-user-by-query.json"] {
        let r = d.handle(&fixture(f, id, "boss")).await;
        assert_eq!(r.status, 200, "{f}: {}", r.body);
        let v = json_of(&r);
        let user = if v["Resources"].is_array() {
            v["Resources"][0].clone()
        } else {
            v
        };
        assert_eq!(
            user["externalId"], "0a21f0f2-8d2a-4f8e-bf98-7363c4aed4ef",
            "{f}"
        );
    }

    let r = d
        .handle(&fixture("entra-05-update-multi-valued.json", id, "boss"))
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let ev = last_event(&d);
    assert_eq!(ev.event_type, EventType::Changed);
    assert_eq!(
        ev.employee.email.as_deref(),
        Some("updatedEmail@microsoft.com")
    );
    assert_eq!(ev.employee.last_name.as_deref(), Some("updatedFamilyName"));
    d.store.apply_last();

    let before = d.store.sent().len();
    let r = d
        .handle(&fixture("entra-06-update-single-valued.json", id, "boss"))
        .await;
    assert_eq!(r.status, 400);
    assert_eq!(json_of(&r)["scimType"], "mutability");
    assert_eq!(json_of(&r)["status"], "400");
    assert_eq!(d.store.sent().len(), before, "nothing enqueued");

    let r = d
        .handle(&fixture("entra-09-add-manager.json", id, "boss"))
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(
        last_event(&d).employee.manager_email.as_deref(),
        Some("boss@example.com"),
        "the manager's id resolves to its email"
    );
    d.store.apply_last();

    for f in [
        "entra-07-disable-user.json",
        "entra-08-disable-user-string-boolean.json",
    ] {
        let r = d.handle(&fixture(f, id, "boss")).await;
        assert_eq!(r.status, 200, "{f}: {}", r.body);
        assert_eq!(last_event(&d).event_type, EventType::Left, "{f}");
    }
    // The two disables, against the same IAM state, are one event (a retry).
    let sent = d.store.sent();
    assert_ne!(
        sent[sent.len() - 1].2,
        sent[sent.len() - 2].2,
        "different bodies are different requests"
    );

    let r = d
        .handle(&fixture("entra-10-delete-user.json", id, "boss"))
        .await;
    assert_eq!((r.status, r.body.as_str()), (204, ""));
    assert_eq!(last_event(&d).event_type, EventType::Left);
}

#[tokio::test]
async fn a_retried_scim_request_is_one_event_until_iam_moves_on() {
    let d = door();
    let id = "test.user@okta.local";
    d.handle(&fixture("okta-02-create-user.json", id, "")).await;
    d.store.apply_last();
    let deactivate = fixture("okta-06-deactivate.json", id, "");
    let mut later = deactivate.clone();
    later.time = Some(now() + time::Duration::seconds(30));
    d.handle(&deactivate).await;
    d.handle(&later).await;
    let sent = d.store.sent();
    assert_eq!(
        sent[1].2, sent[2].2,
        "same request, same IAM state: one event id"
    );
    d.store.apply_last();
    d.handle(&fixture("okta-07-reactivate.json", id, "")).await;
    d.store.apply_last();
    d.handle(&deactivate).await;
    let sent = d.store.sent();
    assert_ne!(
        sent[4].2, sent[1].2,
        "the same request after other changes is a new event"
    );
}

#[tokio::test]
async fn scim_auth_with_either_token_during_a_rotation() {
    let d = door();
    for (auth, status) in [
        (None, 401),
        (
            Some("Bearer wrong-token-0123456789abcdef0123".to_owned()),
            401,
        ),
        (Some(format!("Basic {TOKEN}")), 401),
        (Some(format!("Bearer {TOKEN}")), 200),
        (Some(format!("bearer {OLD_TOKEN}")), 200),
    ] {
        let mut r = scim_req("GET", "/scim/v2/Users", "", None);
        r.headers = auth
            .iter()
            .map(|a| ("authorization".to_owned(), a.clone()))
            .collect();
        let resp = d.handle(&r).await;
        assert_eq!(resp.status, status, "{auth:?}");
        if status == 401 {
            let v = json_of(&resp);
            assert_eq!(
                v["schemas"][0],
                "urn:ietf:params:scim:api:messages:2.0:Error"
            );
            assert_eq!(v["status"], "401");
            assert!(resp.headers.iter().any(|(k, _)| k == "www-authenticate"));
            assert!(!resp.body.contains(TOKEN));
        }
    }
    assert!(d.store.sent().is_empty());
}

#[tokio::test]
async fn scim_errors_and_refusals() {
    let d = door();
    let create = |body: Value| scim_req("POST", "/scim/v2/Users", "", Some(&body));
    let user =
        json!({"userName": "a.b", "externalId": "E1", "emails": [{"value": "a.b@example.com"}]});
    // (request, status, scimType)
    let cases: Vec<(Request, u16, Option<&str>)> = vec![
        (
            scim_req("GET", "/scim/v2/Users/nobody", "", None),
            404,
            None,
        ),
        (
            scim_req(
                "PATCH",
                "/scim/v2/Users/nobody",
                "",
                Some(
                    &json!({"schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"], "Operations": [{"op": "replace", "value": {"active": false}}]}),
                ),
            ),
            404,
            None,
        ),
        (
            scim_req("DELETE", "/scim/v2/Users/nobody", "", None),
            404,
            None,
        ),
        (
            scim_req(
                "GET",
                "/scim/v2/Users",
                "filter=displayName%20eq%20%22x%22",
                None,
            ),
            400,
            Some("invalidFilter"),
        ),
        (
            scim_req(
                "GET",
                "/scim/v2/Users",
                "filter=userName%20sw%20%22a%22",
                None,
            ),
            400,
            Some("invalidFilter"),
        ),
        (
            scim_req("GET", "/scim/v2/Users", "count=many", None),
            400,
            Some("invalidValue"),
        ),
        (
            create(json!({"externalId": "E1"})),
            400,
            Some("invalidValue"),
        ),
        (
            create(json!({"userName": "a.b", "emails": [{"value": "a.b@example.com"}]})),
            400,
            Some("invalidValue"),
        ),
        (
            create(
                json!({"userName": "a,b", "externalId": "E1", "emails": [{"value": "a@example.com"}]}),
            ),
            400,
            Some("invalidValue"),
        ),
        (
            create(json!({"userName": "a.b", "externalId": "E1"})),
            400,
            Some("invalidValue"),
        ),
        (
            create(
                json!({"userName": "a.b", "externalId": "E 1", "emails": [{"value": "a.b@example.com"}]}),
            ),
            400,
            Some("invalidValue"),
        ),
        (
            create(
                json!({"userName": "a.b", "externalId": "E1", "active": false, "emails": [{"value": "a.b@example.com"}]}),
            ),
            400,
            Some("invalidValue"),
        ),
        (
            create(
                json!({"userName": "a.b", "externalId": "E1", "name": {"givenName": "A\u{202e}b"}, "emails": [{"value": "a.b@example.com"}]}),
            ),
            400,
            Some("invalidValue"),
        ),
        (
            scim_req("POST", "/scim/v2/Users", "", None),
            400,
            Some("invalidSyntax"),
        ),
        (scim_req("GET", "/scim/v2/Groups", "", None), 404, None),
        (scim_req("POST", "/scim/v2/Bulk", "", None), 501, None),
        (scim_req("GET", "/scim/v2/Nope", "", None), 404, None),
        (
            scim_req("GET", "/scim/v2/Schemas/urn:nope", "", None),
            404,
            None,
        ),
        (
            scim_req("POST", "/scim/v2/ServiceProviderConfig", "", None),
            405,
            None,
        ),
        (scim_req("DELETE", "/scim/v2/Schemas", "", None), 405, None),
        (
            {
                let mut r = create(user.clone());
                r.body = vec![b' '; 64 * 1024 + 1];
                r
            },
            413,
            None,
        ),
    ];
    for (req, status, scim_type) in cases {
        let r = d.handle(&req).await;
        let v = json_of(&r);
        assert_eq!(
            r.status, status,
            "{} {} {}: {}",
            req.method, req.path, req.query, r.body
        );
        assert_eq!(
            v["schemas"][0], "urn:ietf:params:scim:api:messages:2.0:Error",
            "{}",
            r.body
        );
        assert_eq!(v["status"], status.to_string());
        assert_eq!(v["scimType"].as_str(), scim_type, "{}", r.body);
        assert!(r
            .headers
            .iter()
            .any(|(k, v)| k == "content-type" && v == "application/scim+json"));
    }
    assert!(d.store.sent().is_empty(), "nothing enqueued on any error");

    // A taken userName: 409 uniqueness, nothing sent.
    assert_eq!(d.handle(&create(user.clone())).await.status, 201);
    d.store.apply_last();
    let r = d.handle(&create(user)).await;
    assert_eq!(
        (r.status, json_of(&r)["scimType"].clone()),
        (409, json!("uniqueness"))
    );
    assert_eq!(d.store.sent().len(), 1);
    // The queue down: 503, the provider retries.
    d.store.queue_down.store(true, Ordering::Relaxed);
    let r = d
        .handle(&scim_req("DELETE", "/scim/v2/Users/a.b", "", None))
        .await;
    assert_eq!(r.status, 503);
}

#[tokio::test]
async fn discovery_endpoints() {
    let d = door();
    let r = d
        .handle(&scim_req("GET", "/scim/v2/ServiceProviderConfig", "", None))
        .await;
    let v = json_of(&r);
    assert_eq!(r.status, 200);
    assert_eq!(v["patch"]["supported"], true);
    assert_eq!(v["bulk"]["supported"], false);
    assert_eq!(v["filter"]["maxResults"], 100);
    assert_eq!(v["authenticationSchemes"][0]["type"], "oauthbearertoken");
    let v = json_of(
        &d.handle(&scim_req("GET", "/scim/v2/ResourceTypes", "", None))
            .await,
    );
    assert_eq!(v["Resources"][0]["endpoint"], "/Users");
    let v = json_of(
        &d.handle(&scim_req("GET", "/scim/v2/Schemas", "", None))
            .await,
    );
    assert_eq!(v["totalResults"], 2);
    let r = d
        .handle(&scim_req(
            "GET",
            "/scim/v2/Schemas/urn:ietf:params:scim:schemas:core:2.0:User",
            "",
            None,
        ))
        .await;
    assert_eq!(json_of(&r)["name"], "User");
}

#[tokio::test]
async fn list_paging_and_external_id_filter() {
    let d = door();
    for i in 0..5 {
        let body = json!({"userName": format!("u{i}"), "externalId": format!("E{i}"),
                          "emails": [{"value": format!("u{i}@example.com"), "primary": true}]});
        assert_eq!(
            d.handle(&scim_req("POST", "/scim/v2/Users", "", Some(&body)))
                .await
                .status,
            201
        );
        d.store.apply_last();
    }
    // An unmanaged user under the path is counted (one ListUsers pass counts
    // names) but never shown.
    d.store.users.lock().unwrap().insert(
        "foreign".into(),
        Held {
            user_name: "foreign".into(),
            ..Held::default()
        },
    );
    let v = json_of(
        &d.handle(&scim_req(
            "GET",
            "/scim/v2/Users",
            "startIndex=2&count=2",
            None,
        ))
        .await,
    );
    assert_eq!(
        (
            v["totalResults"].clone(),
            v["startIndex"].clone(),
            v["itemsPerPage"].clone()
        ),
        (json!(6), json!(2), json!(2))
    );
    assert_eq!(
        v["Resources"][0]["id"], "u0",
        "names sorted: foreign, u0, u1, ..."
    );
    let v = json_of(
        &d.handle(&scim_req(
            "GET",
            "/scim/v2/Users",
            "startIndex=1&count=2",
            None,
        ))
        .await,
    );
    let ids: Vec<&str> = v["Resources"]
        .as_array()
        .map(|r| r.iter().filter_map(|u| u["id"].as_str()).collect())
        .unwrap_or_default();
    assert_eq!(ids, ["u0"], "the unmanaged user is not shown");
    let v = json_of(
        &d.handle(&scim_req("GET", "/scim/v2/Users", "count=0", None))
            .await,
    );
    assert_eq!(
        (
            v["totalResults"].clone(),
            v["Resources"].as_array().map(Vec::len)
        ),
        (json!(6), Some(0))
    );
    let v = json_of(
        &d.handle(&scim_req(
            "GET",
            "/scim/v2/Users",
            "filter=externalId+eq+%22E3%22",
            None,
        ))
        .await,
    );
    assert_eq!(
        (v["totalResults"].clone(), v["Resources"][0]["id"].clone()),
        (json!(1), json!("u3"))
    );
    let v = json_of(
        &d.handle(&scim_req(
            "GET",
            "/scim/v2/Users",
            "filter=userName%20eq%20%22U2%22",
            None,
        ))
        .await,
    );
    assert_eq!(
        v["Resources"][0]["id"], "u2",
        "userName matches case-insensitively"
    );
}

// ---- the signed webhook ----

fn event_json(event_id: &str, at: OffsetDateTime) -> String {
    json!({
        "event_id": event_id,
        "event_type": "employee.joined",
        "occurred_at": format_utc(at),
        "employee": {"employee_id": "E9", "email": "wh.user@example.com", "department": "sales"}
    })
    .to_string()
}

fn webhook(body: &str, sig: Option<String>) -> Request {
    Request {
        method: "POST".into(),
        path: "/events".into(),
        headers: sig
            .map(|s| vec![("x-hr-signature".to_owned(), s)])
            .unwrap_or_default(),
        body: body.as_bytes().to_vec(),
        time: Some(now()),
        request_id: "req-w".into(),
        source_ip: "198.51.100.7".into(),
        ..Request::default()
    }
}

fn signed(key: &str, t: i64, body: &str) -> Option<String> {
    Some(format!(
        "t={t},v1={}",
        sign(key.as_bytes(), t, body.as_bytes())
    ))
}

#[tokio::test]
async fn webhook_accepts_a_signed_event_after_it_is_enqueued() {
    let d = door();
    let t = now().unix_timestamp();
    let body = event_json("wh-1", now());
    for key in [KEY, OLD_KEY] {
        let r = d.handle(&webhook(&body, signed(key, t, &body))).await;
        assert_eq!(r.status, 202, "{}", r.body);
        assert_eq!(json_of(&r), json!({"event_id": "wh-1"}));
    }
    let sent = d.store.sent();
    assert_eq!(
        sent[0],
        (body.clone(), "E9".to_owned(), "wh-1".to_owned()),
        "the body as signed"
    );
    assert_eq!(
        sent[0].2, sent[1].2,
        "a resend is the same event (the body's event_id)"
    );
}

#[tokio::test]
async fn webhook_refusals_enqueue_nothing() {
    let d = door();
    let t = now().unix_timestamp();
    let body = event_json("wh-2", now());
    let other = event_json("wh-3", now());
    let bad_user = body.replace("\"email\"", "\"username\":\"a,b\",\"email\"");
    let old_event = event_json("wh-4", now() - time::Duration::days(30));
    let big = format!("{}{}", body, " ".repeat(64 * 1024));
    // (request, status, error code)
    let cases = vec![
        (webhook(&body, None), 401, "signature-missing"),
        (
            webhook(&body, Some("v1=abc".into())),
            401,
            "signature-malformed",
        ),
        (
            webhook(
                &body,
                signed("not-our-key-0123456789abcdef012345", t, &body),
            ),
            401,
            "signature-mismatch",
        ),
        (
            webhook(&other, signed(KEY, t, &body)),
            401,
            "signature-mismatch",
        ),
        (
            webhook(&body, signed(KEY, t - 301, &body)),
            401,
            "signature-expired",
        ),
        (
            webhook(&body, signed(KEY, t + 301, &body)),
            401,
            "signature-in-future",
        ),
        (webhook(&big, signed(KEY, t, &big)), 413, "body-too-large"),
        (
            webhook("{\"event_id\":1}", signed(KEY, t, "{\"event_id\":1}")),
            400,
            "invalid-event",
        ),
        (
            webhook(&bad_user, signed(KEY, t, &bad_user)),
            400,
            "invalid-event",
        ),
        (
            webhook(&old_event, signed(KEY, t, &old_event)),
            400,
            "invalid-event",
        ),
        (
            {
                let mut r = webhook(&body, signed(KEY, t, &body));
                r.method = "GET".into();
                r
            },
            405,
            "method-not-allowed",
        ),
    ];
    for (req, status, code) in cases {
        let r = d.handle(&req).await;
        assert_eq!(r.status, status, "{code}: {}", r.body);
        let v = json_of(&r);
        assert_eq!(v["error"], code, "{}", r.body);
        assert!(v["message"].as_str().is_some_and(|m| !m.is_empty()));
        assert!(!r.body.contains(KEY));
    }
    assert!(d.store.sent().is_empty(), "nothing enqueued on any error");
    d.store.queue_down.store(true, Ordering::Relaxed);
    let r = d.handle(&webhook(&body, signed(KEY, t, &body))).await;
    assert_eq!(
        (r.status, json_of(&r)["error"].clone()),
        (503, json!("queue-unavailable"))
    );
    let r = d.handle(&webhook(&body, None)).await;
    assert_eq!(r.status, 401);
    let r = d
        .handle(&Request {
            path: "/other".into(),
            ..webhook(&body, None)
        })
        .await;
    assert_eq!(r.status, 404);
}
