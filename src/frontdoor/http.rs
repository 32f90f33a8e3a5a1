//! Routing and the answer to each request. Every request ends with exactly one
//! audit line (target `audit`, `front_door: true`): who (the credential kind and
//! the source address), what (method, route, the ids), accepted or why not. Body
//! values other than ids are never logged.

use serde_json::{json, Value};
use time::OffsetDateTime;

use super::scim::{self, Filter, Held, Record, ScimError};
use super::webhook::{self, SignatureError};
use super::{Settings, Store};
use crate::event::{self, format_utc, EventType, MAX_BODY_BYTES};

/// One HTTP request, already decoded from the Lambda event (see [`super::lambda`]).
#[derive(Debug, Clone, Default)]
pub struct Request {
    pub method: String,
    pub path: String,
    /// The raw query string (percent-encoded), without `?`.
    pub query: String,
    /// Lower-cased names.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    /// When the request reached the endpoint (the function URL's `timeEpoch`): the
    /// clock of the signature window and SCIM events' `occurred_at`.
    pub time: Option<OffsetDateTime>,
    pub request_id: String,
    pub source_ip: String,
    /// `https://<domain>`: the base of SCIM `location`s.
    pub origin: String,
}

impl Request {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
    fn query_param(&self, name: &str) -> Option<String> {
        self.query.split('&').find_map(|pair| {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            (percent_decode(k).eq_ignore_ascii_case(name)).then(|| percent_decode(v))
        })
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl Response {
    fn json(status: u16, content_type: &str, v: &Value) -> Self {
        Response {
            status,
            headers: vec![("content-type".into(), content_type.into())],
            body: v.to_string(),
        }
    }
    fn scim(status: u16, v: &Value) -> Self {
        Response::json(status, "application/scim+json", v)
    }
    fn empty(status: u16) -> Self {
        Response {
            status,
            headers: Vec::new(),
            body: String::new(),
        }
    }
}

/// What the audit line says about one request.
#[derive(Debug, Default)]
struct Outcome {
    who: &'static str,
    route: &'static str,
    accepted: bool,
    reason: Option<String>,
    event_id: Option<String>,
    event_type: Option<&'static str>,
    employee_id: Option<String>,
    user_name: Option<String>,
}

pub struct FrontDoor<S> {
    pub store: S,
    pub settings: Settings,
}

const SCIM_PREFIX: &str = "/scim/v2";

impl<S: Store> FrontDoor<S> {
    pub fn new(store: S, settings: Settings) -> Self {
        FrontDoor { store, settings }
    }

    /// Answers one request and logs its audit line.
    pub async fn handle(&self, req: &Request) -> Response {
        let now = req.time.unwrap_or_else(OffsetDateTime::now_utc);
        let mut out = Outcome::default();
        let path = req.path.trim_end_matches('/');
        let resp = if path == "/events" {
            out.who = "webhook";
            out.route = "webhook";
            self.webhook(req, now, &mut out).await
        } else if path == SCIM_PREFIX || path.starts_with(&format!("{SCIM_PREFIX}/")) {
            out.who = "scim";
            match self
                .scim(req, &path[SCIM_PREFIX.len()..], now, &mut out)
                .await
            {
                Ok(r) => r,
                Err(e) => {
                    out.reason = Some(e.detail.clone());
                    let mut r = Response::scim(e.status, &e.to_json());
                    if e.status == 401 {
                        r.headers.push(("www-authenticate".into(), "Bearer".into()));
                    }
                    r
                }
            }
        } else {
            out.route = "unknown";
            out.reason = Some("no such route".into());
            error(404, "not-found", "no such route: POST /events or /scim/v2")
        };
        audit(req, &out, resp.status);
        resp
    }

    async fn webhook(&self, req: &Request, now: OffsetDateTime, out: &mut Outcome) -> Response {
        let mut refuse = |status: u16, code: &'static str, detail: String| {
            out.reason = Some(format!("{code}: {detail}"));
            error(status, code, &detail)
        };
        if req.method != "POST" {
            return refuse(405, "method-not-allowed", "only POST /events".into());
        }
        // Before anything is computed over it.
        if req.body.len() > MAX_BODY_BYTES {
            return refuse(
                413,
                "body-too-large",
                format!(
                    "the body is {} bytes; the limit is {MAX_BODY_BYTES}",
                    req.body.len()
                ),
            );
        }
        let keys = match self.store.webhook_keys().await {
            Ok(k) => k,
            Err(e) => return refuse(503, "keys-unavailable", e.to_string()),
        };
        if let Err(e) = webhook::verify(
            req.header("x-hr-signature"),
            &req.body,
            &keys,
            now.unix_timestamp(),
        ) {
            let status = if e == SignatureError::NoKey { 503 } else { 401 };
            return refuse(status, e.code(), e.to_string());
        }
        out.who = "webhook-signed";
        let Ok(body) = std::str::from_utf8(&req.body) else {
            return refuse(400, "invalid-event", "the body is not UTF-8".into());
        };
        let ev = match event::parse_body(body) {
            Ok(ev) => ev,
            Err(r) => {
                out.event_id = r.event_id.clone();
                out.employee_id = r.employee_id.clone();
                return refuse(400, "invalid-event", r.reason);
            }
        };
        out.event_id = Some(ev.event_id.clone());
        out.event_type = Some(ev.event_type.as_str());
        out.employee_id = Some(ev.employee.employee_id.clone());
        out.user_name = Some(ev.user_name.clone());
        if let Err(why) = event::check_window(&ev, now, self.settings.max_event_age_days) {
            return refuse(400, "invalid-event", why);
        }
        // The body as signed: the provisioner parses exactly what was verified.
        if let Err(e) = self
            .store
            .send(body, &ev.employee.employee_id, &ev.event_id)
            .await
        {
            return refuse(503, "queue-unavailable", e.to_string());
        }
        out.accepted = true;
        Response::json(202, "application/json", &json!({"event_id": ev.event_id}))
    }

    async fn scim(
        &self,
        req: &Request,
        rest: &str,
        now: OffsetDateTime,
        out: &mut Outcome,
    ) -> Result<Response, ScimError> {
        out.route = "scim-auth";
        let presented = req
            .header("authorization")
            .and_then(|h| h.split_once(' '))
            .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
            .map(|(_, t)| t.trim());
        let Some(presented) = presented else {
            return Err(ScimError::status(401, "a Bearer token is required"));
        };
        let tokens = self
            .store
            .scim_tokens()
            .await
            .map_err(|e| ScimError::status(503, e.to_string()))?;
        if !webhook::token_matches(presented, &tokens) {
            return Err(ScimError::status(401, "the Bearer token is not valid"));
        }
        out.who = "scim-token";
        if req.body.len() > MAX_BODY_BYTES {
            return Err(ScimError::status(
                413,
                format!("the body is over {MAX_BODY_BYTES} bytes"),
            ));
        }
        let base = format!("{}{SCIM_PREFIX}", req.origin);
        let method = req.method.as_str();
        let segs: Vec<&str> = rest.trim_start_matches('/').split('/').collect();
        match (method, segs.as_slice()) {
            ("GET", ["ServiceProviderConfig"]) => {
                out.route = "scim-discovery";
                out.accepted = true;
                Ok(Response::scim(200, &scim::service_provider_config(&base)))
            }
            ("GET", ["ResourceTypes"]) => {
                out.route = "scim-discovery";
                out.accepted = true;
                let all = vec![scim::resource_type_user(&base)];
                Ok(Response::scim(200, &scim::list_response(all, 1, 1)))
            }
            ("GET", ["ResourceTypes", "User"]) => {
                out.route = "scim-discovery";
                out.accepted = true;
                Ok(Response::scim(200, &scim::resource_type_user(&base)))
            }
            ("GET", ["Schemas"]) => {
                out.route = "scim-discovery";
                out.accepted = true;
                let all = scim::schemas(&base);
                let n = all.len();
                Ok(Response::scim(200, &scim::list_response(all, n, 1)))
            }
            ("GET", ["Schemas", id]) => {
                out.route = "scim-discovery";
                let id = percent_decode(id);
                let found = scim::schemas(&base)
                    .into_iter()
                    .find(|s| s["id"].as_str() == Some(id.as_str()))
                    .ok_or_else(|| {
                        ScimError::status(404, format!("no schema {}", scim::clip(&id)))
                    })?;
                out.accepted = true;
                Ok(Response::scim(200, &found))
            }
            ("GET", ["Users"]) => {
                out.route = "scim-list";
                let r = self.list(req, &base).await?;
                out.accepted = true;
                Ok(r)
            }
            ("POST", ["Users"]) => {
                out.route = "scim-create";
                self.create(req, &base, now, out).await
            }
            (_, ["Users", id]) if !id.is_empty() => {
                let id = percent_decode(id).to_ascii_lowercase();
                out.user_name = Some(scim::clip(&id));
                match method {
                    "GET" => {
                        out.route = "scim-get";
                        let held = self.managed(&id).await?;
                        out.employee_id = held.employee_id().map(str::to_owned);
                        out.accepted = true;
                        Ok(Response::scim(200, &held.resource(&base)))
                    }
                    "PUT" | "PATCH" | "DELETE" => {
                        out.route = match method {
                            "PUT" => "scim-replace",
                            "PATCH" => "scim-patch",
                            _ => "scim-delete",
                        };
                        self.update(req, &id, &base, now, out).await
                    }
                    _ => Err(ScimError::status(
                        405,
                        format!("{method} is not supported on a User"),
                    )),
                }
            }
            ("GET", ["ResourceTypes", other]) => {
                out.route = "scim-discovery";
                Err(ScimError::status(
                    404,
                    format!("no resource type {}", scim::clip(other)),
                ))
            }
            (_, ["ServiceProviderConfig" | "ResourceTypes" | "Schemas", ..]) => {
                out.route = "scim-discovery";
                Err(ScimError::status(
                    405,
                    "discovery endpoints are read-only (GET)",
                ))
            }
            ("POST", [".search"]) | ("POST", ["Users", ".search"]) => Err(ScimError::status(
                501,
                "POST .search is not supported: use GET /Users?filter=",
            )),
            (_, ["Bulk"]) => Err(ScimError::status(501, "Bulk is not supported")),
            (_, ["Groups", ..]) => Err(ScimError::status(
                404,
                "Groups are not provisioned: groups follow the department's rule",
            )),
            _ => Err(ScimError::status(404, "no such SCIM endpoint")),
        }
    }

    /// The user under `USER_PATH` managed by the provisioner, else 404.
    async fn managed(&self, id: &str) -> Result<Held, ScimError> {
        match self.store.user(id).await {
            Ok(Some(h)) if h.managed() => Ok(h),
            Ok(_) => Err(ScimError::not_found(id)),
            Err(e) => Err(ScimError::status(503, e.to_string())),
        }
    }

    async fn list(&self, req: &Request, base: &str) -> Result<Response, ScimError> {
        let (start, count) = scim::paging(
            req.query_param("startIndex").as_deref(),
            req.query_param("count").as_deref(),
        )?;
        let unavailable = |e: super::StoreError| ScimError::status(503, e.to_string());
        let matches: Vec<Held> = match req.query_param("filter") {
            Some(f) => match scim::parse_filter(&f)? {
                Filter::UserName(name) => {
                    // A userName IAM could not hold matches nobody.
                    match scim::id_for(&name) {
                        Ok(id) => self
                            .store
                            .user(&id)
                            .await
                            .map_err(unavailable)?
                            .filter(Held::managed)
                            .into_iter()
                            .collect(),
                        Err(_) => Vec::new(),
                    }
                }
                Filter::ExternalId(eid) => self
                    .all_managed()
                    .await
                    .map_err(unavailable)?
                    .into_iter()
                    .filter(|h| h.employee_id() == Some(eid.as_str()))
                    .collect(),
            },
            None => {
                // Unfiltered (Okta's connection test, an import): one ListUsers
                // pass counts the users under the path, and only the page's users
                // are read (GetUser each), so the calls grow with `count`, not
                // with the account. An unmanaged user under the path (the audit's
                // unmanaged-in-path) is counted but not shown.
                let names = self.store.user_names().await.map_err(unavailable)?;
                let mut page = Vec::new();
                for n in names.iter().skip(start - 1).take(count) {
                    if let Some(h) = self.store.user(n).await.map_err(unavailable)? {
                        if h.managed() {
                            page.push(h.resource(base));
                        }
                    }
                }
                return Ok(Response::scim(
                    200,
                    &scim::list_response(page, names.len(), start),
                ));
            }
        };
        let total = matches.len();
        let page: Vec<Value> = matches
            .iter()
            .skip(start - 1)
            .take(count)
            .map(|h| h.resource(base))
            .collect();
        Ok(Response::scim(
            200,
            &scim::list_response(page, total, start),
        ))
    }

    /// Every managed user under the path: one ListUsers pass, then each user's
    /// tags (IAM lists no tags). Calls grow with the users; see docs/contract.md.
    async fn all_managed(&self) -> Result<Vec<Held>, super::StoreError> {
        let names = self.store.user_names().await?;
        let mut out = Vec::with_capacity(names.len());
        for n in names {
            if let Some(h) = self.store.user(&n).await? {
                if h.managed() {
                    out.push(h);
                }
            }
        }
        Ok(out)
    }

    async fn create(
        &self,
        req: &Request,
        base: &str,
        now: OffsetDateTime,
        out: &mut Outcome,
    ) -> Result<Response, ScimError> {
        let body = json_body(req)?;
        let mut rec = scim::record_from_user(&body)?;
        let user_name = rec
            .user_name
            .clone()
            .ok_or_else(|| ScimError::bad("invalidValue", "userName is required"))?;
        let id = scim::id_for(&user_name)?;
        out.user_name = Some(id.clone());
        let employee_id = rec
            .employee_id()
            .map(str::to_owned)
            .ok_or_else(|| {
                ScimError::bad(
                    "invalidValue",
                    "externalId (or the enterprise employeeNumber) is required: it is the HR employee id",
                )
            })?;
        out.employee_id = Some(employee_id.clone());
        if !rec.active {
            return Err(ScimError::bad(
                "invalidValue",
                "a user cannot be created inactive: create it when it becomes active",
            ));
        }
        // The contract's joiner needs an email; a userName that is one serves.
        if rec.email.is_none() && event::check_email("userName", &user_name).is_ok() {
            rec.email = Some(user_name.clone());
        }
        let held = self
            .store
            .user(&id)
            .await
            .map_err(|e| ScimError::status(503, e.to_string()))?;
        match &held {
            // A retired user of this employee comes back (a rehire).
            Some(h) if h.managed() && h.employee_id() == Some(&employee_id) && !h.active() => {}
            Some(_) => {
                return Err(ScimError::uniqueness(format!(
                    "userName {} is taken",
                    scim::clip(&id)
                )))
            }
            None => {}
        }
        let manager = self.manager_email(rec.manager.as_deref()).await;
        self.enqueue(
            req,
            EventType::Joined,
            &id,
            &employee_id,
            &rec,
            manager.as_deref(),
            held.as_ref(),
            now,
            out,
        )
        .await?;
        let mut resource = scim::resource(&rec, &id, base);
        resource["externalId"] = json!(employee_id);
        let mut resp = Response::scim(201, &resource);
        resp.headers
            .push(("location".into(), format!("{base}/Users/{id}")));
        Ok(resp)
    }

    async fn update(
        &self,
        req: &Request,
        id: &str,
        base: &str,
        now: OffsetDateTime,
        out: &mut Outcome,
    ) -> Result<Response, ScimError> {
        let held = self.managed(id).await?;
        let employee_id = held
            .employee_id()
            .map(str::to_owned)
            .ok_or_else(|| ScimError::not_found(id))?;
        out.employee_id = Some(employee_id.clone());
        let mut rec: Record = match req.method.as_str() {
            "DELETE" => Record {
                active: false,
                ..held.record()
            },
            "PATCH" => {
                let mut r = held.record();
                scim::apply_patch(&mut r, &json_body(req)?)?;
                r
            }
            _ => scim::record_from_user(&json_body(req)?)?,
        };
        // The two identities never change: users are never renamed, and the
        // employee id is the user's (contract sections 1 and 5).
        if let Some(u) = &rec.user_name {
            if !u.eq_ignore_ascii_case(&held.user_name) {
                return Err(ScimError::bad(
                    "mutability",
                    "userName cannot change: IAM users are never renamed",
                ));
            }
        }
        if let Some(e) = rec.employee_id.as_deref() {
            if e != employee_id {
                return Err(ScimError::bad(
                    "mutability",
                    "externalId cannot change: it is the HR employee id of this user",
                ));
            }
        }
        rec.employee_id = Some(employee_id.clone());
        rec.user_name = Some(held.user_name.clone());
        let kind = scim::event_type_for(&rec, Some(held.active()));
        // A rehire's joiner needs the email; IAM holds it where the body has none.
        if rec.email.is_none() {
            rec.email = held.record().email;
        }
        let manager = match &rec.manager {
            Some(m) if held.record().manager.as_deref() == Some(m) => Some(m.clone()),
            m => self.manager_email(m.as_deref()).await,
        };
        self.enqueue(
            req,
            kind,
            id,
            &employee_id,
            &rec,
            manager.as_deref(),
            Some(&held),
            now,
            out,
        )
        .await?;
        if req.method == "DELETE" {
            return Ok(Response::empty(204));
        }
        let mut resource = scim::resource(
            &Record {
                manager: manager.clone(),
                ..rec
            },
            id,
            base,
        );
        resource["meta"]["created"] = json!(held.created);
        Ok(Response::scim(200, &resource))
    }

    /// A manager reference to an email: our id of a managed user (its `hr:email`),
    /// else an email as given; anything else is left out of the event.
    async fn manager_email(&self, reference: Option<&str>) -> Option<String> {
        let r = reference?;
        if let Ok(id) = scim::id_for(r) {
            if let Ok(Some(h)) = self.store.user(&id).await {
                if h.managed() {
                    if let Some(m) = h.record().email {
                        return Some(m);
                    }
                }
            }
        }
        scim::manager_email(r)
    }

    /// Builds the event, checks it as the provisioner will, and sends it.
    #[allow(clippy::too_many_arguments)]
    async fn enqueue(
        &self,
        req: &Request,
        kind: EventType,
        user: &str,
        employee_id: &str,
        rec: &Record,
        manager: Option<&str>,
        held: Option<&Held>,
        now: OffsetDateTime,
        out: &mut Outcome,
    ) -> Result<(), ScimError> {
        let event_id = scim_event_id(req, user, held);
        out.event_id = Some(event_id.clone());
        out.event_type = Some(kind.as_str());
        let body = scim::event_body(
            kind,
            &event_id,
            &format_utc(now),
            employee_id,
            user,
            rec,
            manager,
        );
        let ev = event::parse_body(&body).map_err(|r| ScimError::bad("invalidValue", r.reason))?;
        event::check_window(&ev, now, self.settings.max_event_age_days)
            .map_err(|why| ScimError::bad("invalidValue", why))?;
        self.store
            .send(&body, employee_id, &event_id)
            .await
            .map_err(|e| ScimError::status(503, e.to_string()))?;
        out.accepted = true;
        Ok(())
    }
}

/// A SCIM request's event id: a hash of the request (method, user, body) and of
/// the user's last applied event as IAM holds it. A provider's retry of the same
/// request, before or while the provisioner applies it, is the same event (SQS
/// FIFO drops the copy within 5 minutes; the provisioner's idempotency after);
/// the same request made again later, after another change was applied (disable,
/// enable, disable), is a new event. The request time is deliberately left out.
pub fn scim_event_id(req: &Request, user: &str, held: Option<&Held>) -> String {
    let mut data = Vec::new();
    for part in [
        "scim",
        req.method.as_str(),
        user,
        held.and_then(Held::last_event_id).unwrap_or("-"),
        if held.is_some_and(|h| !h.active()) {
            "retired"
        } else {
            "active-or-absent"
        },
    ] {
        data.extend_from_slice(part.as_bytes());
        data.push(0);
    }
    data.extend_from_slice(&req.body);
    uuid_from(&webhook::sha256(&data))
}

/// A UUID (version 8: custom, RFC 9562) from the first 16 bytes of a digest.
fn uuid_from(d: &[u8]) -> String {
    let mut b = [0u8; 16];
    for (i, x) in d.iter().take(16).enumerate() {
        b[i] = *x;
    }
    b[6] = (b[6] & 0x0f) | 0x80;
    b[8] = (b[8] & 0x3f) | 0x80;
    let h = webhook::to_hex(&b);
    format!(
        "{}-{}-{}-{}-{}",
        &h[..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..]
    )
}

fn json_body(req: &Request) -> Result<Value, ScimError> {
    serde_json::from_slice(&req.body)
        .map_err(|e| ScimError::bad("invalidSyntax", format!("the body is not JSON: {e}")))
}

/// The webhook's JSON error: a stable `error` code and a sentence.
fn error(status: u16, code: &str, detail: &str) -> Response {
    Response::json(
        status,
        "application/json",
        &json!({"error": code, "message": detail}),
    )
}

fn audit(req: &Request, out: &Outcome, status: u16) {
    let outcome = if out.accepted { "accepted" } else { "refused" };
    if out.accepted {
        tracing::info!(
            target: "audit", audit = true, front_door = true,
            request_id = %req.request_id, source_ip = %req.source_ip, who = out.who,
            method = %req.method, route = out.route, status, outcome,
            event_id = out.event_id.as_deref(), event_type = out.event_type,
            employee_id = out.employee_id.as_deref(), user_name = out.user_name.as_deref(),
            "{} {}", req.method, out.route
        );
    } else {
        tracing::warn!(
            target: "audit", audit = true, front_door = true,
            request_id = %req.request_id, source_ip = %req.source_ip, who = out.who,
            method = %req.method, route = out.route, status, outcome,
            reason = out.reason.as_deref(),
            event_id = out.event_id.as_deref(), event_type = out.event_type,
            employee_id = out.employee_id.as_deref(), user_name = out.user_name.as_deref(),
            "{} {} refused", req.method, out.route
        );
    }
}

/// Decodes `%XX` and `+` (a query's space).
pub fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < b.len() => {
                match std::str::from_utf8(&b[i + 1..i + 3])
                    .ok()
                    .and_then(|h| u8::from_str_radix(h, 16).ok())
                {
                    Some(x) => {
                        out.push(x);
                        i += 2;
                    }
                    None => out.push(b'%'),
                }
            }
            c => out.push(c),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}
