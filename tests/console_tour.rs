//! A tour of the console over a lab's worth of data: three trees, their
//! checkouts, builds, jobs and tests with mixed results, two regressions and
//! telemetry from three labs. Every page must draw it without a script
//! error; the screenshots it saves are the README's
//! (`KCI_SCREENSHOTS=docs/screenshots cargo test --test console_tour`).
#![allow(clippy::unwrap_used)]

mod common;

use common::TestServer;
use common::browser::Browser;
use serde_json::{Value, json};

const TREES: [(&str, &str, &str); 3] = [
    ("mainline", "master", "v6.13-rc1-42-g1a2b3c4d5e6f"),
    ("next", "master", "next-20261201"),
    ("stable", "linux-6.6.y", "v6.6.63"),
];

const BUILDS: [(&str, &str, &str); 3] = [
    ("x86_64", "x86_64_defconfig", "gcc-12"),
    ("arm64", "defconfig", "clang-17"),
    ("riscv", "defconfig", "gcc-12"),
];

fn revision(tree: &str, branch: &str, describe: &str, n: usize) -> Value {
    json!({"tree": tree, "branch": branch, "describe": describe,
           "url": format!("https://git.kernel.org/pub/scm/linux/kernel/git/{tree}/linux.git"),
           "commit": format!("{:040x}", 0x1a2b_3c4d_u64 * (n as u64 + 7))})
}

/// Posts a node; its id.
fn post(srv: &TestServer, body: Value) -> String {
    srv.make_node(srv.admin(), &body)["id"]
        .as_str()
        .unwrap()
        .to_string()
}

/// A done node's state and result, from a number that spreads results.
fn outcome(n: usize) -> (&'static str, Option<&'static str>) {
    match n % 7 {
        0 | 2 | 3 | 5 => ("done", Some("pass")),
        1 => ("done", Some("fail")),
        4 => ("running", None),
        _ => ("done", Some("incomplete")),
    }
}

/// Three trees of two checkouts each → builds → jobs → tests, and two regressions.
fn populate_nodes(srv: &TestServer) -> String {
    let mut n = 0;
    let mut first_checkout = String::new();
    let rounds = TREES
        .iter()
        .map(|(tree, branch, describe)| (*tree, *branch, format!("{describe}~1")))
        .chain(TREES.iter().map(|(t, b, d)| (*t, *b, d.to_string())));
    for (t, (tree, branch, describe)) in rounds.enumerate() {
        let rev = revision(tree, branch, &describe, t);
        let treeid = format!("{:064x}", t + 1);
        let checkout = post(
            srv,
            json!({"kind": "checkout", "name": "checkout", "path": ["checkout"],
                   "state": "done", "result": "pass", "treeid": treeid,
                   "data": {"kernel_revision": rev}}),
        );
        if first_checkout.is_empty() {
            first_checkout = checkout.clone();
        }
        for (arch, defconfig, compiler) in BUILDS {
            n += 1;
            let (state, result) = outcome(n);
            let name = format!("kbuild-{compiler}-{arch}");
            let kbuild = post(
                srv,
                json!({"kind": "kbuild", "name": name, "path": ["checkout", name],
                       "parent": checkout, "state": state, "result": result, "treeid": treeid,
                       "artifacts": {"kernel": format!("https://storage.example.org/{treeid}/{arch}/bzImage"),
                                     "build_log": format!("https://storage.example.org/{treeid}/{arch}/build.log")},
                       "data": {"kernel_revision": rev, "arch": arch, "defconfig": defconfig,
                                "compiler": compiler}}),
            );
            for platform in ["qemu", "rk3399-rock-pi-4b"] {
                n += 1;
                let job_name = "baseline";
                let job = post(
                    srv,
                    json!({"kind": "job", "name": job_name, "path": ["checkout", name, job_name],
                           "parent": kbuild, "state": "done", "result": outcome(n).1,
                           "treeid": treeid,
                           "data": {"kernel_revision": rev, "arch": arch, "platform": platform,
                                    "runtime": "lava-collabora"}}),
                );
                for test in ["login", "dmesg.emerg", "dmesg.crit"] {
                    n += 1;
                    let (state, result) = outcome(n);
                    post(
                        srv,
                        json!({"kind": "test", "name": test,
                               "path": ["checkout", name, job_name, test],
                               "parent": job, "state": state, "result": result,
                               "treeid": treeid,
                               "data": {"kernel_revision": rev, "arch": arch,
                                        "platform": platform}}),
                    );
                }
            }
        }
    }
    for (tree, branch, describe) in &TREES[..2] {
        post(
            srv,
            json!({"kind": "regression", "name": "baseline.login", "path": ["checkout", "baseline.login"],
                   "state": "done", "result": "fail",
                   "data": {"arch": "arm64", "platform": "rk3399-rock-pi-4b",
                            "failed_kernel_revision": revision(tree, branch, describe, 0)}}),
        );
    }
    first_checkout
}

