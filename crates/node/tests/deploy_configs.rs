//! The example configurations in `deploy/config/`, one per role, are read
//! with the node's own parser (unknown keys refused) and pass the checks
//! `idnode_node::build` makes before it starts: a wrong key or value in an
//! example fails here.

use idnode_node::{Config, LogFormat, check_config};
use std::path::{Path, PathBuf};

const ROLES: [&str; 5] = [
    "top-level",
    "secondary",
    "enterprise",
    "recursive",
    "mirror",
];

fn dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../deploy/config")
}

fn load(role: &str) -> Config {
    let path = dir().join(format!("{role}.toml"));
    let config = Config::load(&path).unwrap_or_else(|e| panic!("{e}"));
    if let Err(e) = check_config(&config) {
        panic!("{}: {e}", path.display());
    }
    config
}

#[test]
fn every_example_is_a_role_and_every_role_has_an_example() {
    let mut found: Vec<String> = std::fs::read_dir(dir())
        .expect("deploy/config is readable")
        .map(|e| e.expect("a directory entry").file_name())
        .map(|name| name.to_string_lossy().into_owned())
        .collect();
    found.sort();
    let mut expected: Vec<String> = ROLES.iter().map(|r| format!("{r}.toml")).collect();
    expected.sort();
    assert_eq!(found, expected);
}

#[test]
fn every_example_loads_and_passes_the_checks() {
    for role in ROLES {
        let config = load(role);
        assert_eq!(config.data_dir, PathBuf::from("/var/lib/idnode"), "{role}");
        assert_eq!(config.log.format, LogFormat::Json, "{role}");
        assert_eq!(config.handle.listen.port(), 2641, "{role}");
        // The examples change something, so a file that stopped being
        // read would not pass as the defaults.
        assert_ne!(config, Config::default(), "{role}");
    }
}

#[test]
fn each_example_says_what_its_role_needs() {
    let top = load("top-level");
    assert_eq!(top.dns.listen.port(), 53);
    assert!(top.recursion.roots.is_empty());
    let secondary = load("secondary");
    assert!(secondary.grpc.tls && secondary.grpc.client_ca.is_some());
    assert_eq!(secondary.dns.tsig_keys.len(), 1);
    let enterprise = load("enterprise");
    assert!(enterprise.grpc.tls);
    assert_eq!(enterprise.dns.gs1_prefix.as_deref(), Some("88.100.1"));
    assert!(enterprise.http.base_url.is_some());
    let recursive = load("recursive");
    assert_eq!(recursive.recursion.roots.len(), 1);
    assert!(!recursive.dns.enabled);
    let mirror = load("mirror");
    assert!(mirror.grpc.listen.ip().is_loopback());
    assert!(mirror.dns.notify.is_empty());
    assert!(mirror.mirror.enabled());
    assert!(mirror.mirror.of.starts_with("https://") && mirror.mirror.pin.is_some());
    assert!(mirror.mirror.token_file.is_some() && mirror.mirror.token.is_none());
    for role in ["top-level", "secondary", "enterprise", "recursive"] {
        assert!(!load(role).mirror.enabled(), "{role}");
    }
}

#[test]
fn the_checks_refuse_what_build_refuses() {
    let bad = |text: &str| {
        let config = Config::from_toml(text, Path::new("x.toml")).expect("parses");
        check_config(&config).expect_err(text).to_string()
    };
    assert!(bad("[grpc]\nlisten = \"0.0.0.0:50051\"\n").contains("--insecure-grpc"));
    assert!(bad("[recursion]\nroots = [\"nowhere\"]\n").contains("recursion"));
    assert!(bad("[recursion]\nclients = [\"10.0.0.0/99\"]\n").contains("recursion"));
    assert!(bad("[rate_limit]\nexempt = [\"x\"]\n").contains("rate_limit"));
    assert!(bad("[site]\nhash = \"random\"\n").contains("site.hash"));
    assert!(bad("[dns]\napexes = []\n").contains("dns"));
    assert!(bad("[mirror]\nof = \"127.0.0.1:50051\"\n").contains("token_file"));
    assert!(bad("[mirror]\nof = \"https://p:50051\"\ntoken = \"t\"\n").contains("ca_file or pin"));
    let pin = "ab".repeat(32);
    assert!(
        bad(&format!(
            "[mirror]\nof = \"p:1\"\ntoken = \"t\"\npin = \"{pin}\"\n"
        ))
        .contains("https")
    );
    assert!(bad("[mirror]\nof = \"p:1\"\ntoken = \"t\"\npin = \"ab\"\n").contains("pin"));
    assert!(bad("demo = true\n[mirror]\nof = \"p:1\"\ntoken = \"t\"\n").contains("demo"));
}
