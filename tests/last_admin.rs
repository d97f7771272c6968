//! The server always keeps an administrator: the last active superuser
//! cannot lose its flag, be deactivated or be deleted, by itself or by
//! anyone; with a second one, either may go.
#![allow(clippy::unwrap_used)] // tests may unwrap

mod common;

use common::*;
use serde_json::json;

const LAST: &str =
    "The last active superuser cannot be removed, deactivated or lose its superuser flag";

fn admin_id(srv: &TestServer) -> String {
    let (status, me) = srv.get("/whoami", srv.admin());
    assert_eq!(status, 200, "{me}");
    me["id"].as_str().unwrap().to_string()
}

#[test]
fn the_last_active_superuser_stays() {
    let srv = TestServer::start();
    let id = admin_id(&srv);
    for patch in [json!({"is_superuser": false}), json!({"is_active": false})] {
        let (status, body) = srv.patch_json(&format!("/user/{id}"), srv.admin(), &patch);
        assert_detail(status, &body, 400, LAST);
    }
    let (status, body) = srv.delete(&format!("/user/{id}"), srv.admin());
    assert_detail(status, &body, 400, LAST);
    // nothing changed: still an active superuser, still able to administer
    let (status, me) = srv.get("/whoami", srv.admin());
    assert_eq!(status, 200, "{me}");
    assert_eq!(
        (me["is_superuser"].clone(), me["is_active"].clone()),
        (json!(true), json!(true))
    );
    let (status, _) = srv.get("/users", srv.admin());
    assert_eq!(status, 200);
    // other changes to the last superuser are fine
    let (status, body) = srv.patch_json(
        &format!("/user/{id}"),
        srv.admin(),
        &json!({"is_verified": true}),
    );
    assert_eq!(status, 200, "{body}");
}

#[test]
fn with_a_second_superuser_either_may_go() {
    let srv = TestServer::start();
    let id = admin_id(&srv);
    let other = srv.make_user(&[]);
    let (status, body) = srv.patch_json(
        &format!("/user/{}", other.id),
        srv.admin(),
        &json!({"is_superuser": true}),
    );
    assert_eq!(status, 200, "{body}");
    // an inactive superuser does not count as an administrator
    let (status, body) = srv.patch_json(
        &format!("/user/{}", other.id),
        srv.admin(),
        &json!({"is_active": false}),
    );
    assert_eq!(status, 200, "{body}");
    let (status, body) = srv.patch_json(
        &format!("/user/{id}"),
        srv.admin(),
        &json!({"is_superuser": false}),
    );
    assert_detail(status, &body, 400, LAST);
    let (status, body) = srv.patch_json(
        &format!("/user/{}", other.id),
        srv.admin(),
        &json!({"is_active": true}),
    );
    assert_eq!(status, 200, "{body}");
    // now the first may step down, and the second remains
    let (status, body) = srv.patch_json(
        &format!("/user/{id}"),
        srv.admin(),
        &json!({"is_superuser": false}),
    );
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["is_superuser"], false);
    let (status, body) = srv.delete(&format!("/user/{}", other.id), other.auth());
    assert_detail(status, &body, 400, LAST);
}
