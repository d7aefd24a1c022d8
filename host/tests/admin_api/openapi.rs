//! The OpenAPI document: the one served is the one in the repo, and it
//! covers every route the routers register.

use super::*;

/// The `(method, path)` pairs a router file registers: each
/// `.route("/path", get(..).post(..))` in `text` (after `from`, before
/// `until`), with `prefix` before its path; only paths under `/admin/api`
/// or the probes are kept.
fn routes_in(text: &str, from: &str, until: &str, prefix: &str) -> Vec<(String, String)> {
    let start = text
        .find(from)
        .unwrap_or_else(|| panic!("{from:?} not found"));
    let rest = &text[start..];
    let section = &rest[..rest.find(until).unwrap_or(rest.len())];
    let mut found = Vec::new();
    for chunk in section.split(".route(").skip(1) {
        let Some(open) = chunk.find('"') else {
            continue;
        };
        let Some(len) = chunk[open + 1..].find('"') else {
            continue;
        };
        let path = format!("{prefix}{}", &chunk[open + 1..open + 1 + len]);
        if !(path.starts_with("/admin/api/")
            || ["/metrics", "/healthz", "/readyz"].contains(&path.as_str()))
        {
            continue;
        }
        let calls = &chunk[open + 1 + len..];
        for method in ["get", "post", "put", "delete", "patch"] {
            let needle = format!("{method}(");
            let called = calls.match_indices(&needle).any(|(at, _)| {
                calls[..at]
                    .chars()
                    .last()
                    .is_none_or(|c| !(c.is_alphanumeric() || c == '_' || c == ':'))
            });
            if called {
                found.push((method.to_string(), path.clone()));
            }
        }
    }
    found
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_openapi_document_is_the_one_in_the_repo_and_covers_every_route() {
    let host = start(5).await;
    let path = "/admin/api/openapi.json";
    let anonymous = host.http.get(host.url(path)).send().await.expect("get");
    assert_eq!(anonymous.status(), 401);
    assert_eq!(
        host.get("ann", path).send().await.expect("get").status(),
        403
    );
    let (status, served) = send(host.get("boss", path)).await;
    assert_eq!(status, 200, "{served}");

    // (a) The document is the one kept in the repository.
    let manifest = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let file = manifest.join("../docs/admin-openapi.json");
    if std::env::var("COMFYUME_BLESS").as_deref() == Ok("1") {
        let mut text = serde_json::to_string_pretty(&served).expect("pretty");
        text.push('\n');
        std::fs::write(&file, text).expect("write docs/admin-openapi.json");
    }
    let kept: Value = serde_json::from_str(
        &std::fs::read_to_string(&file).expect("read docs/admin-openapi.json"),
    )
    .expect("docs/admin-openapi.json is JSON");
    assert!(
        kept == served,
        "docs/admin-openapi.json differs from the document the host serves; if the change is \
         meant, regenerate it with `COMFYUME_BLESS=1 cargo test -p comfyume --test admin_api \
         openapi` and commit it"
    );

    // (b) Every route is documented, and every documented path is routed.
    let read = |name: &str| {
        std::fs::read_to_string(manifest.join(name)).unwrap_or_else(|e| panic!("{name}: {e}"))
    };
    let admin = read("src/admin/mod.rs");
    let dashboard = read("src/admin/dashboard/mod.rs");
    let mut routed: Vec<(String, String)> = [
        routes_in(&admin, "let api = Router::new()", ".nest(", "/admin/api"),
        routes_in(&admin, ".nest(", ".merge(", ""),
        routes_in(&dashboard, "Router::new()", ".with_state(", ""),
    ]
    .concat();
    routed.sort();
    routed.dedup();
    assert!(routed.len() > 25, "too few routes parsed: {routed:?}");
    let mut documented: Vec<(String, String)> = served["paths"]
        .as_object()
        .expect("paths")
        .iter()
        .flat_map(|(path, item)| {
            item.as_object()
                .expect("path item")
                .keys()
                .filter(|m| ["get", "post", "put", "delete", "patch"].contains(&m.as_str()))
                .map(|m| (m.clone(), path.clone()))
                .collect::<Vec<_>>()
        })
        .collect();
    documented.sort();
    let undocumented: Vec<_> = routed.iter().filter(|r| !documented.contains(r)).collect();
    assert!(
        undocumented.is_empty(),
        "routes without a #[utoipa::path] listed in admin::openapi::AdminApi: {undocumented:?}"
    );
    let unrouted: Vec<_> = documented.iter().filter(|d| !routed.contains(d)).collect();
    assert!(
        unrouted.is_empty(),
        "documented but not routed: {unrouted:?}"
    );
    // Every admin operation needs the login; the probes do not.
    for (method, path) in &documented {
        let security = &served["paths"][path][method]["security"];
        if path.starts_with("/admin/api") {
            assert_eq!(security, &json!([{"basic": []}]), "{method} {path}");
            assert!(
                served["paths"][path][method]["responses"]["401"].is_object(),
                "{method} {path}"
            );
        } else {
            assert_eq!(security, &json!([{}]), "{method} {path}");
        }
    }
}
