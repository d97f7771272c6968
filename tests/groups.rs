//! User groups under both path families (API.md section 5).
#![allow(clippy::unwrap_used)] // tests may unwrap

mod common;

use common::*;
use serde_json::{Value, json};

const INVALID_XYZ: &str =
    "'xyz' is not a valid ObjectId, it must be a 12-byte input or a 24-character hex string";

fn not_found(id: &str) -> String {
    format!("User group not found with id: {id}")
}

const ASSIGNED: &str =
    "User group is assigned to users and cannot be deleted. Remove it from users first.";

#[test]
fn create_and_read_back_on_both_families() {
    let srv = TestServer::start();
    for create_path in ["/user-groups", "/group"] {
        let name = uniq("grp");
        let (status, body) = srv.post_json(create_path, srv.admin(), &json!({"name": name}));
        assert_eq!(status, 200, "{create_path}: {body}");
        assert_eq!(keys(&body), ["id", "name"]);
        let id = body["id"].as_str().expect("id");
        assert!(is_object_id(id), "{id}");
        assert_eq!(body["name"], name.as_str());
        let (status, read) = srv.get(&format!("/user-groups/{id}"), srv.admin());
        assert_eq!((status, &read), (200, &body));
        let (status, read) = srv.get(&format!("/group/{id}"), None);
        assert_eq!((status, &read), (200, &body));
        // upper-case ids are accepted, output is lower-case
        let (status, read) = srv.get(&format!("/group/{}", id.to_uppercase()), None);
        assert_eq!((status, &read), (200, &body));
    }
}

#[test]
fn names_with_colons_are_fine() {
    let srv = TestServer::start();
    let name = format!("runtime:{}:node-editor", uniq("lab"));
    let (status, body) = srv.post_json("/user-groups", srv.admin(), &json!({"name": name}));
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["name"], name.as_str());
    let (_, page) = srv.get(&format!("/groups{}", qs(&[("name", &name)])), None);
    assert_eq!(page["items"], json!([body]));
}

#[test]
fn duplicate_names_are_400_across_families() {
    let srv = TestServer::start();
    let via_seed = srv
        .post_json("/group", srv.admin(), &json!({"name": uniq("a")}))
        .1;
    let via_upstream = srv
        .post_json("/user-groups", srv.admin(), &json!({"name": uniq("b")}))
        .1;
    for (path, group) in [
        ("/user-groups", &via_seed),
        ("/group", &via_upstream),
        ("/group", &via_seed),
        ("/user-groups", &via_upstream),
    ] {
        let name = group["name"].as_str().unwrap();
        let (status, body) = srv.post_json(path, srv.admin(), &json!({"name": name}));
        assert_detail(
            status,
            &body,
            400,
            &format!("User group already exists with name: {name}"),
        );
    }
    let (_, page) = srv.get("/groups", None);
    assert_eq!(page["total"], 3, "node:edit:any plus two: {page}");
}

#[test]
fn node_edit_any_exists_at_startup() {
    let srv = TestServer::start();
    let (status, page) = srv.get("/user-groups?name=node:edit:any", srv.admin());
    assert_eq!(status, 200);
    let items = assert_page(&page, 50, 0);
    assert_eq!(page["total"], 1);
    assert_eq!(items[0]["name"], "node:edit:any");
    let (status, body) = srv.post_json("/group", srv.admin(), &json!({"name": "node:edit:any"}));
    assert_detail(
        status,
        &body,
        400,
        "User group already exists with name: node:edit:any",
    );
}

#[test]
fn create_validation() {
    let srv = TestServer::start();
    for path in ["/user-groups", "/group"] {
        let (status, body) = srv.post_json(path, srv.admin(), &json!({}));
        assert_422(
            status,
            &body,
            &[json!("body"), json!("name")],
            Some("missing"),
        );
        let (status, body) = srv.post_json(path, srv.admin(), &json!({"name": 5}));
        assert_422(status, &body, &[json!("body"), json!("name")], None);
        let (status, body) = srv.post_json(path, srv.admin(), &json!({"name": ""}));
        assert_422(status, &body, &[json!("body"), json!("name")], None);
        let name = uniq("withid");
        let (status, body) =
            srv.post_json(path, srv.admin(), &json!({"name": name, "id": MISSING_ID}));
        assert_eq!(status, 400, "{body}");
        assert!(body["detail"].is_string(), "{body}");
        let (_, page) = srv.get(&format!("/groups{}", qs(&[("name", &name)])), None);
        assert_eq!(page["total"], 0, "a refused group is not stored");
    }
    let (_, page) = srv.get("/groups", None);
    assert_eq!(page["total"], 1);
}

