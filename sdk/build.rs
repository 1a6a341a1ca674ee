//! With feature `tokens`: writes the o200k and cl100k vocabularies in a compact form for
//! `sdk::tokens` into `OUT_DIR` — per encoding, one byte per rank with the token's length
//! (`<name>.lens`), then every token's bytes in rank order (`<name>.bytes`). The tables come from
//! tiktoken-rs (a build dependency only, so its tables and regexes never reach the module).

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    #[cfg(feature = "tokens")]
    if let Err(e) = tables::write() {
        println!("cargo:warning=token tables: {e}");
        std::process::exit(1);
    }
}

#[cfg(feature = "tokens")]
mod tables {
    use std::path::PathBuf;

    type Error = Box<dyn std::error::Error>;

    pub fn write() -> Result<(), Error> {
        let out = PathBuf::from(std::env::var("OUT_DIR")?);
        for (name, bpe) in [
            ("o200k", tiktoken_rs::o200k_base()?),
            ("cl100k", tiktoken_rs::cl100k_base()?),
        ] {
            let mut lens = Vec::new();
            let mut bytes = Vec::new();
            // Ranks are dense from 0; the first one the decoder does not know ends the table.
            let mut rank = 0u32;
            while let Ok(token) = bpe.decode_bytes(&[rank]) {
                let len = u8::try_from(token.len())
                    .map_err(|_| format!("{name}: token {rank} is longer than 255 bytes"))?;
                if len == 0 {
                    return Err(format!("{name}: token {rank} is empty").into());
                }
                lens.push(len);
                bytes.extend_from_slice(&token);
                rank += 1;
            }
            if rank < 1000 {
                return Err(format!("{name}: only {rank} tokens").into());
            }
            std::fs::write(out.join(format!("{name}.lens")), &lens)?;
            std::fs::write(out.join(format!("{name}.bytes")), &bytes)?;
        }
        Ok(())
    }
}
