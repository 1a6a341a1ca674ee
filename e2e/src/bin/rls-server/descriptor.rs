//! The descriptor convention and the response mapping, free of any I/O.
//!
//! A descriptor's entry keyed [`LIMIT_KEY`] holds `<max>/<seconds>`: the limit
//! to apply to that descriptor. Its other entries name the counter (within the
//! request's domain). A descriptor without a limit entry is not limited.

use std::collections::BTreeMap;
use std::time::Duration;

use crate::proto::{
    Code, DescriptorStatus, RateLimit, RateLimitDescriptor, RateLimitResponse, Unit,
};

/// The entry key that carries a descriptor's limit.
pub const LIMIT_KEY: &str = "limit";

/// `<max>/<seconds>`: at most `max` hits per window of `seconds`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct LimitSpec {
    pub max: u64,
    pub seconds: u64,
}

/// A descriptor that carries a limit: the limit and the counter's entries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limited {
    pub spec: LimitSpec,
    /// The entries other than the limit, by key.
    pub entries: BTreeMap<String, String>,
}

/// What the counter store reported for one limited descriptor.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Outcome {
    /// Hits left in the window (after this request when it was admitted).
    pub remaining: u64,
    /// Time until the window resets.
    pub reset: Duration,
}

/// Parses `<max>/<seconds>` (decimal digits only; `seconds` at least 1).
pub fn parse_limit(value: &str) -> Result<LimitSpec, String> {
    let bad = || format!("invalid {LIMIT_KEY} {value:?}: want <max>/<seconds>, e.g. 1000/60");
    let (max, seconds) = value.split_once('/').ok_or_else(bad)?;
    let number = |s: &str| {
        if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
            return Err(bad());
        }
        s.parse::<u64>().map_err(|_| bad())
    };
    let (max, seconds) = (number(max)?, number(seconds)?);
    if seconds == 0 {
        return Err(bad());
    }
    Ok(LimitSpec { max, seconds })
}

/// Envoy's unit for a window, when the window is exactly one of them.
pub fn unit_for(seconds: u64) -> Unit {
    match seconds {
        1 => Unit::Second,
        60 => Unit::Minute,
        3_600 => Unit::Hour,
        86_400 => Unit::Day,
        _ => Unit::Unknown,
    }
}

/// Hits a request adds: `hits_addend`, with 0 (unset) meaning 1.
pub fn hits(hits_addend: u32) -> u64 {
    u64::from(hits_addend.max(1))
}

/// Splits a descriptor into its limit and counter entries; `None` when it has
/// no limit entry. A repeated key (the limit's included) is an error, since
/// two values cannot both name the counter.
pub fn classify(descriptor: &RateLimitDescriptor) -> Result<Option<Limited>, String> {
    let mut spec = None;
    let mut entries = BTreeMap::new();
    for entry in &descriptor.entries {
        if entry.key == LIMIT_KEY {
            if spec.is_some() {
                return Err(format!("descriptor has more than one {LIMIT_KEY} entry"));
            }
            spec = Some(parse_limit(&entry.value)?);
        } else if entries
            .insert(entry.key.clone(), entry.value.clone())
            .is_some()
        {
            return Err(format!("descriptor repeats the key {:?}", entry.key));
        }
    }
    Ok(spec.map(|spec| Limited { spec, entries }))
}

/// The limit's name in statuses: the counter's entry keys (never their values,
/// which Envoy may copy into `X-RateLimit-Limit`).
pub fn limit_name(limited: &Limited) -> String {
    limited
        .entries
        .keys()
        .map(String::as_str)
        .collect::<Vec<_>>()
        .join(",")
}

/// Builds the response: one status per descriptor, in request order.
/// `outcomes[i]` is the store's report for descriptor `i` (`None` when it has
/// no limit). When not `admitted`, nothing was counted, and a descriptor is
/// over its limit when `hits` exceed its remaining.
pub fn build_response(
    descriptors: &[Option<Limited>],
    outcomes: &[Option<Outcome>],
    hits: u64,
    admitted: bool,
) -> RateLimitResponse {
    let statuses = descriptors
        .iter()
        .zip(outcomes)
        .map(|(limited, outcome)| match (limited, outcome) {
            (Some(limited), Some(outcome)) => {
                let over = !admitted && hits > outcome.remaining;
                DescriptorStatus {
                    code: if over { Code::OverLimit } else { Code::Ok } as i32,
                    current_limit: Some(RateLimit {
                        requests_per_unit: saturate(limited.spec.max),
                        unit: unit_for(limited.spec.seconds) as i32,
                        name: limit_name(limited),
                    }),
                    limit_remaining: saturate(outcome.remaining),
                    duration_until_reset: Some(outcome.reset.into()),
                }
            }
            _ => DescriptorStatus {
                code: Code::Ok as i32,
                ..Default::default()
            },
        })
        .collect();
    RateLimitResponse {
        overall_code: if admitted { Code::Ok } else { Code::OverLimit } as i32,
        statuses,
        ..Default::default()
    }
}