/// Job results and infrastructure errors from three labs.
fn populate_telemetry(srv: &TestServer) {
    let labs = [
        ("lava-collabora", ["qemu", "rk3399-rock-pi-4b"]),
        ("lava-baylibre", ["meson-g12b-odroid-n2", "qemu"]),
        ("pull-labs", ["bcm2711-rpi-4-b", "qemu"]),
    ];
    let mut events = Vec::new();
    let mut n = 0usize;
    for (l, (lab, devices)) in labs.iter().enumerate() {
        for device in devices {
            for i in 0..(12 + 4 * l) {
                n += 1;
                let result = match (n + l) % 9 {
                    0 | 1 => "fail",
                    2 => "incomplete",
                    3 => "skip",
                    _ => "pass",
                };
                let infra = result == "incomplete" && i % 2 == 0;
                events.push(json!({"kind": "job_result", "runtime": lab, "device_type": device,
                                   "device_id": format!("{device}-{}", i % 3),
                                   "job_name": "baseline", "tree": "mainline", "branch": "master",
                                   "arch": "arm64", "result": result, "is_infra_error": infra,
                                   "error_type": if infra { Value::from("Infrastructure") } else { Value::Null }}));
            }
        }
        // one device that fails every job: an anomaly
        for _ in 0..4 {
            events.push(
                json!({"kind": "job_result", "runtime": lab, "device_type": "imx8mp-evk",
                               "job_name": "baseline", "result": "incomplete",
                               "is_infra_error": true, "error_type": "LAVATimeout",
                               "error_msg": "Job timed out after 600 s"}),
            );
        }
    }
    let (status, body) = srv.post_json("/telemetry", srv.admin(), &Value::Array(events));
    assert_eq!(status, 200, "{body}");
}

#[test]
fn the_console_draws_a_lab_of_data_on_every_page() {
    let srv = TestServer::start();
    let Some(mut b) = Browser::start() else {
        return;
    };
    let checkout = populate_nodes(&srv);
    populate_telemetry(&srv);

    b.goto(&srv.url("/dashboard"));
    b.wait_text("#main", "linux-6.6.y");
    b.wait_text("#main", "baseline.login");
    b.wait_until("every count", |b| {
        let text = b.text("#main")?;
        (!text.contains('…')).then_some(())
    });
    b.screenshot("readme-dashboard");

    b.goto(&srv.url("/viewer"));
    b.wait_text("#main", "dmesg.crit");
    b.screenshot("readme-viewer");

    b.goto(&srv.url(&format!("/viewer?node={checkout}")));
    b.wait_text("#main", "kbuild-clang-17-arm64");
    b.wait_text("#main", "dmesg.emerg");
    b.screenshot("readme-viewer-tree");

    b.goto(&srv.url("/analytics"));
    b.wait_text("#main", "lava-baylibre");
    b.wait_text("#main", "imx8mp-evk");
    b.wait_until("the charts", |b| (b.count("svg.chart") >= 2).then_some(()));
    b.screenshot("readme-analytics");

    b.goto(&srv.url("/stats"));
    b.wait_text("#main", "kbuild");
    b.screenshot("readme-stats");

    b.assert_no_js_errors();
}
