//! Envoy's rate limit service API (`envoy.service.ratelimit.v3.RateLimitService/ShouldRateLimit`),
//! the messages this plugin sends and reads, encoded with prost.
//!
//! Each descriptor carries the counter (`counter` entry) and its limit (`limit` entry,
//! `<tokens>/<seconds>`), so the service needs no per-rule configuration; `hits_addend` is the
//! number of tokens (0 counts as 1 in Limitador and envoyproxy/ratelimit, so 0 is sent as 1).

use prost::Message;

/// gRPC service name.
pub const SERVICE: &str = "envoy.service.ratelimit.v3.RateLimitService";
/// gRPC method.
pub const METHOD: &str = "ShouldRateLimit";

/// `RateLimitRequest`.
#[derive(Clone, PartialEq, Message)]
pub struct RateLimitRequest {
    /// Domain.
    #[prost(string, tag = "1")]
    pub domain: String,
    /// Descriptors.
    #[prost(message, repeated, tag = "2")]
    pub descriptors: Vec<RateLimitDescriptor>,
    /// Hits to add.
    #[prost(uint32, tag = "3")]
    pub hits_addend: u32,
}

/// `RateLimitDescriptor`.
#[derive(Clone, PartialEq, Message)]
pub struct RateLimitDescriptor {
    /// Entries.
    #[prost(message, repeated, tag = "1")]
    pub entries: Vec<Entry>,
}

/// `RateLimitDescriptor.Entry`.
#[derive(Clone, PartialEq, Message)]
pub struct Entry {
    /// Key.
    #[prost(string, tag = "1")]
    pub key: String,
    /// Value.
    #[prost(string, tag = "2")]
    pub value: String,
}

/// `RateLimitResponse` (the fields used here).
#[derive(Clone, PartialEq, Message)]
pub struct RateLimitResponse {
    /// 1 OK, 2 OVER_LIMIT.
    #[prost(int32, tag = "1")]
    pub overall_code: i32,
    /// Per descriptor.
    #[prost(message, repeated, tag = "2")]
    pub statuses: Vec<DescriptorStatus>,
}

/// `RateLimitResponse.DescriptorStatus`.
#[derive(Clone, PartialEq, Message)]
pub struct DescriptorStatus {
    /// 1 OK, 2 OVER_LIMIT.
    #[prost(int32, tag = "1")]
    pub code: i32,
    /// The limit applied.
    #[prost(message, optional, tag = "2")]
    pub current_limit: Option<RateLimit>,
    /// Hits left.
    #[prost(uint32, tag = "3")]
    pub limit_remaining: u32,
    /// Time to the reset.
    #[prost(message, optional, tag = "4")]
    pub duration_until_reset: Option<Duration>,
}

/// `RateLimitResponse.RateLimit`.
#[derive(Clone, PartialEq, Message)]
pub struct RateLimit {
    /// Hits per unit.
    #[prost(uint32, tag = "1")]
    pub requests_per_unit: u32,
    /// Unit.
    #[prost(int32, tag = "2")]
    pub unit: i32,
}

/// `google.protobuf.Duration`.
#[derive(Clone, PartialEq, Message)]
pub struct Duration {
    /// Seconds.
    #[prost(int64, tag = "1")]
    pub seconds: i64,
    /// Nanoseconds.
    #[prost(int32, tag = "2")]
    pub nanos: i32,
}

/// Over limit.
pub const OVER_LIMIT: i32 = 2;

/// The request for `tokens` on `counter` with `limit` tokens per `window` seconds.
pub fn request(domain: &str, counter: &str, limit: u64, window: u64, tokens: u64) -> Vec<u8> {
    RateLimitRequest {
        domain: domain.to_string(),
        descriptors: vec![RateLimitDescriptor {
            entries: vec![
                Entry {
                    key: "counter".into(),
                    value: counter.to_string(),
                },
                Entry {
                    key: "limit".into(),
                    value: format!("{limit}/{window}"),
                },
            ],
        }],
        hits_addend: u32::try_from(tokens.max(1)).unwrap_or(u32::MAX),
    }
    .encode_to_vec()
}

/// The service's answer: (over limit, remaining, seconds to reset).
pub fn answer(message: &[u8]) -> Option<(bool, Option<u64>, Option<u64>)> {
    let resp = RateLimitResponse::decode(message).ok()?;
    let status = resp.statuses.first();
    Some((
        resp.overall_code == OVER_LIMIT,
        status.map(|s| u64::from(s.limit_remaining)),
        status
            .and_then(|s| s.duration_until_reset.as_ref())
            .map(|d| u64::try_from(d.seconds).unwrap_or(0)),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        let bytes = request("d", "rule/0/0/ann", 1000, 60, 0);
        let req = RateLimitRequest::decode(bytes.as_slice()).unwrap();
        assert_eq!(req.hits_addend, 1);
        assert_eq!(req.descriptors[0].entries[1].value, "1000/60");
        let resp = RateLimitResponse {
            overall_code: 2,
            statuses: vec![DescriptorStatus {
                code: 2,
                current_limit: Some(RateLimit {
                    requests_per_unit: 1000,
                    unit: 2,
                }),
                limit_remaining: 0,
                duration_until_reset: Some(Duration {
                    seconds: 42,
                    nanos: 0,
                }),
            }],
        };
        assert_eq!(
            answer(&resp.encode_to_vec()),
            Some((true, Some(0), Some(42)))
        );
    }
}
