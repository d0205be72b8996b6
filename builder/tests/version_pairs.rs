//! Debian version ordering checked on real version strings from the trixie
//! archive, against the order dpkg itself gives (fixture made by
//! `fixtures/make_version_pairs.sh`).

use std::cmp::Ordering;
use std::process::Command;

use nodeimg::debian::version;

fn pairs() -> Vec<(String, String, Ordering)> {
    let text = include_str!("fixtures/version_pairs.txt");
    text.lines()
        .map(|line| {
            let fields: Vec<&str> = line.split('\t').collect();
            let ordering = match fields[2] {
                "<" => Ordering::Less,
                "=" => Ordering::Equal,
                ">" => Ordering::Greater,
                other => panic!("bad relation {other:?} in fixture line {line:?}"),
            };
            (fields[0].to_string(), fields[1].to_string(), ordering)
        })
        .collect()
}

#[test]
fn ordering_matches_dpkg_on_real_versions() {
    let pairs = pairs();
    assert!(pairs.len() >= 300, "the fixture holds a few hundred pairs");
    let mismatches: Vec<String> = pairs
        .iter()
        .filter(|(a, b, expected)| version::compare(a, b).unwrap() != *expected)
        .map(|(a, b, expected)| format!("{a} vs {b}: dpkg says {expected:?}"))
        .collect();
    assert!(mismatches.is_empty(), "{}", mismatches.join("\n"));
}

/// The fixture itself is right: dpkg agrees with every line today.
#[test]
fn fixture_agrees_with_dpkg() {
    if Command::new("dpkg").arg("--version").output().is_err() {
        eprintln!("dpkg is not installed: fixture not re-checked");
        return;
    }
    for (a, b, expected) in pairs() {
        let op = match expected {
            Ordering::Less => "lt",
            Ordering::Equal => "eq",
            Ordering::Greater => "gt",
        };
        let status = Command::new("dpkg")
            .args(["--compare-versions", &a, op, &b])
            .status()
            .unwrap();
        assert!(status.success(), "dpkg disagrees: {a} {op} {b}");
    }
}
