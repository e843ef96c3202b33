//! `meta/v1 Status` bodies, shaped as a real API server shapes them.

use crate::resources::Resource;
use serde_json::{Value, json};

/// A failed request: HTTP status and its `Status` body.
#[derive(Debug, Clone, PartialEq)]
pub struct ApiError {
    pub code: u16,
    pub body: Value,
    /// `Retry-After` header, in seconds.
    pub retry_after: Option<u32>,
}

fn failure(code: u16, reason: &str, message: String, details: Option<Value>) -> ApiError {
    let mut body = json!({
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": message,
        "reason": reason,
    });
    if let Some(details) = details {
        body["details"] = details;
    }
    body["code"] = json!(code);
    ApiError {
        code,
        body,
        retry_after: None,
    }
}

/// `details` naming an object: name, group (omitted for the core group), kind (the plural).
fn details(resource: &Resource, name: &str) -> Value {
    let mut d = json!({ "name": name });
    if !resource.group.is_empty() {
        d["group"] = json!(resource.group);
    }
    d["kind"] = json!(resource.plural);
    d
}

pub fn not_found(resource: &Resource, name: &str) -> ApiError {
    failure(
        404,
        "NotFound",
        format!("{} \"{name}\" not found", resource.qualified()),
        Some(details(resource, name)),
    )
}

pub fn already_exists(resource: &Resource, name: &str) -> ApiError {
    failure(
        409,
        "AlreadyExists",
        format!("{} \"{name}\" already exists", resource.qualified()),
        Some(details(resource, name)),
    )
}

pub fn conflict(resource: &Resource, name: &str) -> ApiError {
    failure(
        409,
        "Conflict",
        format!(
            "Operation cannot be fulfilled on {} \"{name}\": the object has been modified; please apply your changes to the latest version and try again",
            resource.qualified()
        ),
        Some(details(resource, name)),
    )
}

/// A delete or eviction whose `preconditions.uid` is not the object's.
pub fn uid_conflict(kind: &str, name: &str, wanted: &str, actual: &str) -> ApiError {
    failure(
        409,
        "Conflict",
        format!(
            "Operation cannot be fulfilled on {kind} \"{name}\": the UID in the precondition ({wanted}) does not match the UID in record ({actual}). The object might have been deleted and then recreated"
        ),
        Some(json!({ "name": name, "kind": kind })),
    )
}

/// One `causes[]` entry of a 422.
#[derive(Debug, Clone)]
pub struct Cause {
    pub reason: &'static str,
    pub message: String,
    pub field: String,
}

impl Cause {
    pub fn required(field: &str) -> Cause {
        Cause {
            reason: "FieldValueRequired",
            message: "Required value".into(),
            field: field.into(),
        }
    }

    pub fn invalid(field: &str, message: String) -> Cause {
        Cause {
            reason: "FieldValueInvalid",
            message,
            field: field.into(),
        }
    }
}

/// 422 Invalid. `kind` is what the message names (`Event`, or
/// `leases.coordination.k8s.io`); `details` holds group and kind.
pub fn invalid(kind: &str, name: &str, mut details: Value, causes: &[Cause]) -> ApiError {
    let listed: Vec<String> = causes
        .iter()
        .map(|c| format!("{}: {}", c.field, c.message))
        .collect();
    let summary = match listed.as_slice() {
        [one] => one.clone(),
        many => format!("[{}]", many.join(", ")),
    };
    details["name"] = json!(name);
    details["causes"] = causes
        .iter()
        .map(|c| json!({ "reason": c.reason, "message": c.message, "field": c.field }))
        .collect();
    failure(
        422,
        "Invalid",
        format!("{kind} \"{name}\" is invalid: {summary}"),
        Some(details),
    )
}

/// The generic 422 a failed JSON-patch `test` op gets.
pub fn patch_test_failed() -> ApiError {
    failure(
        422,
        "Invalid",
        "the server rejected our request due to an error in our request".into(),
        Some(json!({})),
    )
}

pub fn bad_request(message: String) -> ApiError {
    failure(400, "BadRequest", message, None)
}

pub fn unsupported_media_type(content_type: &str) -> ApiError {
    failure(
        415,
        "UnsupportedMediaType",
        format!(
            "the body of the request was in an unknown format - accepted media types include: application/json-patch+json, application/merge-patch+json, application/strategic-merge-patch+json (got {content_type:?})"
        ),
        None,
    )
}

pub fn expired(message: String) -> ApiError {
    failure(410, "Expired", message, None)
}

pub fn unauthorized() -> ApiError {
    failure(401, "Unauthorized", "Unauthorized".into(), None)
}

/// 403 as RBAC words it.
pub fn forbidden(
    user: &str,
    verb: &str,
    resource: &Resource,
    sub: Option<&str>,
    namespace: &str,
    name: &str,
) -> ApiError {
    let what = match sub {
        Some(sub) => format!("{}/{sub}", resource.plural),
        None => resource.plural.to_string(),
    };
    let scope = if namespace.is_empty() {
        "at the cluster scope".to_string()
    } else {
        format!("in the namespace \"{namespace}\"")
    };
    let subject = if name.is_empty() {
        resource.qualified()
    } else {
        format!("{} \"{name}\"", resource.qualified())
    };
    let mut d = json!({});
    if !name.is_empty() {
        d["name"] = json!(name);
    }
    if !resource.group.is_empty() {
        d["group"] = json!(resource.group);
    }
    d["kind"] = json!(resource.plural);
    failure(
        403,
        "Forbidden",
        format!(
            "{subject} is forbidden: User \"{user}\" cannot {verb} resource \"{what}\" in API group \"{}\" {scope}",
            resource.group
        ),
        Some(d),
    )
}

/// 429 from the eviction subresource: a disruption budget says no.
pub fn disruption_budget(message: String, retry_after: Option<u32>) -> ApiError {
    let mut d = json!({ "causes": [{ "reason": "DisruptionBudget", "message": message }] });
    if let Some(s) = retry_after {
        d["retryAfterSeconds"] = json!(s);
    }
    let mut err = failure(
        429,
        "TooManyRequests",
        "Cannot evict pod as it would violate the pod's disruption budget.".into(),
        Some(d),
    );
    err.retry_after = retry_after;
    err
}

pub fn internal(message: String) -> ApiError {
    failure(500, "InternalError", message, None)
}

/// 200/201 `Status` of a successful eviction.
pub fn success(code: u16) -> Value {
    json!({ "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success", "code": code })
}

/// 200 `Status` of a delete: details with the uid, and no `code` field.
pub fn deleted(resource: &Resource, name: &str, uid: &str) -> Value {
    let mut d = details(resource, name);
    d["uid"] = json!(uid);
    json!({ "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success", "details": d })
}
