//! Kind-specific validation of a node's `data` (contract 6.2).
//!
//! Pure: checks a JSON value against a small per-kind table of keys and
//! types. Apart from the kernel version string conversion the contract asks
//! for, `data` is never changed: no defaults, no normalisation.

use serde_json::{Map, Value};

use crate::ids::parse_id;

/// The value type a checked key must have.
#[derive(Debug, Clone, Copy)]
enum Type {
    /// A JSON string (numbers are not coerced).
    Str,
    /// A list of JSON strings.
    StrList,
    /// A 24-hex id string.
    Id,
    /// A list of 24-hex id strings.
    IdList,
    /// One of `ERROR_CODES`.
    ErrorCode,
    /// One of `CHECKOUT_ERROR_CODES`.
    CheckoutErrorCode,
    /// A `scheme://something` URL, any scheme.
    Url,
    /// A JSON object with any content.
    Object,
    /// A JSON boolean.
    Bool,
    /// A JSON integer (no floats, no bools, no strings).
    Int,
    /// An object checked against `REVISION`.
    Revision,
    /// An object checked against `KERNEL_VERSION`.
    KernelVersion,
}

/// One checked key of an object.
struct Field {
    key: &'static str,
    ty: Type,
    required: bool,
}

const fn opt(key: &'static str, ty: Type) -> Field {
    Field {
        key,
        ty,
        required: false,
    }
}

const fn req(key: &'static str, ty: Type) -> Field {
    Field {
        key,
        ty,
        required: true,
    }
}

const ERROR_CODES: &[&str] = &[
    "invalid_job_params",
    "submit_error",
    "node_timeout",
    "Infrastructure",
    "Canceled",
    "Job",
    "Bug",
    "Test",
    "Configuration",
    "LAVATimeout",
    "MultinodeTimeout",
    "ObjectNotPersisted",
    "Unexisting permission codename.",
    "job_generation_error",
    "kbuild_internal_error",
];

const CHECKOUT_ERROR_CODES: &[&str] = &["node_timeout", "git_checkout_failure"];

/// The members of `kernel_revision.version` that arrive as strings.
const VERSION_NUMBERS: &[&str] = &["version", "patchlevel", "sublevel"];

const REVISION: &[Field] = &[
    req("tree", Type::Str),
    req("url", Type::Url),
    req("branch", Type::Str),
    req("commit", Type::Str),
    opt("describe", Type::Str),
    opt("version", Type::KernelVersion),
    opt("patchset", Type::Str),
    opt("commit_tags", Type::StrList),
    opt("commit_message", Type::Str),
    opt("tip_of_branch", Type::Bool),
];

const KERNEL_VERSION: &[Field] = &[
    req("version", Type::Int),
    req("patchlevel", Type::Int),
    opt("sublevel", Type::Int),
    opt("extra", Type::Str),
    opt("name", Type::Str),
];

const CHECKOUT: &[Field] = &[
    opt("kernel_revision", Type::Revision),
    opt("error_code", Type::CheckoutErrorCode),
    opt("error_msg", Type::Str),
    opt("architecture_filter", Type::StrList),
];

const KBUILD: &[Field] = &[
    opt("kernel_revision", Type::Revision),
    opt("arch", Type::Str),
    opt("defconfig", Type::Str),
    opt("fragments", Type::StrList),
    opt("compiler", Type::Str),
    opt("config_full", Type::Str),
    opt("platform", Type::Str),
    opt("runtime", Type::Str),
    opt("job_id", Type::Str),
    opt("job_context", Type::Str),
    opt("kernel_type", Type::Str),
    opt("error_code", Type::ErrorCode),
    opt("error_msg", Type::Str),
    opt("regression", Type::Id),
];