#[test]
fn create_needs_admin() {
    let srv = TestServer::start();
    let user = srv.make_user(&[]);
    for path in ["/user-groups", "/group"] {
        let (status, body) = srv.post_json(path, user.auth(), &json!({"name": uniq("g")}));
        assert_detail(status, &body, 403, "Forbidden");
        let (status, body) = srv.post_json(path, None, &json!({"name": uniq("g")}));
        assert_detail(status, &body, 401, "Unauthorized");
    }
    let (_, page) = srv.get("/groups", None);
    assert_eq!(page["total"], 1);
}

#[test]
fn admin_list_pagination_and_filters() {
    let srv = TestServer::start();
    let groups: Vec<Value> = (0..3).map(|_| srv.make_group()).collect();
    let (status, page) = srv.get("/user-groups", srv.admin());
    assert_eq!(status, 200);
    let items = assert_page(&page, 50, 0);
    assert_eq!(page["total"], 4);
    for item in &items {
        assert_eq!(keys(item), ["id", "name"]);
    }
    assert_eq!(items[0]["name"], "node:edit:any", "ascending id order");
    assert_eq!(items[1..].to_vec(), groups);

    let (_, page) = srv.get("/user-groups?limit=1&offset=1", srv.admin());
    assert_eq!(assert_page(&page, 1, 1), vec![groups[0].clone()]);
    assert_eq!(page["total"], 4);

    let name = groups[2]["name"].as_str().unwrap();
    let (_, page) = srv.get(
        &format!("/user-groups{}", qs(&[("name", name)])),
        srv.admin(),
    );
    assert_eq!(page["items"], json!([groups[2]]));
    let (_, page) = srv.get(
        &format!("/user-groups{}", qs(&[("name__re", "^grp-")])),
        srv.admin(),
    );
    assert_eq!(page["total"], 3);
    let id = groups[1]["id"].as_str().unwrap();
    let (_, page) = srv.get(&format!("/user-groups?id={id}"), srv.admin());
    assert_eq!(page["items"], json!([groups[1]]));

    let (status, body) = srv.get("/user-groups?limit=0", srv.admin());
    assert_422(status, &body, &[json!("query"), json!("limit")], None);
    let (status, body) = srv.get("/user-groups?name__bogus=1", srv.admin());
    assert_detail(status, &body, 400, "Unsupported query operator: bogus");
}

#[test]
fn admin_paths_need_admin_seed_reads_are_public() {
    let srv = TestServer::start();
    let user = srv.make_user(&[]);
    let group = srv.make_group();
    let id = group["id"].as_str().unwrap();
    for path in ["/user-groups".to_string(), format!("/user-groups/{id}")] {
        let (status, body) = srv.get(&path, user.auth());
        assert_detail(status, &body, 403, "Forbidden");
        let (status, body) = srv.get(&path, None);
        assert_detail(status, &body, 401, "Unauthorized");
    }
    // the seed's reads are public and ignore a bad Authorization header
    let (status, page) = srv.get("/groups", None);
    assert_eq!(status, 200);
    assert_page(&page, 50, 0);
    let (status, page) = srv.get(
        &format!(
            "/groups{}",
            qs(&[("name", group["name"].as_str().unwrap())])
        ),
        Some("garbage"),
    );
    assert_eq!(status, 200);
    assert_eq!(page["items"], json!([group]));
    assert_eq!(page["total"], 1);
    let (status, body) = srv.get(&format!("/group/{id}"), Some("garbage"));
    assert_eq!((status, body), (200, group));
}

#[test]
fn get_errors_on_both_families() {
    let srv = TestServer::start();
    let (status, body) = srv.get(&format!("/user-groups/{MISSING_ID}"), srv.admin());
    assert_detail(status, &body, 404, &not_found(MISSING_ID));
    let (status, body) = srv.get(&format!("/group/{MISSING_ID}"), None);
    assert_detail(status, &body, 404, &not_found(MISSING_ID));
    let (status, body) = srv.get("/user-groups/xyz", srv.admin());
    assert_detail(status, &body, 400, INVALID_XYZ);
    let (status, body) = srv.get("/group/xyz", None);
    assert_detail(status, &body, 400, INVALID_XYZ);
    // authentication comes before the id check on the admin family
    let (status, body) = srv.get("/user-groups/xyz", None);
    assert_detail(status, &body, 401, "Unauthorized");
}

