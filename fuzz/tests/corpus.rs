//! Replays every target's corpus (`fuzz/corpus/<target>/`: the seeds and every input libFuzzer
//! kept, minimized by `make fuzz`) and the regression inputs (`fuzz/regressions/<target>/`: each
//! input that once broke an invariant, kept by name and never minimized away). Runs in
//! `make test`; `make fuzz` grows the corpora.

#![allow(clippy::unwrap_used)]
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};

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

/// Replays targets taken in turn from `next` until none is left: (inputs run, failures).
fn replay(root: &Path, next: &AtomicUsize) -> (usize, Vec<String>) {
    let mut failures = Vec::new();
    let mut total = 0;
    while let Some((name, target)) = fuzz::TARGETS.get(next.fetch_add(1, Ordering::Relaxed)) {
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
    (total, failures)
}

#[test]
fn every_corpus_and_regression_input_keeps_its_invariants() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    // Two threads take the targets in turn (the replay is most of this crate's test time).
    let next = AtomicUsize::new(0);
    let ((n1, mut failures), (n2, more)) = std::thread::scope(|s| {
        let other = s.spawn(|| replay(root, &next));
        let mine = replay(root, &next);
        (other.join().unwrap(), mine)
    });
    failures.extend(more);
    assert!(
        failures.is_empty(),
        "{} of {} inputs failed:\n{}",
        failures.len(),
        n1 + n2,
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