/// Shared by `test` and `job`.
const TEST: &[Field] = &[
    opt("kernel_revision", Type::Revision),
    opt("test_revision", Type::Revision),
    opt("test_source", Type::Url),
    opt("platform", Type::Str),
    opt("device", Type::Str),
    opt("runtime", Type::Str),
    opt("job_id", Type::Str),
    opt("job_context", Type::Str),
    opt("arch", Type::Str),
    opt("defconfig", Type::Str),
    opt("config_full", Type::Str),
    opt("compiler", Type::Str),
    opt("kernel_type", Type::Str),
    opt("error_code", Type::ErrorCode),
    opt("error_msg", Type::Str),
    opt("regression", Type::Id),
    opt("misc", Type::Object),
];

const REGRESSION: &[Field] = &[
    opt("fail_node", Type::Id),
    opt("pass_node", Type::Id),
    opt("node_sequence", Type::IdList),
    opt("error_code", Type::ErrorCode),
    opt("error_msg", Type::Str),
    opt("arch", Type::Str),
    opt("defconfig", Type::Str),
    opt("config_full", Type::Str),
    opt("compiler", Type::Str),
    opt("platform", Type::Str),
    opt("device", Type::Str),
    opt("failed_kernel_revision", Type::Revision),
];

/// Free-form kinds: `data` only has to be an object (or null).
const ANY: &[Field] = &[];

/// The checked keys of `kind`, or None for a kind this module does not know.
fn schema(kind: &str) -> Option<&'static [Field]> {
    match kind {
        "checkout" => Some(CHECKOUT),
        "kbuild" => Some(KBUILD),
        "test" | "job" => Some(TEST),
        "regression" => Some(REGRESSION),
        "node" | "process" => Some(ANY),
        _ => None,
    }
}

/// Validates `data` for `kind` in place. Before validation, in
/// `data.kernel_revision.version` the members `version`, `patchlevel`,
/// `sublevel` that are non-empty strings are converted to integers
/// ("6" -> 6); a non-numeric string is an error. Returns Err(detail) with a
/// free-text detail that names the failing location (e.g. contains
/// "kernel_revision.url"). Unknown keys are kept untouched; no defaults are
/// added; null for an optional key is always allowed. `data` may be null
/// (then nothing to check) or an object; kinds: checkout, kbuild, test, job,
/// process, regression, node (node and process: any object). An unknown kind
/// is not this function's concern (return Ok).
pub fn validate(kind: &str, data: &mut Value) -> Result<(), String> {
    let Some(fields) = schema(kind) else {
        return Ok(());
    };
    check_data(fields, data).map_err(|problem| format!("Invalid data for kind {kind}: {problem}"))
}

fn check_data(fields: &[Field], data: &mut Value) -> Result<(), String> {
    let obj = match data {
        Value::Null => return Ok(()),
        Value::Object(obj) => obj,
        _ => return Err(problem("data", "Input should be a valid dictionary")),
    };
    convert_version_strings(obj)?;
    check_object(fields, obj, "data")
}

/// `loc: msg`, the shape of every problem this module reports.
fn problem(loc: &str, msg: &str) -> String {
    format!("{loc}: {msg}")
}

/// Turns the non-empty string members of `kernel_revision.version` into
/// integers, as upstream does before validation (older clients send "6").
fn convert_version_strings(data: &mut Map<String, Value>) -> Result<(), String> {
    let Some(version) = data
        .get_mut("kernel_revision")
        .and_then(|rev| rev.get_mut("version"))
        .and_then(Value::as_object_mut)
    else {
        return Ok(());
    };
    for key in VERSION_NUMBERS {
        let Some(Value::String(text)) = version.get(*key) else {
            continue;
        };
        if text.is_empty() {
            continue;
        }
        let number = text.trim().parse::<i64>().map_err(|_| {
            problem(
                &format!("data.kernel_revision.version.{key}"),
                "Input should be a valid integer, unable to parse string as an integer",
            )
        })?;
        version.insert((*key).to_string(), Value::from(number));
    }
    Ok(())
}