#[test]
fn delete_on_both_families() {
    let srv = TestServer::start();
    for delete_prefix in ["/user-groups", "/group"] {
        let group = srv.make_group();
        let id = group["id"].as_str().unwrap();
        let reply = srv.request(
            "DELETE",
            &format!("{delete_prefix}/{id}"),
            srv.admin(),
            Body::None,
        );
        assert_eq!(reply.status, 204, "{}", reply.text);
        assert_eq!(reply.text, "");
        let (status, body) = srv.get(&format!("/user-groups/{id}"), srv.admin());
        assert_detail(status, &body, 404, &not_found(id));
        let (status, body) = srv.get(&format!("/group/{id}"), None);
        assert_detail(status, &body, 404, &not_found(id));
        for again in ["/user-groups", "/group"] {
            let (status, body) = srv.delete(&format!("{again}/{id}"), srv.admin());
            assert_detail(status, &body, 404, &not_found(id));
        }
        let (status, body) = srv.delete(&format!("{delete_prefix}/xyz"), srv.admin());
        assert_detail(status, &body, 400, INVALID_XYZ);
        // the name can be used again
        let (status, _) = srv.post_json("/group", srv.admin(), &json!({"name": group["name"]}));
        assert_eq!(status, 200);
    }
}

#[test]
fn delete_needs_admin() {
    let srv = TestServer::start();
    let user = srv.make_user(&[]);
    let group = srv.make_group();
    let id = group["id"].as_str().unwrap();
    for prefix in ["/user-groups", "/group"] {
        let (status, body) = srv.delete(&format!("{prefix}/{id}"), user.auth());
        assert_detail(status, &body, 403, "Forbidden");
        let (status, body) = srv.delete(&format!("{prefix}/{id}"), None);
        assert_detail(status, &body, 401, "Unauthorized");
    }
    let (status, body) = srv.get(&format!("/group/{id}"), None);
    assert_eq!((status, body), (200, group));
}

#[test]
fn deleting_an_assigned_group_is_409_on_both_families() {
    let srv = TestServer::start();
    let group = srv.make_group();
    let gname = group["name"].as_str().unwrap();
    let id = group["id"].as_str().unwrap();
    let member = srv.make_user(&[gname]);
    for prefix in ["/user-groups", "/group"] {
        let (status, body) = srv.delete(&format!("{prefix}/{id}"), srv.admin());
        assert_detail(status, &body, 409, ASSIGNED);
    }
    let (status, body) = srv.get(&format!("/user-groups/{id}"), srv.admin());
    assert_eq!((status, &body), (200, &group));
    let (_, me) = srv.get("/whoami", member.auth());
    assert_eq!(me["groups"], json!([group]));
    // the documented remedy: drop the membership, then delete
    let (status, _) = srv.patch_json(
        &format!("/user/{}", member.id),
        srv.admin(),
        &json!({"groups": ["node:edit:any"]}),
    );
    assert_eq!(status, 200);
    let reply = srv.request("DELETE", &format!("/group/{id}"), srv.admin(), Body::None);
    assert_eq!(reply.status, 204, "{}", reply.text);
    let (_, me) = srv.get("/whoami", member.auth());
    assert_eq!(me["groups"][0]["name"], "node:edit:any");
}

#[test]
fn group_of_a_deleted_or_ungrouped_member_can_be_deleted() {
    let srv = TestServer::start();
    let group = srv.make_group();
    let id = group["id"].as_str().unwrap();
    let member = srv.make_user(&[group["name"].as_str().unwrap()]);
    assert_eq!(
        srv.delete(&format!("/user/{}", member.id), srv.admin()).0,
        200
    );
    let reply = srv.request(
        "DELETE",
        &format!("/user-groups/{id}"),
        srv.admin(),
        Body::None,
    );
    assert_eq!(reply.status, 204, "{}", reply.text);
}

#[test]
fn group_used_by_a_node_can_be_deleted_and_node_keeps_the_name() {
    let srv = TestServer::start();
    let user = srv.make_user(&[]);
    let group = srv.make_group();
    let gname = group["name"].as_str().unwrap();
    let node = srv.make_node(
        user.auth(),
        &json!({"name": uniq("n"), "kind": "process", "path": ["n"], "user_groups": [gname]}),
    );
    let reply = srv.request(
        "DELETE",
        &format!("/user-groups/{}", group["id"].as_str().unwrap()),
        srv.admin(),
        Body::None,
    );
    assert_eq!(reply.status, 204, "{}", reply.text);
    let (status, read) = srv.get(&format!("/node/{}", node["id"].as_str().unwrap()), None);
    assert_eq!(status, 200);
    assert_eq!(read["user_groups"], json!([gname]));
}

#[test]
fn users_filter_by_group_membership() {
    let srv = TestServer::start();
    let group = srv.make_group();
    let gname = group["name"].as_str().unwrap();
    let a = srv.make_user(&[gname]);
    srv.make_user(&[]);
    let (_, page) = srv.get(
        &format!("/users{}", qs(&[("groups.name", gname)])),
        srv.admin(),
    );
    assert_eq!(page["total"], 1);
    assert_eq!(page["items"][0]["id"], a.id.as_str());
    let gid = group["id"].as_str().unwrap();
    let (_, page) = srv.get(&format!("/users{}", qs(&[("groups.id", gid)])), srv.admin());
    assert_eq!(page["total"], 1);
}
