//! SCIM 2.0 (RFC 7643/7644) <-> contract events: the subset Okta and Microsoft
//! Entra ID provisioning use. Pure: no AWS, no clock; table-tested below and
//! against the providers' documented requests in `tests/frontdoor_scim.rs`.
//!
//! The SCIM `id` is the IAM user name. It is known when the POST arrives (the name
//! rule of contract section 1 applied to `userName`), before the user exists: the
//! queue is asynchronous, so a 201 cannot wait for IAM. It never changes (users are
//! never renamed) and `GET /Users/{id}` is one `GetUser`.

use std::collections::BTreeMap;

use serde_json::{json, Map, Value};

use crate::event::{check_email, user_name, EventType};
use crate::state::{
    MANAGED_BY, STATUS_RETIRED, TAG_DEPARTMENT, TAG_EMAIL, TAG_EMPLOYEE_ID, TAG_LAST_EVENT_AT,
    TAG_LAST_EVENT_ID, TAG_MANAGED_BY, TAG_MANAGER_EMAIL, TAG_STATUS,
};

pub const SCHEMA_USER: &str = "urn:ietf:params:scim:schemas:core:2.0:User";
pub const SCHEMA_ENTERPRISE: &str = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User";
pub const SCHEMA_ERROR: &str = "urn:ietf:params:scim:api:messages:2.0:Error";
pub const SCHEMA_LIST: &str = "urn:ietf:params:scim:api:messages:2.0:ListResponse";
pub const SCHEMA_PATCH: &str = "urn:ietf:params:scim:api:messages:2.0:PatchOp";
const SCHEMA_SPC: &str = "urn:ietf:params:scim:schemas:core:2.0:ServiceProviderConfig";
const SCHEMA_RT: &str = "urn:ietf:params:scim:schemas:core:2.0:ResourceType";
const SCHEMA_SCHEMA: &str = "urn:ietf:params:scim:schemas:core:2.0:Schema";
/// The most resources one list answer holds (ServiceProviderConfig says so).
pub const MAX_RESULTS: usize = 100;

/// A SCIM error (RFC 7644 section 3.12): the HTTP status and, for 400s, a `scimType`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{detail}")]
pub struct ScimError {
    pub status: u16,
    pub scim_type: Option<&'static str>,
    pub detail: String,
}

impl ScimError {
    pub fn bad(scim_type: &'static str, detail: impl Into<String>) -> Self {
        ScimError {
            status: 400,
            scim_type: Some(scim_type),
            detail: detail.into(),
        }
    }
    pub fn status(status: u16, detail: impl Into<String>) -> Self {
        ScimError {
            status,
            scim_type: None,
            detail: detail.into(),
        }
    }
    pub fn not_found(id: &str) -> Self {
        ScimError::status(404, format!("User {} not found", clip(id)))
    }
    pub fn uniqueness(detail: impl Into<String>) -> Self {
        ScimError {
            status: 409,
            scim_type: Some("uniqueness"),
            detail: detail.into(),
        }
    }
    /// The error object; `status` is a string, as RFC 7644 writes it.
    pub fn to_json(&self) -> Value {
        let mut v = json!({
            "schemas": [SCHEMA_ERROR],
            "status": self.status.to_string(),
            "detail": self.detail,
        });
        if let Some(t) = self.scim_type {
            v["scimType"] = json!(t);
        }
        v
    }
}

/// The part of a SCIM User the contract carries (section 10's mapping).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Record {
    /// `externalId`, else the enterprise `employeeNumber`.
    pub employee_id: Option<String>,
    pub employee_number: Option<String>,
    pub user_name: Option<String>,
    /// `emails[primary]` (else the first, else a `work` one).
    pub email: Option<String>,
    pub first_name: Option<String>,
    pub last_name: Option<String>,
    pub department: Option<String>,
    /// The enterprise `manager.value`: a SCIM id (ours is a user name) or an email;
    /// the front door resolves it to the manager's email.
    pub manager: Option<String>,
    /// Absent means active (RFC 7643: `active` is the administrative status).
    pub active: bool,
}

impl Record {
    /// `externalId` wins over `employeeNumber`: it is what the provider itself
    /// matches on, so a `GET` answers with the value it sent.
    pub fn employee_id(&self) -> Option<&str> {
        self.employee_id
            .as_deref()
            .or(self.employee_number.as_deref())
    }
}

/// What IAM holds about one user under `USER_PATH` (its tags), the source of every
/// `GET` and the base a `PATCH` is merged onto.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Held {
    pub user_name: String,
    pub tags: BTreeMap<String, String>,
    /// IAM's CreateDate, RFC 3339.
    pub created: Option<String>,
}