/// Checks the listed keys of `obj`, in table order, stopping at the first
/// problem. Keys not listed are not looked at.
fn check_object(fields: &[Field], obj: &Map<String, Value>, loc: &str) -> Result<(), String> {
    for field in fields {
        let here = format!("{loc}.{}", field.key);
        match obj.get(field.key) {
            None if field.required => return Err(problem(&here, "Field required")),
            None => {}
            Some(Value::Null) if !field.required => {}
            Some(value) => check_value(field.ty, value, &here)?,
        }
    }
    Ok(())
}

fn check_value(ty: Type, value: &Value, loc: &str) -> Result<(), String> {
    match ty {
        Type::Str => value
            .as_str()
            .map(|_| ())
            .ok_or_else(|| problem(loc, "Input should be a valid string")),
        Type::StrList => check_list(Type::Str, value, loc),
        Type::Id => match value.as_str() {
            Some(text) if parse_id(text).is_some() => Ok(()),
            _ => Err(problem(
                loc,
                "Input should be a valid ObjectId (a 24-character hex string)",
            )),
        },
        Type::IdList => check_list(Type::Id, value, loc),
        Type::ErrorCode => check_choice(ERROR_CODES, value, loc),
        Type::CheckoutErrorCode => check_choice(CHECKOUT_ERROR_CODES, value, loc),
        Type::Url => match value.as_str() {
            Some(text) if is_url(text) => Ok(()),
            Some(_) => Err(problem(loc, "Input should be a valid URL")),
            None => Err(problem(loc, "URL input should be a string or URL")),
        },
        Type::Object => value
            .as_object()
            .map(|_| ())
            .ok_or_else(|| problem(loc, "Input should be a valid dictionary")),
        Type::Bool => value
            .as_bool()
            .map(|_| ())
            .ok_or_else(|| problem(loc, "Input should be a valid boolean")),
        Type::Int => {
            if value.is_i64() || value.is_u64() {
                Ok(())
            } else {
                Err(problem(loc, "Input should be a valid integer"))
            }
        }
        Type::Revision => check_model(REVISION, value, loc),
        Type::KernelVersion => check_model(KERNEL_VERSION, value, loc),
    }
}

fn check_model(fields: &[Field], value: &Value, loc: &str) -> Result<(), String> {
    match value.as_object() {
        Some(obj) => check_object(fields, obj, loc),
        None => Err(problem(
            loc,
            "Input should be a valid dictionary or object to extract fields from",
        )),
    }
}

fn check_list(item: Type, value: &Value, loc: &str) -> Result<(), String> {
    let items = value
        .as_array()
        .ok_or_else(|| problem(loc, "Input should be a valid list"))?;
    for (index, element) in items.iter().enumerate() {
        check_value(item, element, &format!("{loc}.{index}"))?;
    }
    Ok(())
}

fn check_choice(choices: &[&str], value: &Value, loc: &str) -> Result<(), String> {
    match value.as_str() {
        Some(text) if choices.contains(&text) => Ok(()),
        _ => {
            let quoted: Vec<String> = choices.iter().map(|c| format!("'{c}'")).collect();
            let (last, rest) = quoted.split_last().map_or(("", &[][..]), |(l, r)| (l, r));
            Err(problem(
                loc,
                &format!("Input should be {} or {last}", rest.join(", ")),
            ))
        }
    }
}

