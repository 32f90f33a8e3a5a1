//! The function URL's event (payload format 2.0, which an API Gateway HTTP API
//! sends too) to a [`Request`], and a [`Response`] back.

use aws_lambda_events::event::lambda_function_urls::LambdaFunctionUrlRequest;
use serde_json::{json, Map, Value};
use time::OffsetDateTime;

use super::http::{Request, Response};

#[derive(Debug, thiserror::Error)]
pub enum EventError {
    #[error("the invocation is not a function-URL request: {0}")]
    NotHttp(String),
    #[error("the body is marked base64 but is not")]
    Base64,
}

pub fn request(event: Value) -> Result<Request, EventError> {
    let e: LambdaFunctionUrlRequest =
        serde_json::from_value(event).map_err(|err| EventError::NotHttp(err.to_string()))?;
    let http = &e.request_context.http;
    let method = http
        .method
        .clone()
        .ok_or_else(|| EventError::NotHttp("no requestContext.http.method".into()))?
        .to_ascii_uppercase();
    let path = e
        .raw_path
        .clone()
        .or_else(|| http.path.clone())
        .unwrap_or_else(|| "/".into());
    let body = match (e.body.as_deref(), e.is_base64_encoded) {
        (None, _) => Vec::new(),
        (Some(b), false) => b.as_bytes().to_vec(),
        (Some(b), true) => aws_smithy_types::base64::decode(b).map_err(|_| EventError::Base64)?,
    };
    let headers = e
        .headers
        .iter()
        .filter_map(|(k, v)| Some((k.as_str().to_ascii_lowercase(), v.to_str().ok()?.to_owned())))
        .collect();
    let time = (e.request_context.time_epoch > 0)
        .then(|| {
            OffsetDateTime::from_unix_timestamp_nanos(
                i128::from(e.request_context.time_epoch) * 1_000_000,
            )
            .ok()
        })
        .flatten();
    // Function URLs are HTTPS only; a loopback name is a local run
    // (scripts/front_door_local.py), which serves plain HTTP.
    let origin = e
        .request_context
        .domain_name
        .as_deref()
        .map(|d| {
            let local = d.starts_with("127.0.0.1") || d.starts_with("localhost");
            format!("{}://{d}", if local { "http" } else { "https" })
        })
        .unwrap_or_default();
    Ok(Request {
        method,
        path,
        query: e.raw_query_string.clone().unwrap_or_default(),
        headers,
        body,
        time,
        request_id: e.request_context.request_id.clone().unwrap_or_default(),
        source_ip: http.source_ip.clone().unwrap_or_default(),
        origin,
    })
}

pub fn response(r: &Response) -> Value {
    let headers: Map<String, Value> = r
        .headers
        .iter()
        .map(|(k, v)| (k.clone(), json!(v)))
        .collect();
    json!({
        "statusCode": r.status,
        "headers": headers,
        "body": r.body,
        "isBase64Encoded": false,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_function_url_event_becomes_a_request() {
        let ev = json!({
            "version": "2.0",
            "rawPath": "/scim/v2/Users",
            "rawQueryString": "filter=userName%20eq%20%22a%22",
            "headers": {"Authorization": "Bearer t", "content-type": "application/scim+json"},
            "requestContext": {
                "accountId": "123456789012", "requestId": "r-1",
                "domainName": "abc.lambda-url.us-east-1.on.aws",
                "timeEpoch": 1796000000123_i64,
                "http": {"method": "post", "path": "/scim/v2/Users", "protocol": "HTTP/1.1",
                         "sourceIp": "192.0.2.1", "userAgent": "Okta SCIM Client"}
            },
            "body": "eyJhIjoxfQ==",
            "isBase64Encoded": true
        });
        let r = request(ev).unwrap();
        assert_eq!(r.method, "POST");
        assert_eq!(r.path, "/scim/v2/Users");
        assert_eq!(r.body, br#"{"a":1}"#);
        assert_eq!(r.header("authorization"), Some("Bearer t"));
        assert_eq!(r.time.unwrap().unix_timestamp(), 1_796_000_000);
        assert_eq!(r.origin, "https://abc.lambda-url.us-east-1.on.aws");
        assert_eq!(r.source_ip, "192.0.2.1");
        assert!(request(json!({"Records": []})).is_err());
    }

    #[test]
    fn a_response_is_the_function_url_shape() {
        let v = response(&Response {
            status: 202,
            headers: vec![("content-type".into(), "application/json".into())],
            body: "{}".into(),
        });
        assert_eq!(
            v,
            json!({"statusCode": 202, "headers": {"content-type": "application/json"}, "body": "{}", "isBase64Encoded": false})
        );
    }
}
