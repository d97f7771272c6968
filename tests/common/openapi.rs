//! The OpenAPI document as a test oracle: every answer the shared test
//! client receives for a documented operation is checked against
//! `static/openapi.json` — its status must be documented for that
//! operation, its content type one the document gives for that status, and
//! a JSON body must match the status's schema. The operation is found with
//! the server's own route table (`kci_lite::router::find`), so a request is
//! matched exactly as the server matched it.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};

use jsonschema::{Draft, Registry, Validator};
use kci_lite::api::pages::OPENAPI_JSON;
use kci_lite::http::{Method, split_path};
use kci_lite::router;
use serde_json::Value;

/// The URI the document is registered under, so that a schema's `$ref`s
/// (`#/components/schemas/…`) resolve against the whole document.
const DOC_URI: &str = "urn:kci-lite:openapi";

/// The parsed document.
pub fn document() -> &'static Value {
    static DOC: OnceLock<Value> = OnceLock::new();
    DOC.get_or_init(|| serde_json::from_str(OPENAPI_JSON).expect("static/openapi.json is JSON"))
}

fn registry() -> &'static Registry<'static> {
    static REGISTRY: OnceLock<Registry<'static>> = OnceLock::new();
    REGISTRY.get_or_init(|| {
        Registry::new()
            .draft(Draft::Draft202012)
            .add(DOC_URI, document())
            .and_then(|builder| builder.prepare())
            .expect("the document is a valid schema resource")
    })
}

/// `#/a/b` for the parts `a`, `b` (JSON pointer escapes, then URI escapes).
pub fn pointer(parts: &[&str]) -> String {
    let mut out = String::from("#");
    for part in parts {
        out.push('/');
        for ch in part.replace('~', "~0").replace('/', "~1").chars() {
            if ch.is_ascii_alphanumeric() || "-._~".contains(ch) {
                out.push(ch);
            } else {
                let mut buf = [0u8; 4];
                for b in ch.encode_utf8(&mut buf).bytes() {
                    out.push_str(&format!("%{b:02X}"));
                }
            }
        }
    }
    out
}

/// A validator for the schema at these pointer parts of the document,
/// compiled once per process.
pub fn validator(parts: &[&str]) -> Arc<Validator> {
    static CACHE: OnceLock<Mutex<HashMap<String, Arc<Validator>>>> = OnceLock::new();
    let at = pointer(parts);
    let cache = CACHE.get_or_init(Default::default);
    if let Some(found) = cache.lock().unwrap().get(&at) {
        return Arc::clone(found);
    }
    let schema = serde_json::json!({ "$ref": format!("{DOC_URI}{at}") });
    let built = jsonschema::options()
        .with_draft(Draft::Draft202012)
        .with_registry(registry())
        .build(&schema)
        .unwrap_or_else(|e| panic!("schema {at} of the OpenAPI document does not compile: {e}"));
    let built = Arc::new(built);
    cache.lock().unwrap().insert(at, Arc::clone(&built));
    built
}

fn method_of(name: &str) -> Option<Method> {
    Some(match name.to_ascii_uppercase().as_str() {
        "GET" => Method::Get,
        "POST" => Method::Post,
        "PUT" => Method::Put,
        "PATCH" => Method::Patch,
        "DELETE" => Method::Delete,
        _ => return None,
    })
}

/// The document's (path template, method) of a request, if the server
/// routes it to a documented operation. `url` may be absolute or a path,
/// with or without a version prefix and query.
pub fn operation_of(method: &str, url: &str) -> Option<(&'static str, String)> {
    let method = method_of(method)?;
    let path = match url.find("://") {
        Some(i) => {
            let rest = &url[i + 3..];
            rest.find('/').map_or("/", |j| &rest[j..])
        }
        None => url,
    };
    let path = path.split(['?', '#']).next().unwrap_or("");
    let mut segments = split_path(path);
    if segments.first().is_some_and(|s| s == "latest" || s == "v0") {
        segments.remove(0);
    }
    let (route, _) = router::find(method, &segments)?;
    let name = format!("{method:?}").to_ascii_lowercase();
    document()["paths"][route.path].get(&name)?;
    Some((route.path, name))
}

fn media_type(content_type: &str) -> String {
    content_type
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase()
}

/// Checks one answer against the document (see the module doc); panics
/// with what does not match. Answers of requests the document does not
/// describe (unknown paths, pages, assets) are not checked.
#[track_caller]
pub fn check_answer(method: &str, url: &str, status: u16, content_type: &str, body: &str) {
    let Some((path, name)) = operation_of(method, url) else {
        return;
    };
    let responses = &document()["paths"][path][&name]["responses"];
    let key = status.to_string();
    let Some(response) = responses.get(&key) else {
        let documented: Vec<&String> = responses
            .as_object()
            .map(|o| o.keys().collect())
            .unwrap_or_default();
        panic!(
            "OpenAPI: {method} {url} answered {status}, which the document does not give \
             {} {path} (documented: {documented:?}); body: {body:.300}",
            name.to_uppercase()
        );
    };
    let content = response.get("content").and_then(Value::as_object);
    let Some(content) = content else {
        assert!(
            body.is_empty(),
            "OpenAPI: {method} {url} {status} has no documented body but sent {body:.300}"
        );
        return;
    };
    let media = media_type(content_type);
    assert!(
        content.contains_key(&media),
        "OpenAPI: {method} {url} {status} answered {content_type:?}, documented: {:?}",
        content.keys().collect::<Vec<_>>()
    );
    if media != "application/json" {
        return;
    }
    let value: Value = serde_json::from_str(body).unwrap_or_else(|e| {
        panic!("OpenAPI: {method} {url} {status} is not JSON ({e}): {body:.300}")
    });
    let validator = validator(&[
        "paths",
        path,
        &name,
        "responses",
        &key,
        "content",
        &media,
        "schema",
    ]);
    let errors: Vec<String> = validator
        .iter_errors(&value)
        .take(5)
        .map(|e| format!("{} at {}", e, e.instance_path()))
        .collect();
    assert!(
        errors.is_empty(),
        "OpenAPI: {method} {url} {status} does not match the documented schema of {} {path}: \
         {errors:#?}\nbody: {body:.1000}",
        name.to_uppercase()
    );
}
