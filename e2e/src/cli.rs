//! Command-line flags of the test servers: `--name value` or `--name=value`, and `-h`/`--help`.

/// The `(flag, value)` pairs in order, or `None` when help was asked for.
pub fn flags(
    args: impl IntoIterator<Item = String>,
) -> Result<Option<Vec<(String, String)>>, String> {
    let mut out = Vec::new();
    let mut args = args.into_iter();
    while let Some(arg) = args.next() {
        let (flag, inline) = match arg.split_once('=') {
            Some((flag, value)) => (flag.to_owned(), Some(value.to_owned())),
            None => (arg, None),
        };
        if flag == "-h" || flag == "--help" {
            return Ok(None);
        }
        let value = inline
            .or_else(|| args.next())
            .ok_or_else(|| format!("{flag} needs a value"))?;
        out.push((flag, value));
    }
    Ok(Some(out))
}

/// A port number, or an error naming the bad value.
pub fn port(value: &str) -> Result<u16, String> {
    value.parse().map_err(|_| format!("invalid port {value:?}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn pairs_inline_values_and_help() {
        assert_eq!(
            flags(args(&["--port", "1", "--host=h"])).unwrap(),
            Some(vec![
                ("--port".into(), "1".into()),
                ("--host".into(), "h".into())
            ])
        );
        assert_eq!(flags(args(&["--port", "1", "-h"])).unwrap(), None);
        assert_eq!(
            flags(args(&["--port"])).unwrap_err(),
            "--port needs a value"
        );
        assert!(port("x").is_err());
    }
}