impl Held {
    fn tag(&self, k: &str) -> Option<&str> {
        self.tags.get(k).map(String::as_str)
    }
    /// Only users the provisioner manages are visible through SCIM.
    pub fn managed(&self) -> bool {
        self.tag(TAG_MANAGED_BY) == Some(MANAGED_BY) && self.employee_id().is_some()
    }
    pub fn employee_id(&self) -> Option<&str> {
        self.tag(TAG_EMPLOYEE_ID)
    }
    pub fn active(&self) -> bool {
        self.tag(TAG_STATUS) != Some(STATUS_RETIRED)
    }
    pub fn last_event_id(&self) -> Option<&str> {
        self.tag(TAG_LAST_EVENT_ID)
    }
    /// The record as IAM holds it: the base of a PATCH. Names are not tags, so a
    /// PATCH that does not send them produces a mover without them (they are
    /// optional in the contract and only the welcome mail uses `first_name`).
    pub fn record(&self) -> Record {
        Record {
            employee_id: self.employee_id().map(str::to_owned),
            employee_number: None,
            user_name: Some(self.user_name.clone()),
            email: self.tag(TAG_EMAIL).map(str::to_owned),
            first_name: None,
            last_name: None,
            department: self.tag(TAG_DEPARTMENT).map(str::to_owned),
            manager: self.tag(TAG_MANAGER_EMAIL).map(str::to_owned),
            active: self.active(),
        }
    }
    /// The SCIM User for `GET`.
    pub fn resource(&self, base: &str) -> Value {
        let mut v = resource(&self.record(), &self.user_name, base);
        let modified = self.tag(TAG_LAST_EVENT_AT).map(str::to_owned);
        if let Some(meta) = v.get_mut("meta").and_then(Value::as_object_mut) {
            if let Some(c) = &self.created {
                meta.insert("created".into(), json!(c));
            }
            if let Some(m) = modified.or_else(|| self.created.clone()) {
                meta.insert("lastModified".into(), json!(m));
            }
        }
        v
    }
}

/// A SCIM User from a record; `base` is the absolute `/scim/v2` URL.
pub fn resource(rec: &Record, id: &str, base: &str) -> Value {
    let mut v = json!({
        "schemas": [SCHEMA_USER, SCHEMA_ENTERPRISE],
        "id": id,
        "userName": id,
        "active": rec.active,
        "meta": {
            "resourceType": "User",
            "location": format!("{base}/Users/{id}"),
        },
    });
    if let Some(e) = rec.employee_id() {
        v["externalId"] = json!(e);
    }
    if let Some(mail) = &rec.email {
        v["emails"] = json!([{"value": mail, "type": "work", "primary": true}]);
    }
    let mut name = Map::new();
    if let Some(g) = &rec.first_name {
        name.insert("givenName".into(), json!(g));
    }
    if let Some(f) = &rec.last_name {
        name.insert("familyName".into(), json!(f));
    }
    if !name.is_empty() {
        v["name"] = Value::Object(name);
    }
    let mut ent = Map::new();
    if let Some(e) = rec.employee_id() {
        ent.insert("employeeNumber".into(), json!(e));
    }
    if let Some(d) = &rec.department {
        ent.insert("department".into(), json!(d));
    }
    if let Some(m) = &rec.manager {
        ent.insert("manager".into(), json!({"value": m}));
    }
    v[SCHEMA_ENTERPRISE] = Value::Object(ent);
    v
}

/// Reads a User (a POST or PUT body).
pub fn record_from_user(body: &Value) -> Result<Record, ScimError> {
    let obj = body
        .as_object()
        .ok_or_else(|| ScimError::bad("invalidSyntax", "the body is not a JSON object"))?;
    let mut rec = Record {
        active: true,
        ..Record::default()
    };
    for (k, v) in obj {
        set_attr(&mut rec, k, v)?;
    }
    Ok(rec)
}

/// Sets one attribute from a top-level key of a User or of a path-less PATCH value.
/// Attribute names are case-insensitive (RFC 7643 section 2.1).
fn set_attr(rec: &mut Record, key: &str, v: &Value) -> Result<(), ScimError> {
    // A fully qualified core or enterprise attribute (`urn:...:User:department`).
    if let Some(rest) = strip_ci(key, &format!("{SCHEMA_ENTERPRISE}:")) {
        return set_enterprise(rec, rest, v);
    }
    if let Some(rest) = strip_ci(key, &format!("{SCHEMA_USER}:")) {
        return set_attr(rec, rest, v);
    }
    if key.eq_ignore_ascii_case(SCHEMA_ENTERPRISE) {
        // Removing the whole extension clears what it carries (the employee id
        // stays: it is the user's).
        if v.is_null() {
            rec.department = None;
            rec.manager = None;
            return Ok(());
        }
        let ext = v.as_object().ok_or_else(|| {
            ScimError::bad("invalidValue", "the enterprise extension must be an object")
        })?;
        for (k, v) in ext {
            set_enterprise(rec, k, v)?;
        }
        return Ok(());
    }
    // Entra sends dotted sub-attributes as keys of a path-less value.
    if let Some((parent, sub)) = key.split_once('.') {
        if parent.eq_ignore_ascii_case("name") {
            return set_name(rec, sub, v);
        }
        return Ok(());
    }
    match key.to_ascii_lowercase().as_str() {
        "username" => rec.user_name = Some(string("userName", v)?),
        "externalid" => rec.employee_id = opt_string("externalId", v)?,
        "active" => rec.active = boolean("active", v)?,
        "emails" => rec.email = primary_email(v)?,
        "name" if v.is_null() => {
            rec.first_name = None;
            rec.last_name = None;
        }
        "name" => {
            let name = v
                .as_object()
                .ok_or_else(|| ScimError::bad("invalidValue", "name must be an object"))?;
            rec.first_name = None;
            rec.last_name = None;
            for (k, v) in name {
                set_name(rec, k, v)?;
            }
        }
        // Everything else a provider may send (displayName, locale, phoneNumbers,
        // password, groups, ...) has no place in the contract record: accepted and
        // not kept. Okta sends a `password`; it is never read.
        _ => {}
    }
    Ok(())
}

