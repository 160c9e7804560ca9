//! `commander specialists import` / `export` through the real binary: a catalogue moved from a
//! file into the database and back out is the same catalogue, and a bad file changes nothing.
#![allow(clippy::unwrap_used)] // Tests: a panic is the failure report.

use std::path::Path;
use std::process::Output;

use serde_json::{Value, json};

mod running_commander;

use running_commander::commander_in;

/// `commander ARGS` in `dir` keeping its catalogue in the (default SQLite) database.
fn run(dir: &Path, args: &[&str]) -> Output {
    commander_in(dir)
        .env("COMMANDER__SPECIALISTS__STORE", "database")
        .args(args)
        .output()
        .unwrap()
}

fn stdout(output: &Output) -> String {
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout.clone()).unwrap()
}

fn specialist(id: &str, name: &str, temperature: f64) -> Value {
    json!({"id": id, "name": name, "provider": "mock", "model": "m",
           "system_prompt": "Be brief.", "temperature": temperature})
}

fn ids_and_versions(catalogue: &Value) -> Vec<(String, u64)> {
    let mut found: Vec<(String, u64)> = catalogue["specialists"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            (
                s["id"].as_str().unwrap().to_owned(),
                s["version"].as_u64().unwrap(),
            )
        })
        .collect();
    found.sort();
    found
}

#[test]
fn a_catalogue_imported_into_the_database_exports_as_it_went_in() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("mine.json");
    let catalogue =
        json!({"specialists": [specialist("a", "Alpha", 0.1), specialist("b", "Beta", 0.2)]});
    std::fs::write(&file, catalogue.to_string()).unwrap();

    let imported = stdout(&run(dir.path(), &["specialists", "import", "mine.json"]));
    assert!(
        imported.contains("2 created, 0 updated, 0 unchanged"),
        "{imported}"
    );
    // Exactly the file: an import into a fresh database is not mixed with the default one.
    let exported: Value =
        serde_json::from_str(&stdout(&run(dir.path(), &["specialists", "export"]))).unwrap();
    assert_eq!(
        ids_and_versions(&exported),
        [("a".to_owned(), 1), ("b".to_owned(), 1)]
    );
    assert_eq!(exported["specialists"][0]["name"], "Alpha");
    assert_eq!(exported["specialists"][1]["temperature"], 0.2);

    // Export to a file, change one specialist there, import it back: one new version.
    let out = dir.path().join("out.json");
    assert!(stdout(&run(dir.path(), &["specialists", "export", "out.json"])).is_empty());
    let mut edited: Value = serde_json::from_str(&std::fs::read_to_string(&out).unwrap()).unwrap();
    assert_eq!(edited, exported, "the file holds what stdout printed");
    edited["specialists"][1]["temperature"] = json!(0.9);
    std::fs::write(&out, edited.to_string()).unwrap();
    let again = stdout(&run(dir.path(), &["specialists", "import", "out.json"]));
    assert!(
        again.contains("0 created, 1 updated, 1 unchanged"),
        "{again}"
    );
    let exported: Value =
        serde_json::from_str(&stdout(&run(dir.path(), &["specialists", "export"]))).unwrap();
    assert_eq!(
        ids_and_versions(&exported),
        [("a".to_owned(), 1), ("b".to_owned(), 2)]
    );
    assert_eq!(exported["specialists"][1]["temperature"], 0.9);
}

#[test]
fn an_import_that_breaks_a_rule_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("first.json"),
        json!({"specialists": [specialist("a", "Alpha", 0.1)]}).to_string(),
    )
    .unwrap();
    stdout(&run(dir.path(), &["specialists", "import", "first.json"]));
    // New `b` is fine alone, but `c` takes Alpha's name (ignoring case): all or nothing.
    std::fs::write(
        dir.path().join("second.json"),
        json!({"specialists": [specialist("b", "Beta", 0.1), specialist("c", "ALPHA", 0.1)]})
            .to_string(),
    )
    .unwrap();
    let refused = run(dir.path(), &["specialists", "import", "second.json"]);
    assert!(!refused.status.success());
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(stderr.contains("name"), "{stderr}");
    let missing = run(dir.path(), &["specialists", "import", "nope.json"]);
    assert!(!missing.status.success());
    assert!(String::from_utf8_lossy(&missing.stderr).contains("nope.json"));

    let exported: Value =
        serde_json::from_str(&stdout(&run(dir.path(), &["specialists", "export"]))).unwrap();
    assert_eq!(ids_and_versions(&exported), [("a".to_owned(), 1)]);
}
