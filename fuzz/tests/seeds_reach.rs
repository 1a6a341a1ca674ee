//! The seeds reach what they are for: each provider's answers come back translated with their
//! text, so the fuzzer starts from deep inside the translators rather than from a 400.

#[test]
fn gateway_seeds_are_answered_with_the_providers_text() {
    let mut reached = 0;
    for (target, name, input) in fuzz::seeds::all() {
        if target != "gateway" || name.ends_with("error") {
            continue;
        }
        let answer = fuzz::gateway_answer(&input).unwrap_or_else(|e| panic!("{name}: {e}"));
        let text = String::from_utf8_lossy(&answer.body);
        if answer.local {
            eprintln!("{name}: {} {text}", answer.status);
            continue;
        }
        assert_eq!(answer.status, 200, "{name}: {text}");
        reached += 1;
        let deepl = name.starts_with("seed-p9");
        let words = ["Hel", "Hello", "Hallo"];
        assert!(
            words.iter().any(|w| text.contains(w)) || deepl && text.contains("Hallo"),
            "{name}: {text}"
        );
    }
    assert!(reached >= 40, "only {reached} seeds reached a provider");
}

#[test]
fn every_callout_config_makes_its_call() {
    for which in 0..7u8 {
        let input = [which, 0, b'{', b'}'];
        let made = fuzz::callouts_made(&input).unwrap();
        assert!(made > 0, "config {which} made no callout");
    }
}