fn saturate(n: u64) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::Entry;

    fn descriptor(entries: &[(&str, &str)]) -> RateLimitDescriptor {
        RateLimitDescriptor {
            entries: entries
                .iter()
                .map(|(k, v)| Entry {
                    key: (*k).into(),
                    value: (*v).into(),
                })
                .collect(),
        }
    }

    #[test]
    fn parses_limit_entry() {
        assert_eq!(
            parse_limit("1000/60"),
            Ok(LimitSpec {
                max: 1000,
                seconds: 60
            })
        );
        assert_eq!(parse_limit("0/1"), Ok(LimitSpec { max: 0, seconds: 1 }));
        for bad in [
            "",
            "1000",
            "/60",
            "1000/",
            "1000/0",
            "-1/60",
            "1/-60",
            "+1/60",
            " 1/60",
            "1/60 ",
            "1.5/60",
            "1/60/2",
            "a/60",
            "99999999999999999999/60",
        ] {
            assert!(parse_limit(bad).is_err(), "{bad:?} parsed");
        }
    }

    #[test]
    fn maps_units() {
        assert_eq!(unit_for(1), Unit::Second);
        assert_eq!(unit_for(60), Unit::Minute);
        assert_eq!(unit_for(3_600), Unit::Hour);
        assert_eq!(unit_for(86_400), Unit::Day);
        assert_eq!(unit_for(30), Unit::Unknown);
        assert_eq!(unit_for(120), Unit::Unknown);
    }

    #[test]
    fn counts_zero_hits_as_one() {
        assert_eq!(hits(0), 1);
        assert_eq!(hits(1), 1);
        assert_eq!(hits(250), 250);
    }

    #[test]
    fn splits_descriptor_into_limit_and_key() {
        let got = classify(&descriptor(&[
            ("model", "gpt-4o"),
            ("limit", "1000/60"),
            ("api_key", "k1"),
        ]))
        .unwrap()
        .unwrap();
        assert_eq!(
            got.spec,
            LimitSpec {
                max: 1000,
                seconds: 60
            }
        );
        let keys: Vec<_> = got
            .entries
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        assert_eq!(keys, [("api_key", "k1"), ("model", "gpt-4o")]);
        assert_eq!(limit_name(&got), "api_key,model");

        // Entry order does not change the counter.
        let swapped = classify(&descriptor(&[
            ("api_key", "k1"),
            ("model", "gpt-4o"),
            ("limit", "1000/60"),
        ]))
        .unwrap()
        .unwrap();
        assert_eq!(swapped, got);

        // Only a limit: one counter for the whole domain.
        let global = classify(&descriptor(&[("limit", "5/1")])).unwrap().unwrap();
        assert!(global.entries.is_empty());
        assert_eq!(limit_name(&global), "");
    }

    #[test]
    fn descriptor_without_limit_is_unlimited() {
        assert_eq!(classify(&descriptor(&[("model", "m")])), Ok(None));
        assert_eq!(classify(&descriptor(&[])), Ok(None));
    }

    #[test]
    fn rejects_bad_descriptors() {
        assert!(classify(&descriptor(&[("limit", "1/1"), ("limit", "2/1")])).is_err());
        assert!(classify(&descriptor(&[("a", "1"), ("a", "2"), ("limit", "1/1")])).is_err());
        assert!(classify(&descriptor(&[("a", "1"), ("limit", "x")])).is_err());
    }

    fn limited(max: u64, seconds: u64) -> Option<Limited> {
        Some(Limited {
            spec: LimitSpec { max, seconds },
            entries: BTreeMap::from([("user".to_owned(), "u".to_owned())]),
        })
    }

    #[test]
    fn fills_statuses_when_admitted() {
        let resp = build_response(
            &[limited(10, 60), None],
            &[
                Some(Outcome {
                    remaining: 7,
                    reset: Duration::from_millis(41_250),
                }),
                None,
            ],
            1,
            true,
        );
        assert_eq!(resp.overall_code, Code::Ok as i32);
        assert_eq!(resp.statuses.len(), 2);
        let first = &resp.statuses[0];
        assert_eq!(first.code, Code::Ok as i32);
        assert_eq!(
            first.current_limit,
            Some(RateLimit {
                requests_per_unit: 10,
                unit: Unit::Minute as i32,
                name: "user".into()
            })
        );
        assert_eq!(first.limit_remaining, 7);
        let reset = first.duration_until_reset.unwrap();
        assert_eq!((reset.seconds, reset.nanos), (41, 250_000_000));
        // Unlimited descriptor: OK, nothing else.
        assert_eq!(
            resp.statuses[1],
            DescriptorStatus {
                code: Code::Ok as i32,
                ..Default::default()
            }
        );
    }

    #[test]
    fn marks_only_exhausted_descriptors_over_limit() {
        let outcome = |remaining| {
            Some(Outcome {
                remaining,
                reset: Duration::from_secs(1),
            })
        };
        let resp = build_response(
            &[limited(100, 1), limited(5, 90), None],
            &[outcome(50), outcome(2), None],
            3,
            false,
        );
        assert_eq!(resp.overall_code, Code::OverLimit as i32);
        let codes: Vec<_> = resp.statuses.iter().map(|s| s.code).collect();
        assert_eq!(
            codes,
            [Code::Ok as i32, Code::OverLimit as i32, Code::Ok as i32]
        );
        assert_eq!(resp.statuses[1].limit_remaining, 2);
        assert_eq!(
            resp.statuses[1].current_limit.as_ref().unwrap().unit,
            Unit::Unknown as i32
        );
    }

    #[test]
    fn saturates_large_numbers() {
        let resp = build_response(
            &[limited(u64::MAX, 1)],
            &[Some(Outcome {
                remaining: u64::MAX,
                reset: Duration::ZERO,
            })],
            1,
            true,
        );
        let status = &resp.statuses[0];
        assert_eq!(status.limit_remaining, u32::MAX);
        assert_eq!(
            status.current_limit.as_ref().unwrap().requests_per_unit,
            u32::MAX
        );
    }

    #[test]
    fn empty_request_is_ok() {
        let resp = build_response(&[], &[], 1, true);
        assert_eq!(resp.overall_code, Code::Ok as i32);
        assert!(resp.statuses.is_empty());
    }
}