fn set_name(rec: &mut Record, sub: &str, v: &Value) -> Result<(), ScimError> {
    match sub.to_ascii_lowercase().as_str() {
        "givenname" => rec.first_name = opt_string("name.givenName", v)?,
        "familyname" => rec.last_name = opt_string("name.familyName", v)?,
        _ => {}
    }
    Ok(())
}

fn set_enterprise(rec: &mut Record, attr: &str, v: &Value) -> Result<(), ScimError> {
    let lower = attr.to_ascii_lowercase();
    match lower.as_str() {
        "employeenumber" => rec.employee_number = opt_string("employeeNumber", v)?,
        "department" => rec.department = opt_string("department", v)?,
        // `manager` is a complex attribute; Entra's PATCH sends the id as a string.
        "manager" => {
            rec.manager = match v {
                Value::Null => None,
                Value::String(s) => non_empty(s),
                Value::Object(o) => match get_ci(o, "value") {
                    Some(Value::String(s)) => non_empty(s),
                    Some(Value::Null) | None => None,
                    Some(_) => {
                        return Err(ScimError::bad(
                            "invalidValue",
                            "manager.value must be a string",
                        ))
                    }
                },
                _ => return Err(ScimError::bad("invalidValue", "manager must be an object")),
            }
        }
        "manager.value" => rec.manager = opt_string("manager.value", v)?,
        _ => {}
    }
    Ok(())
}

/// The primary email of an `emails` value; else the `work` one; else the first.
fn primary_email(v: &Value) -> Result<Option<String>, ScimError> {
    let items = match v {
        Value::Null => return Ok(None),
        Value::Array(a) => a,
        _ => return Err(ScimError::bad("invalidValue", "emails must be an array")),
    };
    fn value_of(e: &Value) -> Option<&str> {
        e.as_object()
            .and_then(|o| get_ci(o, "value"))
            .and_then(Value::as_str)
    }
    let is = |e: &Value, k: &str, want: &dyn Fn(&Value) -> bool| {
        e.as_object().and_then(|o| get_ci(o, k)).is_some_and(want)
    };
    let primary = items.iter().find(|e| {
        is(e, "primary", &|p| {
            p == &json!(true) || p.as_str().is_some_and(|s| s.eq_ignore_ascii_case("true"))
        })
    });
    let work = items.iter().find(|e| {
        is(e, "type", &|t| {
            t.as_str().is_some_and(|s| s.eq_ignore_ascii_case("work"))
        })
    });
    Ok(primary
        .or(work)
        .or(items.first())
        .and_then(value_of)
        .and_then(non_empty))
}

/// Applies a PatchOp body to a record (RFC 7644 section 3.5.2), in the shapes
/// Okta and Entra send: `op` in any case (`Replace`, `replace`), with a `path`
/// or without one (the value an object of attributes), `active` as a boolean or
/// the string `"True"`/`"False"`, `emails[type eq "work"].value`, and fully
/// qualified enterprise paths.
pub fn apply_patch(rec: &mut Record, body: &Value) -> Result<(), ScimError> {
    let obj = body
        .as_object()
        .ok_or_else(|| ScimError::bad("invalidSyntax", "the body is not a JSON object"))?;
    let schemas_ok = get_ci(obj, "schemas")
        .and_then(Value::as_array)
        .is_some_and(|s| s.iter().any(|x| x.as_str() == Some(SCHEMA_PATCH)));
    if !schemas_ok {
        return Err(ScimError::bad(
            "invalidSyntax",
            format!("a PATCH body must list the schema {SCHEMA_PATCH}"),
        ));
    }
    let ops = get_ci(obj, "Operations")
        .and_then(Value::as_array)
        .filter(|o| !o.is_empty())
        .ok_or_else(|| ScimError::bad("invalidSyntax", "Operations must be a non-empty array"))?;
    for op in ops {
        let o = op
            .as_object()
            .ok_or_else(|| ScimError::bad("invalidSyntax", "each operation must be an object"))?;
        let kind = get_ci(o, "op")
            .and_then(Value::as_str)
            .map(str::to_ascii_lowercase)
            .ok_or_else(|| ScimError::bad("invalidSyntax", "an operation has no op"))?;
        let path = get_ci(o, "path").and_then(Value::as_str);
        let value = get_ci(o, "value");
        match (kind.as_str(), path) {
            ("add" | "replace", None) => {
                let attrs = value.and_then(Value::as_object).ok_or_else(|| {
                    ScimError::bad(
                        "invalidValue",
                        "an operation without path needs an object value",
                    )
                })?;
                for (k, v) in attrs {
                    set_attr(rec, k, v)?;
                }
            }
            ("add" | "replace", Some(p)) => {
                let v = value.ok_or_else(|| {
                    ScimError::bad(
                        "invalidValue",
                        format!("{kind} of {} has no value", clip(p)),
                    )
                })?;
                set_path(rec, p, v)?;
            }
            ("remove", Some(p)) => set_path(rec, p, &Value::Null)?,
            ("remove", None) => {
                return Err(ScimError::bad("noTarget", "remove needs a path"));
            }
            _ => {
                return Err(ScimError::bad(
                    "invalidSyntax",
                    format!("op {:?} is not add, replace or remove", clip(&kind)),
                ))
            }
        }
    }
    Ok(())
}

