//! Replays every target's corpus (`fuzz/corpus/<target>/`: the seeds and every input libFuzzer
//! kept, minimized by `make fuzz`) and the regression inputs (`fuzz/regressions/<target>/`: each
//! input that once broke an invariant, kept by name and never minimized away). Runs in
//! `make test`; `make fuzz` grows the corpora.

#![allow(clippy::unwrap_used)]
use std::path::Path;

fn inputs(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    entries
        .map(|e| {
            let path = e.unwrap().path();
            let name = path.file_name().unwrap().to_string_lossy().into_owned();
            (name, std::fs::read(&path).unwrap())
        })
        .collect()
}

#[test]
fn every_corpus_and_regression_input_keeps_its_invariants() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut failures = Vec::new();
    let mut total = 0;
    for (name, target) in fuzz::TARGETS {
        let corpus = inputs(&root.join("corpus").join(name));
        assert!(!corpus.is_empty(), "{name}: empty corpus");
        let regressions = inputs(&root.join("regressions").join(name));
        for (file, data) in corpus.iter().chain(&regressions) {
            total += 1;
            if let Err(why) = target(data) {
                failures.push(format!("{name}/{file}: {why}"));
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {total} inputs failed:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

#[test]
fn regression_inputs_belong_to_a_target() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("regressions");
    for entry in std::fs::read_dir(&root).unwrap() {
        let name = entry.unwrap().file_name().to_string_lossy().into_owned();
        assert!(
            fuzz::TARGETS.iter().any(|(t, _)| *t == name),
            "fuzz/regressions/{name} is not a target"
        );
    }
}
