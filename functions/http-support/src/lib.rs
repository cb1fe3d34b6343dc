//! The HTTP plumbing the gateway's functions share, so that every endpoint logs, answers
//! and fails in the same shape. Policy stays in `gateway-core`; this crate only knows HTTP.

use std::time::{SystemTime, UNIX_EPOCH};

use gateway_core::identity::{Authentication, IdentityError, TENANT_HEADER, TenantHeader};
use gateway_core::label::ErrorLabel;
use gateway_core::request::RequestError;
use gateway_core::routing::RouteError;
use lambda_http::http::{HeaderMap, HeaderValue, StatusCode, header};
use lambda_http::request::RequestContext;
use lambda_http::{Body, Request, RequestExt, Response};
use serde_json::{Map, Value};

#[cfg(feature = "testing")]
pub mod testing;

/// JSON logs for CloudWatch, filtered by `RUST_LOG` (default `info`).
pub fn init_tracing() {
    tracing_subscriber::fmt()
        .json()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_current_span(false)
        .without_time()
        .with_target(false)
        .init();
}

/// Says once, at cold start, that request bodies will be logged, so that nobody turns
/// `LOG_REQUEST_BODIES` on by accident and forgets it.
pub fn announce_body_logging(enabled: bool) {
    if enabled {
        tracing::warn!(
            "LOG_REQUEST_BODIES=true: request bodies are logged at debug level; turn it off outside debugging"
        );
    }
}

/// Logs the body of a request, only where the deployer asked for it.
pub fn log_body(enabled: bool, request: &Request, request_id: &str) {
    if enabled {
        let body = String::from_utf8_lossy(request.body().as_ref());
        tracing::debug!(request_id, body = %body, "request body");
    }
}

/// A header's value, if present and visible ASCII. Call [`check_gateway_headers`] first:
/// it turns a repeated or non-ASCII gateway header into a 400 instead of a silent `None`.
pub fn header<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

/// The headers the gateway reads: a repeat would make "which one wins" an accident of the
/// proxy in front, so every one of them may appear once.
fn is_gateway_header(name: &str) -> bool {
    name == TENANT_HEADER || name == DEFER_HEADER || name.starts_with("x-cache-") || name.starts_with("x-route-")
}

/// `x-defer: true` lets a Converse request wait for a batch job (see invoke-with-cache).
pub const DEFER_HEADER: &str = "x-defer";

/// Every gateway header appears at most once, and with a visible-ASCII value (`x-tenant-id`
/// is left to the core's tenant rule, which reports it in its own words).
pub fn check_gateway_headers(headers: &HeaderMap) -> Result<(), RequestError> {
    for name in headers.keys() {
        let name = name.as_str();
        if !is_gateway_header(name) {
            continue;
        }
        let mut values = headers.get_all(name).iter();
        let first = values.next();
        if values.next().is_some() {
            return Err(RequestError::invalid(name, "must be given at most once"));
        }
        if name != TENANT_HEADER && first.is_some_and(|v| v.to_str().is_err()) {
            return Err(RequestError::invalid(name, "must be printable ASCII"));
        }
    }
    Ok(())
}

/// `x-tenant-id` as received, raw bytes included, so that a non-ASCII value is judged by the
/// core rather than dropped here.
pub fn tenant_header(headers: &HeaderMap) -> TenantHeader<'_> {
    let mut values = headers.get_all(TENANT_HEADER).iter();
    match (values.next(), values.next()) {
        (None, _) => TenantHeader::Absent,
        (Some(value), None) => TenantHeader::Value(value.as_bytes()),
        (Some(_), Some(_)) => TenantHeader::Repeated,
    }
}

/// What API Gateway's authorizer verified about the caller.
pub fn authentication(request: &Request) -> Authentication<'_> {
    let Some(RequestContext::ApiGatewayV2(context)) = request.request_context_ref() else {
        return Authentication::None;
    };
    let Some(authorizer) = context.authorizer.as_ref() else {
        return Authentication::None;
    };
    if let Some(jwt) = &authorizer.jwt {
        return Authentication::Jwt {
            issuer: jwt.claims.get("iss").map(String::as_str),
            subject: jwt.claims.get("sub").map(String::as_str),
        };
    }
    match &authorizer.iam {
        Some(iam) => Authentication::Iam { user_arn: iam.user_arn.as_deref(), caller_id: iam.caller_id.as_deref() },
        None => Authentication::None,
    }
}