/// One PATCH path. Value filters are understood on `emails`; on attributes the
/// record does not keep (addresses, phoneNumbers, ...) the operation is accepted
/// and has no effect.
fn set_path(rec: &mut Record, path: &str, v: &Value) -> Result<(), ScimError> {
    if let Some((attr, rest)) = path.split_once('[') {
        let (filter, sub) = rest.split_once(']').ok_or_else(|| {
            ScimError::bad("invalidPath", format!("unclosed [ in {}", clip(path)))
        })?;
        // Entra's default mappings patch addresses[type eq "work"].formatted,
        // phoneNumbers[type eq "mobile"].value, ...: not kept, so accepted as is.
        if !attr.eq_ignore_ascii_case("emails") {
            return Ok(());
        }
        let f = filter.to_ascii_lowercase().replace(' ', "");
        let known = ["type eq \"work\"", "primary eq true"].map(|k| k.replace(' ', ""));
        if !known.contains(&f) || !(sub.eq_ignore_ascii_case(".value") || sub.is_empty()) {
            return Err(ScimError::bad(
                "invalidPath",
                format!("unsupported emails path {}", clip(path)),
            ));
        }
        rec.email = match v {
            Value::Object(_) => primary_email(&json!([v]))?,
            _ => opt_string("emails.value", v)?,
        };
        return Ok(());
    }
    if path.eq_ignore_ascii_case("active") && v.is_null() {
        return Err(ScimError::bad("mutability", "active cannot be removed"));
    }
    set_attr(rec, path, v)
}

/// What a request does to the employee, decided from the record and IAM's state.
pub fn event_type_for(rec: &Record, held_active: Option<bool>) -> EventType {
    match (rec.active, held_active) {
        (false, _) => EventType::Left,
        // Reactivating a retired user is a rehire: only a joiner re-enables.
        (true, Some(false)) | (true, None) => EventType::Joined,
        (true, Some(true)) => EventType::Changed,
    }
}

/// The contract event (section 1) for a record. `user` is the IAM user name (the
/// SCIM id); the result still goes through `event::parse_body` before it is sent.
pub fn event_body(
    kind: EventType,
    event_id: &str,
    occurred_at: &str,
    employee_id: &str,
    user: &str,
    rec: &Record,
    manager_email: Option<&str>,
) -> String {
    let mut employee = json!({"employee_id": employee_id, "username": user});
    let mut put = |k: &str, v: &Option<String>| {
        if let Some(v) = v {
            employee[k] = json!(v);
        }
    };
    put("email", &rec.email);
    put("first_name", &rec.first_name);
    put("last_name", &rec.last_name);
    put("department", &rec.department);
    put("manager_email", &manager_email.map(str::to_owned));
    json!({
        "event_id": event_id,
        "event_type": kind.as_str(),
        "occurred_at": occurred_at,
        "employee": employee,
    })
    .to_string()
}

/// The IAM user name a `userName` gives: section 1's rule for an explicit
/// username (charset checked, lower-cased). A `userName` that is an email stays
/// the whole address (`@` is in IAM's charset): it is unique where the local part
/// is not, and a provider's `userName eq` lookup then finds the same user.
pub fn id_for(user_name_attr: &str) -> Result<String, ScimError> {
    user_name(Some(user_name_attr), None).map_err(|r| ScimError::bad("invalidValue", r.reason))
}

/// A supported filter (RFC 7644 section 3.4.2.2): `userName eq "..."` or
/// `externalId eq "..."`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Filter {
    UserName(String),
    ExternalId(String),
}