/// Whether `text` looks like `scheme://something`: an RFC 3986 scheme, then
/// `://`, then a non-empty rest. The well-known network schemes also need a
/// host. Whitespace and control characters are never part of a URL.
fn is_url(text: &str) -> bool {
    let Some((scheme, rest)) = text.split_once("://") else {
        return false;
    };
    let mut chars = scheme.chars();
    let scheme_ok = chars.next().is_some_and(|c| c.is_ascii_alphabetic())
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'));
    if !scheme_ok || rest.is_empty() || text.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return false;
    }
    let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
    let host = authority.rsplit('@').next().unwrap_or("");
    let needs_host = matches!(
        scheme.to_ascii_lowercase().as_str(),
        "http" | "https" | "ws" | "wss" | "ftp"
    );
    !needs_host || !host.is_empty()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const ID1: &str = "65a1355ee98651d0fe81e412";
    const ID2: &str = "65a1355ee98651d0fe81e413";

    fn revision() -> Value {
        json!({
            "tree": "mainline",
            "url": "https://git.kernel.org/pub/scm/linux/kernel/git/torvalds/linux.git",
            "branch": "master",
            "commit": "052d534373b7ed33712a63d5e17b2b6cdbce84fd",
            "describe": "v6.7-9928-g052d534373b7",
        })
    }

    /// Validates a copy of `data` and returns the copy as it was left.
    fn run(kind: &str, data: Value) -> Result<Value, String> {
        let mut data = data;
        validate(kind, &mut data).map(|()| data)
    }

    /// Asserts a rejection whose detail names `loc`, and returns the detail.
    fn rejects(kind: &str, data: Value, loc: &str) -> String {
        let detail = run(kind, data.clone()).expect_err(&format!("{kind} {data} accepted"));
        assert!(
            detail.starts_with(&format!("Invalid data for kind {kind}: ")),
            "{detail}"
        );
        assert!(detail.contains(loc), "{detail:?} does not name {loc}");
        detail
    }

    fn accepts(kind: &str, data: Value) {
        let stored = run(kind, data.clone()).unwrap_or_else(|e| panic!("{kind}: {e}"));
        assert_eq!(stored, data, "valid data must be left as it was");
    }

    #[test]
    fn valid_bodies_of_every_kind() {
        let mut full_rev = revision();
        full_rev["version"] = json!({"version": 6, "patchlevel": 7, "sublevel": 0,
            "extra": "-rc1", "name": "Hurr durr"});
        full_rev["patchset"] = json!("abc");
        full_rev["commit_tags"] = json!(["v6.7"]);
        full_rev["commit_message"] = json!("msg");
        full_rev["tip_of_branch"] = json!(true);
        accepts("checkout", json!({"kernel_revision": revision()}));
        accepts(
            "checkout",
            json!({"kernel_revision": full_rev, "error_code": "git_checkout_failure",
                "error_msg": "boom", "architecture_filter": ["x86_64", "arm64"]}),
        );
        accepts(
            "kbuild",
            json!({"kernel_revision": revision(), "arch": "x86_64",
                "defconfig": "defconfig", "compiler": "gcc-12", "fragments": ["kselftest"],
                "config_full": "defconfig+kselftest", "platform": "p", "runtime": "k8s",
                "job_id": "1", "job_context": "ctx", "kernel_type": "bzImage",
                "error_code": "kbuild_internal_error", "error_msg": "e", "regression": ID1}),
        );
        for kind in ["test", "job"] {
            accepts(
                kind,
                json!({"kernel_revision": revision(), "test_revision": revision(),
                    "test_source": "https://github.com/x/y.git", "platform": "qemu-x86",
                    "device": "d", "runtime": "lava-x", "job_id": "j", "job_context": "c",
                    "arch": "x86_64", "defconfig": "d", "config_full": "c", "compiler": "gcc",
                    "kernel_type": "k", "error_code": "Infrastructure", "error_msg": "m",
                    "regression": ID1, "misc": {"a": 1}}),
            );
        }
        accepts(
            "regression",
            json!({"fail_node": ID1, "pass_node": ID2, "node_sequence": [ID1, ID2],
                "error_code": "Unexisting permission codename.", "error_msg": "m",
                "arch": "a", "defconfig": "d", "config_full": "c", "compiler": "g",
                "platform": "p", "device": "d", "failed_kernel_revision": revision()}),
        );
    }

    #[test]
    fn empty_and_null_data_are_valid_for_every_kind() {
        for kind in [
            "checkout",
            "kbuild",
            "test",
            "job",
            "regression",
            "node",
            "process",
        ] {
            accepts(kind, json!({}));
            accepts(kind, Value::Null);
        }
    }

    #[test]
    fn node_and_process_accept_any_object() {
        let data = json!({"anything": [1, 2, {"goes": true}], "arch": 64,
            "kernel_revision": "not checked", "error_code": "exploded"});
        accepts("node", data.clone());
        accepts("process", data);
    }

    #[test]
    fn data_that_is_not_an_object_is_rejected() {
        for kind in [
            "checkout",
            "kbuild",
            "test",
            "job",
            "regression",
            "node",
            "process",
        ] {
            for data in [json!([1, 2]), json!("text"), json!(3), json!(true)] {
                rejects(kind, data, "data: ");
            }
        }
    }

    #[test]
    fn unknown_kind_is_not_checked() {
        let mut data = json!([1]);
        assert_eq!(validate("bogus", &mut data), Ok(()));
        assert_eq!(data, json!([1]));
    }

    #[test]
    fn unknown_keys_are_kept_in_order() {
        let data = json!({"zeta": 1, "kernel_revision": revision(),
            "alpha": {"y": 2, "b": 3}, "mid": [3, 2, 1]});
        let stored = run("checkout", data.clone()).expect("valid");
        assert_eq!(stored, data);
        let keys: Vec<&String> = stored.as_object().expect("object").keys().collect();
        assert_eq!(keys, ["zeta", "kernel_revision", "alpha", "mid"]);
        let inner: Vec<&String> = stored["alpha"]
            .as_object()
            .expect("object")
            .keys()
            .collect();
        assert_eq!(inner, ["y", "b"]);
    }

    #[test]
    fn null_is_allowed_for_every_optional_key() {
        accepts(
            "kbuild",
            json!({"kernel_revision": null, "arch": null, "fragments": null,
                "error_code": null, "regression": null}),
        );
        accepts(
            "test",
            json!({"test_source": null, "misc": null, "test_revision": null}),
        );
        accepts(
            "regression",
            json!({"node_sequence": null, "failed_kernel_revision": null}),
        );
        let mut rev = revision();
        rev["describe"] = Value::Null;
        rev["version"] = Value::Null;
        rev["commit_tags"] = Value::Null;
        rev["tip_of_branch"] = Value::Null;
        accepts("checkout", json!({"kernel_revision": rev}));
        let mut rev = revision();
        rev["version"] = json!({"version": 6, "patchlevel": 7, "sublevel": null,
            "extra": null, "name": null});
        accepts("checkout", json!({"kernel_revision": rev}));
    }

    #[test]
    fn revision_required_keys() {
        for key in ["tree", "url", "branch", "commit"] {
            let mut rev = revision();
            rev.as_object_mut().expect("object").remove(key);
            let detail = rejects(
                "checkout",
                json!({"kernel_revision": rev}),
                &format!("data.kernel_revision.{key}: Field required"),
            );
            assert_eq!(
                detail,
                format!(
                    "Invalid data for kind checkout: data.kernel_revision.{key}: Field required"
                )
            );
            let mut rev = revision();
            rev[key] = Value::Null;
            rejects(
                "checkout",
                json!({"kernel_revision": rev}),
                &format!("data.kernel_revision.{key}"),
            );
        }
    }

    #[test]
    fn revision_in_every_place_is_checked() {
        let bad = json!({"tree": "t", "branch": "b", "commit": "c"});
        rejects(
            "checkout",
            json!({"kernel_revision": bad}),
            "kernel_revision.url",
        );
        rejects(
            "kbuild",
            json!({"kernel_revision": bad}),
            "kernel_revision.url",
        );
        rejects("test", json!({"test_revision": bad}), "test_revision.url");
        rejects(
            "job",
            json!({"kernel_revision": bad}),
            "kernel_revision.url",
        );
        rejects(
            "regression",
            json!({"failed_kernel_revision": bad}),
            "data.failed_kernel_revision.url",
        );
        rejects(
            "checkout",
            json!({"kernel_revision": "x"}),
            "data.kernel_revision:",
        );
        rejects(
            "checkout",
            json!({"kernel_revision": [1]}),
            "data.kernel_revision:",
        );
    }

    #[test]
    fn revision_optional_types() {
        let cases = [
            ("describe", json!(1), "describe"),
            ("patchset", json!(["p"]), "patchset"),
            ("commit_message", json!(false), "commit_message"),
            ("commit_tags", json!("v6.7"), "commit_tags"),
            ("commit_tags", json!(["ok", 1]), "commit_tags.1"),
            ("tip_of_branch", json!("true"), "tip_of_branch"),
            ("tip_of_branch", json!(1), "tip_of_branch"),
            ("version", json!("6.7"), "kernel_revision.version"),
            ("tree", json!(5), "kernel_revision.tree"),
        ];
        for (key, value, loc) in cases {
            let mut rev = revision();
            rev[key] = value;
            rejects("checkout", json!({"kernel_revision": rev}), loc);
        }
    }

    #[test]
    fn urls_of_any_scheme() {
        for url in [
            "https://github.com/x/y.git",
            "http://h",
            "git://git.kernel.org/pub/scm/linux.git",
            "ssh://git@github.com/x/y",
            "file:///srv/linux",
            "git+ssh://host/x",
        ] {
            let mut rev = revision();
            rev["url"] = json!(url);
            accepts("checkout", json!({"kernel_revision": rev}));
            accepts("test", json!({"test_source": url}));
        }
        for url in [
            json!("not a url"),
            json!("//x/y"),
            json!("http://"),
            json!("https:///path"),
            json!("git@github.com:x/y.git"),
            json!("1http://x"),
            json!("://x"),
            json!("http://exa mple.org/"),
            json!(""),
            json!(12),
        ] {
            let mut rev = revision();
            rev["url"] = url.clone();
            rejects(
                "checkout",
                json!({"kernel_revision": rev}),
                "data.kernel_revision.url",
            );
            rejects("test", json!({"test_source": url}), "data.test_source");
        }
    }

    #[test]
    fn version_strings_become_integers() {
        let mut rev = revision();
        rev["version"] = json!({"version": "6", "patchlevel": "7", "sublevel": "12",
            "extra": "-6264-g70d201a40823", "name": "8"});
        let stored = run("checkout", json!({"kernel_revision": rev, "other": 1})).expect("valid");
        assert_eq!(
            stored["kernel_revision"]["version"],
            json!({"version": 6, "patchlevel": 7, "sublevel": 12,
                "extra": "-6264-g70d201a40823", "name": "8"})
        );
        assert_eq!(stored["other"], json!(1));
        let keys: Vec<&String> = stored["kernel_revision"]["version"]
            .as_object()
            .expect("object")
            .keys()
            .collect();
        assert_eq!(keys, ["version", "patchlevel", "sublevel", "extra", "name"]);
    }

    #[test]
    fn version_conversion_for_every_kind_with_kernel_revision() {
        for kind in ["kbuild", "test", "job"] {
            let mut rev = revision();
            rev["version"] = json!({"version": "6", "patchlevel": 7});
            let stored = run(kind, json!({"kernel_revision": rev})).expect("valid");
            assert_eq!(stored["kernel_revision"]["version"]["version"], json!(6));
        }
    }

    #[test]
    fn version_conversion_only_in_kernel_revision() {
        let mut rev = revision();
        rev["version"] = json!({"version": "6", "patchlevel": 7});
        rejects(
            "regression",
            json!({"failed_kernel_revision": rev.clone()}),
            "data.failed_kernel_revision.version.version",
        );
        rejects(
            "test",
            json!({"test_revision": rev}),
            "data.test_revision.version.version",
        );
    }

    #[test]
    fn non_numeric_version_string_is_rejected() {
        for (key, value) in [
            ("version", "six"),
            ("patchlevel", "7a"),
            ("sublevel", "1.5"),
            ("version", "-"),
        ] {
            let mut rev = revision();
            rev["version"] = json!({"version": 6, "patchlevel": 7});
            rev["version"][key] = json!(value);
            rejects(
                "checkout",
                json!({"kernel_revision": rev}),
                &format!("data.kernel_revision.version.{key}"),
            );
        }
    }

    #[test]
    fn empty_version_string_is_not_converted_and_fails() {
        let mut rev = revision();
        rev["version"] = json!({"version": "", "patchlevel": 7});
        rejects(
            "checkout",
            json!({"kernel_revision": rev}),
            "data.kernel_revision.version.version: Input should be a valid integer",
        );
        let mut rev = revision();
        rev["version"] = json!({"version": 6, "patchlevel": 7, "sublevel": ""});
        rejects(
            "checkout",
            json!({"kernel_revision": rev}),
            "data.kernel_revision.version.sublevel",
        );
    }

    #[test]
    fn kernel_version_is_strict_about_integers() {
        let mut rev = revision();
        rev["version"] = json!({"version": 6});
        rejects(
            "checkout",
            json!({"kernel_revision": rev}),
            "data.kernel_revision.version.patchlevel: Field required",
        );
        for bad in [json!(6.0), json!(6.5), json!(true), json!(null), json!([6])] {
            let mut rev = revision();
            rev["version"] = json!({"version": bad, "patchlevel": 7});
            rejects(
                "checkout",
                json!({"kernel_revision": rev}),
                "data.kernel_revision.version.version",
            );
        }
        for bad in [json!(1), json!(false)] {
            let mut rev = revision();
            rev["version"] = json!({"version": 6, "patchlevel": 7, "extra": bad});
            rejects(
                "checkout",
                json!({"kernel_revision": rev}),
                "data.kernel_revision.version.extra",
            );
        }
        let mut rev = revision();
        rev["version"] = json!({"version": -1, "patchlevel": 18446744073709551615u64});
        accepts("checkout", json!({"kernel_revision": rev}));
    }

    #[test]
    fn version_conversion_happens_before_other_checks() {
        let mut rev = revision();
        rev["version"] = json!({"version": "six", "patchlevel": 7});
        rejects(
            "checkout",
            json!({"error_code": "exploded", "kernel_revision": rev}),
            "data.kernel_revision.version.version",
        );
    }

    #[test]
    fn strings_are_not_coerced() {
        for (kind, key) in [
            ("kbuild", "arch"),
            ("kbuild", "job_id"),
            ("test", "platform"),
            ("job", "runtime"),
            ("regression", "device"),
            ("checkout", "error_msg"),
        ] {
            rejects(
                kind,
                json!({ key: 64 }),
                &format!("data.{key}: Input should be a valid string"),
            );
        }
    }

    #[test]
    fn string_lists() {
        rejects(
            "kbuild",
            json!({"fragments": "kselftest"}),
            "data.fragments",
        );
        rejects(
            "kbuild",
            json!({"fragments": ["a", null]}),
            "data.fragments.1",
        );
        rejects(
            "checkout",
            json!({"architecture_filter": [1]}),
            "data.architecture_filter.0",
        );
        accepts("checkout", json!({"architecture_filter": []}));
    }

    #[test]
    fn error_codes() {
        for code in ERROR_CODES {
            accepts("kbuild", json!({ "error_code": code }));
            accepts("test", json!({ "error_code": code }));
            accepts("job", json!({ "error_code": code }));
            accepts("regression", json!({ "error_code": code }));
        }
        rejects(
            "kbuild",
            json!({"error_code": "not-a-code"}),
            "data.error_code",
        );
        rejects("kbuild", json!({"error_code": "bug"}), "data.error_code");
        rejects("test", json!({"error_code": 1}), "data.error_code");
        rejects(
            "kbuild",
            json!({"error_code": "git_checkout_failure"}),
            "data.error_code",
        );
        accepts("checkout", json!({"error_code": "node_timeout"}));
        accepts("checkout", json!({"error_code": "git_checkout_failure"}));
        let detail = rejects("checkout", json!({"error_code": "exploded"}), "error_code");
        assert_eq!(
            detail,
            "Invalid data for kind checkout: data.error_code: \
             Input should be 'node_timeout' or 'git_checkout_failure'"
        );
        rejects(
            "checkout",
            json!({"error_code": "Infrastructure"}),
            "error_code",
        );
    }

    #[test]
    fn ids() {
        accepts("test", json!({"regression": "65A1355EE98651D0FE81E412"}));
        rejects(
            "test",
            json!({"regression": "not-an-object-id"}),
            "data.regression",
        );
        rejects("kbuild", json!({"regression": 12}), "data.regression");
        rejects("regression", json!({"fail_node": "abc"}), "data.fail_node");
        rejects("regression", json!({"pass_node": {}}), "data.pass_node");
        rejects(
            "regression",
            json!({"node_sequence": ["zzz"]}),
            "data.node_sequence.0",
        );
        rejects(
            "regression",
            json!({"node_sequence": ID1}),
            "data.node_sequence: Input should be a valid list",
        );
    }

    #[test]
    fn misc_must_be_an_object() {
        rejects("job", json!({"misc": "not-an-object"}), "data.misc");
        rejects("test", json!({"misc": [1]}), "data.misc");
        accepts("test", json!({"misc": {"nested": {"any": [1, "x"]}}}));
    }

    #[test]
    fn first_problem_only() {
        let detail = rejects("kbuild", json!({"arch": 1, "defconfig": 2}), "data.arch");
        assert!(!detail.contains("defconfig"), "{detail}");
    }

    #[test]
    fn version_conversion_applies_to_free_form_kinds_too() {
        // The contract states the conversion for every kind, before validation.
        for kind in ["node", "process", "regression"] {
            let data = json!({"kernel_revision": {"version": {"version": "6"}}});
            let stored = run(kind, data).expect("valid");
            assert_eq!(stored["kernel_revision"]["version"]["version"], json!(6));
            let data = json!({"kernel_revision": {"version": {"version": "six"}}});
            rejects(kind, data, "data.kernel_revision.version.version");
        }
    }

    #[test]
    fn version_strings_like_python_int() {
        let mut rev = revision();
        rev["version"] = json!({"version": " 6 ", "patchlevel": "+7", "sublevel": "-1"});
        let stored = run("checkout", json!({"kernel_revision": rev})).expect("valid");
        assert_eq!(
            stored["kernel_revision"]["version"],
            json!({"version": 6, "patchlevel": 7, "sublevel": -1})
        );
    }

    /// The table of tests/test_nodes_crud.py::test_kind_specific_data_validation.
    #[test]
    fn conformance_cases() {
        let mut no_patchlevel = revision();
        no_patchlevel["version"] = json!({"version": 6});
        let cases = [
            (
                "checkout",
                json!({"kernel_revision": {"tree": "t", "branch": "b", "commit": "c"}}),
                "kernel_revision",
            ),
            (
                "checkout",
                json!({"kernel_revision": {"tree": "t", "url": "not a url",
                    "branch": "b", "commit": "c"}}),
                "kernel_revision",
            ),
            ("checkout", json!({"error_code": "exploded"}), "error_code"),
            ("kbuild", json!({"error_code": "not-a-code"}), "error_code"),
            ("kbuild", json!({"arch": 64}), "arch"),
            (
                "test",
                json!({"regression": "not-an-object-id"}),
                "regression",
            ),
            ("job", json!({"misc": "not-an-object"}), "misc"),
            (
                "regression",
                json!({"node_sequence": ["zzz"]}),
                "node_sequence",
            ),
            (
                "checkout",
                json!({"kernel_revision": no_patchlevel}),
                "patchlevel",
            ),
        ];
        for (kind, data, where_) in cases {
            rejects(kind, data, where_);
        }
    }

    #[test]
    fn contract_keys_not_listed_for_a_kind_are_not_checked() {
        accepts(
            "checkout",
            json!({"arch": 64, "misc": "x", "regression": "no"}),
        );
        accepts("regression", json!({"kernel_revision": "x", "runtime": 1}));
        accepts("kbuild", json!({"test_source": "not a url", "misc": 1}));
    }
}