/// The failures of the HTTP boundary every endpoint shares, named, worded and mapped to a
/// status once, so that every function answers them alike.
#[derive(Debug, thiserror::Error)]
pub enum BoundaryError {
    /// The path, as the caller sent it; `serves` lists the endpoints.
    #[error("no route for `{path}`; the API serves {serves}")]
    NotFound { path: String, serves: String },
    /// The method, as the caller sent it.
    #[error("method {method} is not allowed on {route}; use {allow}")]
    MethodNotAllowed { method: String, route: &'static str, allow: HttpMethod },
    /// A malformed body, or an invalid field or gateway header.
    #[error(transparent)]
    Request(#[from] RequestError),
    /// No usable identity: an authorizer that names nobody, a malformed tenant header.
    #[error(transparent)]
    Identity(#[from] IdentityError),
    /// An invalid `x-route-*` header.
    #[error(transparent)]
    Routing(#[from] RouteError),
}

impl BoundaryError {
    /// All of these are the caller's: 4xx, never a 5xx.
    pub fn status(&self) -> StatusCode {
        match self {
            BoundaryError::NotFound { .. } => StatusCode::NOT_FOUND,
            BoundaryError::MethodNotAllowed { .. } => StatusCode::METHOD_NOT_ALLOWED,
            BoundaryError::Identity(IdentityError::Unauthenticated { .. }) => StatusCode::UNAUTHORIZED,
            BoundaryError::Identity(IdentityError::InvalidTenantHeader { .. })
            | BoundaryError::Request(_)
            | BoundaryError::Routing(_) => StatusCode::BAD_REQUEST,
        }
    }

    pub fn label(&self) -> ErrorLabel {
        match self {
            BoundaryError::NotFound { .. } => ErrorLabel::NotFound,
            BoundaryError::MethodNotAllowed { .. } => ErrorLabel::MethodNotAllowed,
            BoundaryError::Request(e) => e.label(),
            BoundaryError::Identity(e) => e.label(),
            BoundaryError::Routing(e) => e.label(),
        }
    }

    /// The field or header at fault, when there is one.
    pub fn field(&self) -> Option<&str> {
        match self {
            BoundaryError::NotFound { .. } | BoundaryError::MethodNotAllowed { .. } => None,
            BoundaryError::Request(e) => e.field(),
            BoundaryError::Identity(e) => e.field(),
            BoundaryError::Routing(e) => Some(e.field()),
        }
    }

    /// Whether the request reached an endpoint; stray paths and methods are not counted.
    pub fn reached_endpoint(&self) -> bool {
        match self {
            BoundaryError::NotFound { .. } | BoundaryError::MethodNotAllowed { .. } => false,
            BoundaryError::Request(_) | BoundaryError::Identity(_) | BoundaryError::Routing(_) => true,
        }
    }

    /// Headers the answer must carry: `allow` on a wrong method.
    pub fn headers(&self) -> &'static [(&'static str, &'static str)] {
        match self {
            BoundaryError::MethodNotAllowed { allow: HttpMethod::Post, .. } => &[("allow", "POST")],
            BoundaryError::MethodNotAllowed { allow: HttpMethod::Get, .. } => &[("allow", "GET")],
            BoundaryError::NotFound { .. }
            | BoundaryError::Request(_)
            | BoundaryError::Identity(_)
            | BoundaryError::Routing(_) => &[],
        }
    }
}

/// The request's path without the API Gateway stage. `rawPath` carries a named stage as its
/// first segment (`/prod/v1/converse`) and nothing under `$default`; a custom domain's base
/// path mapping may have removed it already, so the stage is stripped only when present.
pub fn route_path(request: &Request) -> &str {
    let raw = request.raw_http_path();
    let stage = match request.request_context_ref() {
        Some(RequestContext::ApiGatewayV2(context)) => context.stage.as_deref(),
        _ => None,
    };
    match stage {
        Some(stage) if stage != "$default" && !stage.is_empty() => raw
            .strip_prefix('/')
            .and_then(|rest| rest.strip_prefix(stage))
            .filter(|rest| rest.starts_with('/'))
            .unwrap_or(raw),
        _ => raw,
    }
}

/// The methods the gateway's endpoints answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HttpMethod {
    Get,
    Post,
}

impl HttpMethod {
    pub fn as_str(self) -> &'static str {
        match self {
            HttpMethod::Get => "GET",
            HttpMethod::Post => "POST",
        }
    }

    fn matches(self, method: &lambda_http::http::Method) -> bool {
        match self {
            HttpMethod::Get => method == lambda_http::http::Method::GET,
            HttpMethod::Post => method == lambda_http::http::Method::POST,
        }
    }
}

impl std::fmt::Display for HttpMethod {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One endpoint: a method and a path whose last segment may be a parameter (`/v1/requests/{id}`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Route {
    pub method: HttpMethod,
    pub path: &'static str,
}

impl Route {
    pub const fn post(path: &'static str) -> Route {
        Route { method: HttpMethod::Post, path }
    }

    pub const fn get(path: &'static str) -> Route {
        Route { method: HttpMethod::Get, path }
    }

    /// For a path of this route, the parameter's value (`None` when the route has none).
    /// A parameter is one whole, non-empty segment: `/v1/requests/` and `/v1/requests/a/b`
    /// are not requests' paths.
    fn parameter<'p>(&self, path: &'p str) -> Option<Option<&'p str>> {
        let Some(prefix) = self.path.rfind("/{").filter(|_| self.path.ends_with('}')).map(|at| &self.path[..=at])
        else {
            return (path == self.path).then_some(None);
        };
        let value = path.strip_prefix(prefix)?;
        (!value.is_empty() && !value.contains('/')).then_some(Some(value))
    }
}

/// The route a request was for, and its parameter's value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Matched<'r> {
    /// The route's position in the list given to [`select_route`].
    pub index: usize,
    pub parameter: Option<&'r str>,
}

