//! The messages of Envoy's rate limit service, written by hand with prost's
//! derive macros (no protoc, no build script).
//!
//! Field numbers follow `envoy/service/ratelimit/v3/rls.proto` and
//! `envoy/extensions/common/ratelimit/v3/ratelimit.proto`. Fields this server
//! never reads or writes are left out: prost skips unknown fields on decode.

/// gRPC path of the one method served.
pub const SHOULD_RATE_LIMIT_PATH: &str =
    "/envoy.service.ratelimit.v3.RateLimitService/ShouldRateLimit";

/// `envoy.service.ratelimit.v3.RateLimitRequest`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct RateLimitRequest {
    #[prost(string, tag = "1")]
    pub domain: String,
    #[prost(message, repeated, tag = "2")]
    pub descriptors: Vec<RateLimitDescriptor>,
    /// 0 (unset) means 1.
    #[prost(uint32, tag = "3")]
    pub hits_addend: u32,
}

/// `envoy.extensions.common.ratelimit.v3.RateLimitDescriptor`. Its `limit`
/// override (tag 2) is ignored: the limit travels as an entry instead.
#[derive(Clone, PartialEq, prost::Message)]
pub struct RateLimitDescriptor {
    #[prost(message, repeated, tag = "1")]
    pub entries: Vec<Entry>,
}

/// `envoy.extensions.common.ratelimit.v3.RateLimitDescriptor.Entry`.
#[derive(Clone, PartialEq, Eq, prost::Message)]
pub struct Entry {
    #[prost(string, tag = "1")]
    pub key: String,
    #[prost(string, tag = "2")]
    pub value: String,
}

/// `envoy.service.ratelimit.v3.RateLimitResponse.Code`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, prost::Enumeration)]
#[repr(i32)]
pub enum Code {
    Unknown = 0,
    Ok = 1,
    OverLimit = 2,
}

/// `envoy.service.ratelimit.v3.RateLimitResponse.RateLimit.Unit`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, prost::Enumeration)]
#[repr(i32)]
pub enum Unit {
    Unknown = 0,
    Second = 1,
    Minute = 2,
    Hour = 3,
    Day = 4,
    Month = 5,
    Year = 6,
}

/// `envoy.service.ratelimit.v3.RateLimitResponse`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct RateLimitResponse {
    #[prost(enumeration = "Code", tag = "1")]
    pub overall_code: i32,
    #[prost(message, repeated, tag = "2")]
    pub statuses: Vec<DescriptorStatus>,
    #[prost(message, repeated, tag = "3")]
    pub response_headers_to_add: Vec<HeaderValue>,
    #[prost(message, repeated, tag = "4")]
    pub request_headers_to_add: Vec<HeaderValue>,
    #[prost(bytes = "vec", tag = "5")]
    pub raw_body: Vec<u8>,
}

/// `envoy.service.ratelimit.v3.RateLimitResponse.DescriptorStatus`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct DescriptorStatus {
    #[prost(enumeration = "Code", tag = "1")]
    pub code: i32,
    #[prost(message, optional, tag = "2")]
    pub current_limit: Option<RateLimit>,
    #[prost(uint32, tag = "3")]
    pub limit_remaining: u32,
    #[prost(message, optional, tag = "4")]
    pub duration_until_reset: Option<Duration>,
}

/// `envoy.service.ratelimit.v3.RateLimitResponse.RateLimit`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct RateLimit {
    #[prost(uint32, tag = "1")]
    pub requests_per_unit: u32,
    #[prost(enumeration = "Unit", tag = "2")]
    pub unit: i32,
    #[prost(string, tag = "3")]
    pub name: String,
}

/// `envoy.config.core.v3.HeaderValue` (only `key` and `value`).
#[derive(Clone, PartialEq, Eq, prost::Message)]
pub struct HeaderValue {
    #[prost(string, tag = "1")]
    pub key: String,
    #[prost(string, tag = "2")]
    pub value: String,
}

/// `google.protobuf.Duration`.
#[derive(Clone, Copy, PartialEq, Eq, prost::Message)]
pub struct Duration {
    #[prost(int64, tag = "1")]
    pub seconds: i64,
    #[prost(int32, tag = "2")]
    pub nanos: i32,
}

impl From<std::time::Duration> for Duration {
    fn from(d: std::time::Duration) -> Self {
        Self {
            seconds: i64::try_from(d.as_secs()).unwrap_or(i64::MAX),
            // subsec_nanos() < 1e9 always fits an i32.
            nanos: i32::try_from(d.subsec_nanos()).unwrap_or(0),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use prost::Message;

    /// Encodes by hand what protoc would produce for the request, so a wrong
    /// tag or wire type would show.
    #[test]
    fn decodes_request_wire_format() {
        // descriptor: entries { key: "k" value: "v" } limit { requests_per_unit: 5 }
        let entry = [0x0a, 0x01, b'k', 0x12, 0x01, b'v'];
        let mut descriptor = vec![0x0a, entry.len() as u8];
        descriptor.extend_from_slice(&entry);
        descriptor.extend_from_slice(&[0x12, 0x02, 0x08, 0x05]); // override: ignored
        let mut wire = vec![0x0a, 0x03, b'a', b'p', b'i']; // domain = "api"
        wire.push(0x12);
        wire.push(descriptor.len() as u8);
        wire.extend_from_slice(&descriptor);
        wire.extend_from_slice(&[0x18, 0x07]); // hits_addend = 7

        let req = RateLimitRequest::decode(wire.as_slice()).unwrap();
        assert_eq!(req.domain, "api");
        assert_eq!(req.hits_addend, 7);
        assert_eq!(
            req.descriptors[0].entries,
            vec![Entry {
                key: "k".into(),
                value: "v".into()
            }]
        );
    }

    #[test]
    fn encodes_response_wire_format() {
        let resp = RateLimitResponse {
            overall_code: Code::OverLimit as i32,
            statuses: vec![DescriptorStatus {
                code: Code::OverLimit as i32,
                current_limit: Some(RateLimit {
                    name: "n".into(),
                    requests_per_unit: 3,
                    unit: Unit::Minute as i32,
                }),
                limit_remaining: 1,
                duration_until_reset: Some(Duration {
                    seconds: 2,
                    nanos: 0,
                }),
            }],
            ..Default::default()
        };
        let status = [
            0x08, 0x02, // code = OVER_LIMIT
            0x12, 0x07, // current_limit
            0x08, 0x03, // requests_per_unit = 3
            0x10, 0x02, // unit = MINUTE
            0x1a, 0x01, b'n', // name = "n"
            0x18, 0x01, // limit_remaining = 1
            0x22, 0x02, 0x08, 0x02, // duration_until_reset { seconds: 2 }
        ];
        let mut expected = vec![0x08, 0x02, 0x12, status.len() as u8];
        expected.extend_from_slice(&status);
        assert_eq!(resp.encode_to_vec(), expected);
    }

    #[test]
    fn converts_durations() {
        let d = Duration::from(std::time::Duration::from_millis(1_500));
        assert_eq!((d.seconds, d.nanos), (1, 500_000_000));
    }
}
