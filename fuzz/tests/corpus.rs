//! Replays every target's corpus (`fuzz/corpus/<target>/`): the seeds and every input libFuzzer
//! kept, crashes found included. Runs in `make test`; `make fuzz` grows the corpora.

use std::path::Path;

#[test]
fn every_corpus_input_keeps_its_invariants() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("corpus");
    let mut failures = Vec::new();
    let mut total = 0;
    for (name, target) in fuzz::TARGETS {
        let dir = root.join(name);
        let entries = std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
        let mut inputs = 0;
        for entry in entries {
            let path = entry.unwrap().path();
            let data = std::fs::read(&path).unwrap();
            inputs += 1;
            if let Err(why) = target(&data) {
                failures.push(format!(
                    "{name}/{}: {why}",
                    path.file_name().unwrap().to_string_lossy()
                ));
            }
        }
        assert!(inputs > 0, "{name}: empty corpus");
        total += inputs;
    }
    assert!(
        failures.is_empty(),
        "{} of {total} inputs failed:\n{}",
        failures.len(),
        failures.join("\n")
    );
}