/// The one route guard: exactly one of `routes`' paths (after the stage) with its method,
/// nothing that merely ends with one.
pub fn select_route<'r>(request: &'r Request, routes: &[Route]) -> Result<Matched<'r>, BoundaryError> {
    let path = route_path(request);
    let Some((index, route, parameter)) =
        routes.iter().enumerate().find_map(|(index, route)| route.parameter(path).map(|p| (index, route, p)))
    else {
        let serves = routes.iter().map(|r| format!("{} {}", r.method, r.path)).collect::<Vec<_>>().join(", ");
        return Err(BoundaryError::NotFound { path: path.to_owned(), serves });
    };
    if !route.method.matches(request.method()) {
        return Err(BoundaryError::MethodNotAllowed {
            method: request.method().to_string(),
            route: route.path,
            allow: route.method,
        });
    }
    Ok(Matched { index, parameter })
}

/// `POST` on exactly `route` (after the stage).
pub fn check_route(request: &Request, route: &'static str) -> Result<(), BoundaryError> {
    select_route(request, &[Route::post(route)]).map(|_| ())
}

/// API Gateway's request ID, or empty outside API Gateway.
pub fn request_id(request: &Request) -> String {
    match request.request_context_ref() {
        Some(RequestContext::ApiGatewayV2(context)) => context.request_id.clone().unwrap_or_default(),
        _ => String::new(),
    }
}

/// A JSON response with extra headers; a header value that is not valid HTTP is dropped
/// rather than failing the response.
pub fn json_response(status: StatusCode, body: &Value, extra: &[(&'static str, &str)]) -> Response<Body> {
    let mut response = Response::new(Body::Text(body.to_string()));
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    for (name, value) in extra {
        if let Ok(value) = HeaderValue::from_str(value) {
            headers.insert(*name, value);
        }
    }
    response
}

/// The error object every endpoint returns under `"error"`: `type` (the failure's label),
/// `message`, and `field` and `requestId` when known. Callers may add members before wrapping it.
pub fn error_object(label: ErrorLabel, message: String, field: Option<&str>, request_id: &str) -> Map<String, Value> {
    let mut error = Map::new();
    error.insert("type".into(), label.as_str().into());
    error.insert("message".into(), message.into());
    if let Some(field) = field {
        error.insert("field".into(), field.into());
    }
    if !request_id.is_empty() {
        error.insert("requestId".into(), request_id.into());
    }
    error
}

/// `{"error": {...}}` with its status and headers.
pub fn error_response(status: StatusCode, error: Map<String, Value>, extra: &[(&'static str, &str)]) -> Response<Body> {
    let mut body = Map::new();
    body.insert("error".into(), Value::Object(error));
    json_response(status, &Value::Object(body), extra)
}

/// Milliseconds since the epoch, for EMF documents.
pub fn now_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_bodies_carry_what_is_known() {
        let response = error_response(
            StatusCode::BAD_REQUEST,
            error_object(ErrorLabel::InvalidRequest, "bad".into(), Some("messages"), "req-1"),
            &[("allow", "POST"), ("bad", "line\nbreak")],
        );
        assert_eq!(response.status(), StatusCode::BAD_REQUEST);
        assert_eq!(response.headers()["allow"], "POST");
        assert!(response.headers().get("bad").is_none(), "invalid header values are dropped");
        let Body::Text(text) = response.body() else { panic!("text body") };
        let body: Value = serde_json::from_str(text).unwrap();
        assert_eq!(body["error"]["field"], "messages");
        assert_eq!(body["error"]["requestId"], "req-1");
        let bare = error_object(ErrorLabel::NotFound, "no".into(), None, "");
        assert!(!bare.contains_key("field") && !bare.contains_key("requestId"));
    }
}