pub fn parse_filter(s: &str) -> Result<Filter, ScimError> {
    let invalid = || {
        ScimError::bad(
            "invalidFilter",
            format!(
                "unsupported filter {:?}: only userName eq \"...\" and externalId eq \"...\"",
                clip(s)
            ),
        )
    };
    let s = s.trim();
    let (attr, rest) = s.split_once(char::is_whitespace).ok_or_else(invalid)?;
    let (op, value) = rest
        .trim_start()
        .split_once(char::is_whitespace)
        .ok_or_else(invalid)?;
    if !op.eq_ignore_ascii_case("eq") {
        return Err(invalid());
    }
    let value = value.trim();
    let inner = value
        .strip_prefix('"')
        .and_then(|v| v.strip_suffix('"'))
        .ok_or_else(invalid)?;
    // A JSON string: decodes \" and \\ the way the filter grammar does.
    let decoded: String = serde_json::from_str(&format!("\"{inner}\"")).map_err(|_| invalid())?;
    let attr = strip_ci(attr, &format!("{SCHEMA_USER}:")).unwrap_or(attr);
    if attr.eq_ignore_ascii_case("userName") {
        Ok(Filter::UserName(decoded))
    } else if attr.eq_ignore_ascii_case("externalId") {
        Ok(Filter::ExternalId(decoded))
    } else {
        Err(invalid())
    }
}

/// A ListResponse page.
pub fn list_response(resources: Vec<Value>, total: usize, start_index: usize) -> Value {
    json!({
        "schemas": [SCHEMA_LIST],
        "totalResults": total,
        "startIndex": start_index,
        "itemsPerPage": resources.len(),
        "Resources": resources,
    })
}

/// `startIndex` (1-based, below 1 means 1) and `count` (0 allowed: the total only;
/// capped at [`MAX_RESULTS`]), per RFC 7644 section 3.4.2.4.
pub fn paging(start: Option<&str>, count: Option<&str>) -> Result<(usize, usize), ScimError> {
    let num = |name: &str, v: Option<&str>, default: i64| -> Result<i64, ScimError> {
        match v {
            None | Some("") => Ok(default),
            Some(s) => s.trim().parse::<i64>().map_err(|_| {
                ScimError::bad(
                    "invalidValue",
                    format!("{name} {:?} is not an integer", clip(s)),
                )
            }),
        }
    };
    let start = num("startIndex", start, 1)?.max(1);
    let count = num("count", count, MAX_RESULTS as i64)?.clamp(0, MAX_RESULTS as i64);
    Ok((
        usize::try_from(start).unwrap_or(1),
        usize::try_from(count).unwrap_or(0),
    ))
}

pub fn service_provider_config(base: &str) -> Value {
    json!({
        "schemas": [SCHEMA_SPC],
        "patch": {"supported": true},
        "bulk": {"supported": false, "maxOperations": 0, "maxPayloadSize": 0},
        "filter": {"supported": true, "maxResults": MAX_RESULTS},
        "changePassword": {"supported": false},
        "sort": {"supported": false},
        "etag": {"supported": false},
        "authenticationSchemes": [{
            "type": "oauthbearertoken",
            "name": "Bearer token",
            "description": "Authorization: Bearer <token>; the token is kept in AWS Secrets Manager",
            "primary": true,
        }],
        "meta": {"resourceType": "ServiceProviderConfig", "location": format!("{base}/ServiceProviderConfig")},
    })
}

pub fn resource_type_user(base: &str) -> Value {
    json!({
        "schemas": [SCHEMA_RT],
        "id": "User",
        "name": "User",
        "endpoint": "/Users",
        "description": "An employee's IAM user",
        "schema": SCHEMA_USER,
        "schemaExtensions": [{"schema": SCHEMA_ENTERPRISE, "required": false}],
        "meta": {"resourceType": "ResourceType", "location": format!("{base}/ResourceTypes/User")},
    })
}

fn attr(name: &str, kind: &str, extra: Value) -> Value {
    let mut a = json!({
        "name": name, "type": kind, "multiValued": false, "required": false,
        "caseExact": false, "mutability": "readWrite", "returned": "default",
        "uniqueness": "none", "description": name,
    });
    if let (Some(a), Some(e)) = (a.as_object_mut(), extra.as_object()) {
        for (k, v) in e {
            a.insert(k.clone(), v.clone());
        }
    }
    a
}

/// The attributes this endpoint keeps (the others are accepted and not kept).
pub fn schemas(base: &str) -> Vec<Value> {
    let sub = |n: &str| attr(n, "string", json!({}));
    let user = json!({
        "schemas": [SCHEMA_SCHEMA],
        "id": SCHEMA_USER,
        "name": "User",
        "description": "An employee's IAM user (contract section 10)",
        "attributes": [
            attr("userName", "string", json!({"required": true, "uniqueness": "server", "mutability": "immutable", "description": "the IAM user name (lower-cased); never changed"})),
            // Required here (RFC 7643 leaves it to the service provider): it is
            // the employee id, unless the enterprise employeeNumber is sent.
            attr("externalId", "string", json!({"required": true, "caseExact": true, "mutability": "immutable", "description": "the HR employee id (or send the enterprise employeeNumber)"})),
            attr("active", "boolean", json!({})),
            attr("name", "complex", json!({"subAttributes": [sub("givenName"), sub("familyName")]})),
            // Required: the joiner's welcome mail goes to the primary one.
            attr("emails", "complex", json!({"required": true, "multiValued": true, "subAttributes": [attr("value", "string", json!({"required": true})), sub("type"), attr("primary", "boolean", json!({}))]})),
        ],
        "meta": {"resourceType": "Schema", "location": format!("{base}/Schemas/{SCHEMA_USER}")},
    });
    let ent = json!({
        "schemas": [SCHEMA_SCHEMA],
        "id": SCHEMA_ENTERPRISE,
        "name": "EnterpriseUser",
        "description": "Enterprise User",
        "attributes": [
            attr("employeeNumber", "string", json!({"mutability": "immutable"})),
            attr("department", "string", json!({})),
            attr("manager", "complex", json!({"subAttributes": [attr("value", "string", json!({"description": "the manager's id or email"}))]})),
        ],
        "meta": {"resourceType": "Schema", "location": format!("{base}/Schemas/{SCHEMA_ENTERPRISE}")},
    });
    vec![user, ent]
}

