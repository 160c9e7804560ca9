//! Tidy checks over the workspace's own files: every crate's `Cargo.toml` against the
//! "must never depend on" rules of `docs/ARCHITECTURE.md` (the human-readable source; the
//! table below states them once, for the machine), its dev-dependencies included; and the
//! table of usage-row error codes in `docs/PROTOCOL.md` against the codes that exist.
#![allow(clippy::unwrap_used)] // Tests: a panic is the failure report.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

/// Our crates from the bottom up: a crate may depend only on crates of a lower layer, so
/// neither upwards nor sideways (the library crates of one layer know nothing of each other).
/// The test crate (`e2e`) is not listed: it may use everything.
const LAYERS: &[(&str, u8)] = &[
    ("core-domain", 0),
    ("log-capture", 0),
    ("fake-upstreams", 0),
    ("specialists", 1),
    ("providers", 1),
    ("pricing", 1),
    ("ratelimit", 1),
    ("usage-store", 1),
    ("budgets", 1),
    ("http-api", 2),
    ("commander", 3),
    ("fake-upstream", 3),
];

/// Third-party crates (a name, or a prefix ending in `*`) that only the named crates may
/// have among their dependencies.
const ONLY_IN: &[(&str, &[&str])] = &[
    // The library crates never serve HTTP; the binaries may, and so may the fakes tests serve.
    ("actix-*", &["http-api", "commander", "fake-upstreams"]),
    ("diesel*", &["usage-store"]),
    ("r2d2", &["usage-store"]),
    ("libsqlite3-sys", &["usage-store"]),
    // The shared rate-limit store is one module of http-api.
    ("redis", &["http-api"]),
    ("reqwest", &["providers"]),
    ("hyper*", &["providers"]),
    // Test support, a dev-dependency only (the fakes also back the load-test binary).
    ("log-capture", &[]),
    ("fake-upstreams", &["fake-upstream"]),
];

/// Further crates a given crate must never depend on.
const NEVER: &[(&str, &[&str])] = &[
    // Vocabulary only: no async runtime, no I/O, no HTTP, no database types.
    (
        "core-domain",
        &["tokio*", "futures*", "async-*", "mio", "http"],
    ),
    // No HTTP, no async runtime.
    ("ratelimit", &["tokio*", "futures*", "async-*", "http"]),
    // Budgets count money; where the counts live is the caller's (no HTTP, no database).
    ("budgets", &["http", "redis"]),
    // The catalogue knows nothing of HTTP.
    ("specialists", &["http"]),
];

/// The crates that exist to be dev-dependencies: the captured log and the fake upstreams. Any
/// crate's tests may use them, whatever the rules say of a normal dependency on them (a
/// layer-0 crate's tests would otherwise be "sideways").
///
/// Every other rule holds for dev-dependencies too, because each says what a crate is, not
/// only what it ships: a library whose tests need a crate above it cannot be tested alone
/// (the tests of `providers` must not reach into `http-api` or `bins/`); a `core-domain` or
/// `ratelimit` whose tests need an async runtime has grown async code; and another crate's
/// tests reach the database or an HTTP stack through the crate that owns it (`usage-store`
/// and its `fixtures`, the fake upstreams), not through a copy of their own.
const TEST_SUPPORT: &[&str] = &["log-capture", "fake-upstreams"];

/// A crate's own name and the names of its dependencies.
struct Manifest {
    name: String,
    /// `[dependencies]` and `[target.*.dependencies]`.
    dependencies: BTreeSet<String>,
    /// `[dev-dependencies]` and `[target.*.dev-dependencies]`.
    dev_dependencies: BTreeSet<String>,
}

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

