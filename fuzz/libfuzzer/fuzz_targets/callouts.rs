#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    if let Err(why) = fuzz::callouts(data) {
        panic!("invariant broken: {why}");
    }
});