/// Checks a manager reference that is an email address.
pub fn manager_email(v: &str) -> Option<String> {
    check_email("manager", v).ok().map(|()| v.to_owned())
}

fn get_ci<'a>(o: &'a Map<String, Value>, key: &str) -> Option<&'a Value> {
    o.get(key).or_else(|| {
        o.iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(key))
            .map(|(_, v)| v)
    })
}

fn strip_ci<'a>(s: &'a str, prefix: &str) -> Option<&'a str> {
    s.get(..prefix.len())
        .filter(|p| p.eq_ignore_ascii_case(prefix))
        .map(|_| &s[prefix.len()..])
}

fn non_empty(s: &str) -> Option<String> {
    let t = s.trim();
    (!t.is_empty()).then(|| t.to_owned())
}

fn string(name: &str, v: &Value) -> Result<String, ScimError> {
    opt_string(name, v)?.ok_or_else(|| ScimError::bad("invalidValue", format!("{name} is empty")))
}

fn opt_string(name: &str, v: &Value) -> Result<Option<String>, ScimError> {
    match v {
        Value::Null => Ok(None),
        Value::String(s) => Ok(non_empty(s)),
        _ => Err(ScimError::bad(
            "invalidValue",
            format!("{name} must be a string"),
        )),
    }
}

/// A boolean, or Entra's `"True"`/`"False"` strings (any case).
fn boolean(name: &str, v: &Value) -> Result<bool, ScimError> {
    match v {
        Value::Bool(b) => Ok(*b),
        Value::String(s) if s.eq_ignore_ascii_case("true") => Ok(true),
        Value::String(s) if s.eq_ignore_ascii_case("false") => Ok(false),
        _ => Err(ScimError::bad(
            "invalidValue",
            format!("{name} must be a boolean"),
        )),
    }
}