fn read_toml(path: &Path) -> toml::Table {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    text.parse()
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The package a dependency entry really names: its `package` key (here or in the
/// workspace's table when it is inherited), else its key.
fn real_name(key: &str, entry: &toml::Value, workspace: &toml::Table) -> String {
    let renamed = |value: &toml::Value| {
        value
            .get("package")
            .and_then(toml::Value::as_str)
            .map(str::to_owned)
    };
    if let Some(name) = renamed(entry) {
        return name;
    }
    if entry.get("workspace").and_then(toml::Value::as_bool) == Some(true)
        && let Some(name) = workspace.get(key).and_then(renamed)
    {
        return name;
    }
    key.to_owned()
}

/// The real names of the dependencies in `manifest`'s `section` (`dependencies` or
/// `dev-dependencies`), its `[target.*.section]` tables included.
fn dependency_names(
    manifest: &toml::Table,
    section: &str,
    workspace_dependencies: &toml::Table,
) -> BTreeSet<String> {
    let mut tables: Vec<&toml::Table> = manifest
        .get(section)
        .and_then(toml::Value::as_table)
        .into_iter()
        .collect();
    if let Some(targets) = manifest.get("target").and_then(toml::Value::as_table) {
        tables.extend(
            targets
                .values()
                .filter_map(|target| target.get(section)?.as_table()),
        );
    }
    tables
        .into_iter()
        .flatten()
        .map(|(key, entry)| real_name(key, entry, workspace_dependencies))
        .collect()
}

/// Every member under `crates/` and `bins/`, with its dependencies and dev-dependencies.
fn manifests() -> Vec<Manifest> {
    let root = workspace_root();
    let workspace = read_toml(&root.join("Cargo.toml"));
    let workspace_dependencies = workspace["workspace"]["dependencies"]
        .as_table()
        .unwrap()
        .clone();
    let mut manifests = Vec::new();
    for group in ["crates", "bins"] {
        for entry in std::fs::read_dir(root.join(group)).unwrap() {
            let path = entry.unwrap().path().join("Cargo.toml");
            if !path.exists() {
                continue;
            }
            let manifest = read_toml(&path);
            manifests.push(Manifest {
                name: manifest["package"]["name"].as_str().unwrap().to_owned(),
                dependencies: dependency_names(&manifest, "dependencies", &workspace_dependencies),
                dev_dependencies: dependency_names(
                    &manifest,
                    "dev-dependencies",
                    &workspace_dependencies,
                ),
            });
        }
    }
    manifests
}

fn matches(pattern: &str, name: &str) -> bool {
    match pattern.strip_suffix('*') {
        Some(prefix) => name.starts_with(prefix),
        None => name == pattern,
    }
}

fn layer(name: &str) -> Option<u8> {
    LAYERS
        .iter()
        .find(|(crate_name, _)| *crate_name == name)
        .map(|&(_, layer)| layer)
}

/// Every broken rule, one line each.
fn violations(manifests: &[Manifest]) -> Vec<String> {
    let mut found = Vec::new();
    for manifest in manifests {
        let name = manifest.name.as_str();
        let Some(own_layer) = layer(name) else {
            found.push(format!("{name} is not in the layer table of tests/tidy.rs"));
            continue;
        };
        let dev_dependencies = manifest
            .dev_dependencies
            .iter()
            // A crate may name itself to turn on a feature for its own tests.
            .filter(|d| !TEST_SUPPORT.contains(&d.as_str()) && d.as_str() != name);
        let every = manifest
            .dependencies
            .iter()
            .map(|d| (d, ""))
            .chain(dev_dependencies.map(|d| (d, "dev-")));
        // `dev` is "dev-" for a dev-dependency: "dev-depends on".
        for (dependency, dev) in every {
            if let Some(their_layer) = layer(dependency)
                && their_layer >= own_layer
            {
                found.push(format!(
                    "{name} (layer {own_layer}) {dev}depends on {dependency} (layer {their_layer})"
                ));
            }
            for (pattern, allowed) in ONLY_IN {
                if matches(pattern, dependency) && !allowed.contains(&name) {
                    found.push(format!(
                        "{name} {dev}depends on {dependency}; only {allowed:?} may"
                    ));
                }
            }
            for (crate_name, forbidden) in NEVER {
                if *crate_name == name && forbidden.iter().any(|p| matches(p, dependency)) {
                    found.push(format!("{name} must never {dev}depend on {dependency}"));
                }
            }
        }
    }
    found
}

#[test]
fn every_crate_keeps_to_the_dependency_rules_of_the_architecture() {
    let manifests = manifests();
    let names: BTreeSet<&str> = manifests.iter().map(|m| m.name.as_str()).collect();
    for (listed, _) in LAYERS {
        assert!(
            names.contains(listed),
            "{listed} is in the layer table but not in the workspace"
        );
    }
    let found = violations(&manifests);
    assert!(found.is_empty(), "{}", found.join("\n"));
}

#[test]
fn the_rules_catch_an_arrow_pointing_up_and_a_forbidden_library() {
    // The rules themselves, on made-up manifests: a check that could not fail proves nothing.
    let manifest = |name: &str, dependencies: &[&str], dev_dependencies: &[&str]| Manifest {
        name: name.to_owned(),
        dependencies: dependencies.iter().map(|d| (*d).to_owned()).collect(),
        dev_dependencies: dev_dependencies.iter().map(|d| (*d).to_owned()).collect(),
    };
    let found = violations(&[
        manifest("core-domain", &["tokio", "specialists"], &[]),
        manifest("pricing", &["providers", "reqwest", "diesel"], &[]),
        manifest("ratelimit", &["actix-web", "futures-util"], &[]),
        manifest("http-api", &["actix-web", "core-domain", "commander"], &[]),
        manifest("newcomer", &[], &[]),
        // Tests: the same rules, but the test-support crates are anyone's.
        manifest(
            "core-domain",
            &[],
            &["log-capture", "fake-upstreams", "tokio", "core-domain"],
        ),
        manifest("providers", &[], &["http-api", "diesel", "fake-upstreams"]),
        manifest("commander", &["http-api"], &["usage-store", "log-capture"]),
    ]);
    assert_eq!(
        found,
        [
            "core-domain (layer 0) depends on specialists (layer 1)",
            "core-domain must never depend on tokio",
            "pricing depends on diesel; only [\"usage-store\"] may",
            "pricing (layer 1) depends on providers (layer 1)",
            "pricing depends on reqwest; only [\"providers\"] may",
            "ratelimit depends on actix-web; only [\"http-api\", \"commander\", \"fake-upstreams\"] may",
            "ratelimit must never depend on futures-util",
            "http-api (layer 2) depends on commander (layer 3)",
            "newcomer is not in the layer table of tests/tidy.rs",
            "core-domain must never dev-depend on tokio",
            "providers dev-depends on diesel; only [\"usage-store\"] may",
            "providers (layer 1) dev-depends on http-api (layer 2)",
        ]
    );
}

/// A row's error code is a public contract: operators read the table to know what a row billed.
#[test]
fn every_usage_row_error_code_has_a_line_in_the_protocol_s_table() {
    let protocol = std::fs::read_to_string(workspace_root().join("docs/PROTOCOL.md")).unwrap();
    let missing: Vec<&str> = core_domain::ErrorCode::ALL
        .iter()
        .map(|code| code.as_str())
        .filter(|code| !protocol.contains(&format!("\n| `{code}` |")))
        .collect();
    assert!(
        missing.is_empty(),
        "docs/PROTOCOL.md, \"Failed calls\", lacks: {missing:?}"
    );
}