/// Keeps ids and paths echoed in errors short.
pub fn clip(s: &str) -> String {
    s.chars().take(80).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn patch(ops: Value) -> Value {
        json!({"schemas": [SCHEMA_PATCH], "Operations": ops})
    }

    fn held() -> Held {
        let tags = [
            (TAG_EMPLOYEE_ID, "E1"),
            (TAG_MANAGED_BY, MANAGED_BY),
            (TAG_STATUS, "active"),
            (TAG_EMAIL, "jane.doe@example.com"),
            (TAG_DEPARTMENT, "engineering"),
            (TAG_MANAGER_EMAIL, "lead@example.com"),
            (TAG_LAST_EVENT_ID, "ev-1"),
            (TAG_LAST_EVENT_AT, "2026-11-22T09:00:00Z"),
        ];
        Held {
            user_name: "jane.doe".into(),
            tags: tags
                .iter()
                .map(|(k, v)| ((*k).into(), (*v).into()))
                .collect(),
            created: Some("2026-11-22T09:00:01Z".into()),
        }
    }

    #[test]
    fn a_full_user_maps_to_the_contract_record() {
        let rec = record_from_user(&json!({
            "schemas": [SCHEMA_USER, SCHEMA_ENTERPRISE],
            "userName": "Jane.Doe@Example.com",
            "externalId": "E1",
            "name": {"givenName": "Jane", "familyName": "Doe"},
            "emails": [{"value": "home@example.org", "type": "home"},
                       {"value": "jane.doe@example.com", "type": "work", "primary": true}],
            "password": "never-read",
            SCHEMA_ENTERPRISE: {"employeeNumber": "100009", "department": "engineering",
                                "manager": {"value": "lead", "displayName": "Lead"}},
        }))
        .unwrap();
        assert_eq!(rec.employee_id(), Some("E1"), "externalId wins");
        assert_eq!(rec.employee_number.as_deref(), Some("100009"));
        assert_eq!(rec.user_name.as_deref(), Some("Jane.Doe@Example.com"));
        assert_eq!(rec.email.as_deref(), Some("jane.doe@example.com"));
        assert_eq!(
            (rec.first_name.as_deref(), rec.last_name.as_deref()),
            (Some("Jane"), Some("Doe"))
        );
        assert_eq!(rec.department.as_deref(), Some("engineering"));
        assert_eq!(rec.manager.as_deref(), Some("lead"));
        assert!(rec.active, "absent active means active");
        assert_eq!(
            id_for("Jane.Doe@Example.com").unwrap(),
            "jane.doe@example.com"
        );
    }

    #[test]
    fn employee_number_is_the_id_without_external_id() {
        let rec = record_from_user(&json!({
            "userName": "a", SCHEMA_ENTERPRISE: {"employeeNumber": "100009"}
        }))
        .unwrap();
        assert_eq!(rec.employee_id(), Some("100009"));
    }

    #[test]
    fn email_choice_primary_then_work_then_first() {
        let pick = |emails: Value| record_from_user(&json!({"emails": emails})).unwrap().email;
        assert_eq!(
            pick(json!([{"value": "a@x.io"}, {"value": "b@x.io", "primary": "True"}])),
            Some("b@x.io".into())
        );
        assert_eq!(
            pick(json!([{"value": "a@x.io", "type": "home"}, {"value": "w@x.io", "type": "work"}])),
            Some("w@x.io".into())
        );
        assert_eq!(pick(json!([{"value": "a@x.io"}])), Some("a@x.io".into()));
        assert_eq!(pick(json!([])), None);
    }

    #[test]
    fn patch_shapes_of_okta_and_entra() {
        // (what, operations, check)
        type Check = fn(&Record) -> bool;
        let cases: Vec<(&str, Value, Check)> = vec![
            (
                "Okta: no path, value object",
                json!([{"op": "replace", "value": {"active": false}}]),
                |r| !r.active,
            ),
            (
                "Entra: Replace active \"False\"",
                json!([{"op": "Replace", "path": "active", "value": "False"}]),
                |r| !r.active,
            ),
            (
                "RFC: replace active false",
                json!([{"op": "replace", "path": "active", "value": false}]),
                |r| !r.active,
            ),
            (
                "Entra: reactivate \"True\"",
                json!([{"op": "Replace", "path": "active", "value": "True"}]),
                |r| r.active,
            ),
            (
                "Entra: work email",
                json!([{"op": "Replace", "path": "emails[type eq \"work\"].value", "value": "new@example.com"}]),
                |r| r.email.as_deref() == Some("new@example.com"),
            ),
            (
                "Entra: family name",
                json!([{"op": "Replace", "path": "name.familyName", "value": "Smith"}]),
                |r| r.last_name.as_deref() == Some("Smith"),
            ),
            (
                "Entra: enterprise department",
                json!([{"op": "Add", "path": "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:department", "value": "sales"}]),
                |r| r.department.as_deref() == Some("sales"),
            ),
            (
                "Entra: manager by id",
                json!([{"op": "Add", "path": "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:manager", "value": "boss"}]),
                |r| r.manager.as_deref() == Some("boss"),
            ),
            (
                "Entra: remove manager",
                json!([{"op": "Remove", "path": "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:manager"}]),
                |r| r.manager.is_none(),
            ),
            (
                "Entra: dotted keys without path",
                json!([{"op": "Replace", "value": {"name.givenName": "Janet", "displayName": "Janet D"}}]),
                |r| r.first_name.as_deref() == Some("Janet"),
            ),
            (
                "Okta: value with enterprise object",
                json!([{"op": "replace", "value": {SCHEMA_ENTERPRISE: {"department": "sales"}}}]),
                |r| r.department.as_deref() == Some("sales"),
            ),
            (
                "Okta: whole emails array",
                json!([{"op": "replace", "path": "emails", "value": [{"value": "o@example.com", "primary": true}]}]),
                |r| r.email.as_deref() == Some("o@example.com"),
            ),
        ];
        for (what, ops, check) in cases {
            let mut rec = held().record();
            apply_patch(&mut rec, &patch(ops)).unwrap_or_else(|e| panic!("{what}: {e}"));
            assert!(check(&rec), "{what}: {rec:?}");
            // The rest of the record is what IAM held.
            assert_eq!(rec.employee_id(), Some("E1"), "{what}");
        }
    }

    #[test]
    fn entra_default_mapping_paths_not_kept_are_accepted() {
        let mut rec = held().record();
        let before = rec.clone();
        apply_patch(
            &mut rec,
            &patch(json!([
                {"op": "Add", "path": "addresses[type eq \"work\"].formatted", "value": "1 Main St"},
                {"op": "Replace", "path": "phoneNumbers[type eq \"mobile\"].value", "value": "555"},
                {"op": "Replace", "path": "title", "value": "Engineer"},
                {"op": "Replace", "path": "preferredLanguage", "value": "en-US"}
            ])),
        )
        .unwrap();
        assert_eq!(rec, before);
    }

    #[test]
    fn patch_refusals_name_the_scim_type() {
        let cases = [
            (
                json!({"Operations": [{"op": "replace", "value": {"active": false}}]}),
                "invalidSyntax",
            ),
            (patch(json!([])), "invalidSyntax"),
            (
                patch(json!([{"op": "move", "path": "active", "value": false}])),
                "invalidSyntax",
            ),
            (patch(json!([{"op": "remove"}])), "noTarget"),
            (
                patch(json!([{"op": "remove", "path": "active"}])),
                "mutability",
            ),
            (
                patch(json!([{"op": "replace", "path": "active", "value": "maybe"}])),
                "invalidValue",
            ),
            (
                patch(
                    json!([{"op": "replace", "path": "emails[type eq \"home\"].value", "value": "x"}]),
                ),
                "invalidPath",
            ),
            (
                patch(
                    json!([{"op": "replace", "path": "phoneNumbers[type eq \"work\"", "value": "x"}]),
                ),
                "invalidPath",
            ),
            (
                patch(json!([{"op": "replace", "value": "not an object"}])),
                "invalidValue",
            ),
        ];
        for (body, scim_type) in cases {
            let err = apply_patch(&mut held().record(), &body).unwrap_err();
            assert_eq!(
                (err.status, err.scim_type),
                (400, Some(scim_type)),
                "{body}"
            );
        }
    }

    #[test]
    fn event_type_follows_active_and_iam_state() {
        let mut r = Record {
            active: true,
            ..Record::default()
        };
        assert_eq!(event_type_for(&r, None), EventType::Joined);
        assert_eq!(event_type_for(&r, Some(true)), EventType::Changed);
        assert_eq!(event_type_for(&r, Some(false)), EventType::Joined, "rehire");
        r.active = false;
        assert_eq!(event_type_for(&r, Some(true)), EventType::Left);
    }

    #[test]
    fn the_event_parses_as_the_provisioner_parses_it() {
        let rec = held().record();
        let body = event_body(
            EventType::Changed,
            "ev-2",
            "2026-11-23T09:00:00Z",
            "E1",
            "jane.doe",
            &rec,
            Some("lead@example.com"),
        );
        let ev = crate::event::parse_body(&body).unwrap();
        assert_eq!(ev.event_type, EventType::Changed);
        assert_eq!(ev.user_name, "jane.doe");
        assert_eq!(ev.employee.employee_id, "E1");
        assert_eq!(ev.employee.department.as_deref(), Some("engineering"));
        assert_eq!(
            ev.employee.manager_email.as_deref(),
            Some("lead@example.com")
        );
    }

    #[test]
    fn get_answers_from_the_tags() {
        let v = held().resource("https://h/scim/v2");
        assert_eq!(v["id"], "jane.doe");
        assert_eq!(v["userName"], "jane.doe");
        assert_eq!(v["externalId"], "E1");
        assert_eq!(v["active"], true);
        assert_eq!(v["emails"][0]["value"], "jane.doe@example.com");
        assert_eq!(v[SCHEMA_ENTERPRISE]["department"], "engineering");
        assert_eq!(v["meta"]["location"], "https://h/scim/v2/Users/jane.doe");
        assert_eq!(v["meta"]["lastModified"], "2026-11-22T09:00:00Z");
        let mut retired = held();
        retired
            .tags
            .insert(TAG_STATUS.into(), STATUS_RETIRED.into());
        assert_eq!(retired.resource("b")["active"], false);
        let mut foreign = held();
        foreign.tags.remove(TAG_MANAGED_BY);
        assert!(!foreign.managed());
    }

    #[test]
    fn filters() {
        assert_eq!(
            parse_filter("userName eq \"a@b.io\""),
            Ok(Filter::UserName("a@b.io".into()))
        );
        assert_eq!(
            parse_filter("username EQ \"x\""),
            Ok(Filter::UserName("x".into()))
        );
        assert_eq!(
            parse_filter("externalId eq \"E 1\""),
            Ok(Filter::ExternalId("E 1".into()))
        );
        assert_eq!(
            parse_filter("urn:ietf:params:scim:schemas:core:2.0:User:userName eq \"q\\\"t\""),
            Ok(Filter::UserName("q\"t".into()))
        );
        for bad in [
            "userName sw \"a\"",
            "emails[type eq \"work\"].value eq \"a\"",
            "userName eq a",
            "displayName eq \"x\"",
            "userName eq \"a\" and active eq true",
            "",
        ] {
            assert_eq!(
                parse_filter(bad).unwrap_err().scim_type,
                Some("invalidFilter"),
                "{bad}"
            );
        }
    }

    #[test]
    fn paging_rules() {
        assert_eq!(paging(None, None), Ok((1, MAX_RESULTS)));
        assert_eq!(paging(Some("0"), Some("2")), Ok((1, 2)));
        assert_eq!(paging(Some("3"), Some("-1")), Ok((3, 0)));
        assert_eq!(paging(Some("1"), Some("100000")), Ok((1, MAX_RESULTS)));
        assert_eq!(
            paging(Some("x"), None).unwrap_err().scim_type,
            Some("invalidValue")
        );
    }

    #[test]
    fn error_objects_carry_status_as_a_string() {
        let e = ScimError::bad("invalidFilter", "nope").to_json();
        assert_eq!(
            e,
            json!({"schemas": [SCHEMA_ERROR], "status": "400", "scimType": "invalidFilter", "detail": "nope"})
        );
        let e = ScimError::not_found("x").to_json();
        assert_eq!(e["status"], "404");
        assert!(e.get("scimType").is_none());
        assert_eq!(
            ScimError::uniqueness("taken").to_json()["scimType"],
            "uniqueness"
        );
    }
}
