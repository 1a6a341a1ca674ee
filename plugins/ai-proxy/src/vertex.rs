//! Vertex AI with a service account: a signed JWT exchanged for an OAuth access token.
//!
//! The token lives in Envoy shared data (one JSON record per account and token endpoint), so
//! every worker uses the token one worker fetched. Refreshes run from the root context's tick:
//! [`refresh`] claims the record with compare-and-swap (a "refreshing until" mark), signs a JWT
//! (RS256, deterministic: no RNG) and sends the token exchange as a callout; the answer comes
//! back to the same root context, where [`on_token_response`] stores the new token.
//!
//! Callout routing: the id of this worker's token exchange is kept in a thread-local map keyed
//! by the shared-data key (one VM per worker thread), not in the provider, so an answer that
//! arrives after a config reload is still recognised by the new config's provider.

use crate::config::ProviderConfig;
use crate::providers::{non_empty, Native, Provider};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use rsa::pkcs1::DecodeRsaPrivateKey;
use rsa::pkcs1v15::SigningKey;
use rsa::pkcs8::DecodePrivateKey;
use rsa::signature::{SignatureEncoding, Signer};
use rsa::RsaPrivateKey;
use sdk::config::ConfigError;
use sdk::host::{Host, LogLevel};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::Sha256;
use std::cell::RefCell;
use std::collections::HashMap;
use std::time::{Duration, UNIX_EPOCH};

/// OAuth scope of Vertex AI calls.
pub const SCOPE: &str = "https://www.googleapis.com/auth/cloud-platform";
/// `grant_type` of the JWT-bearer token exchange (RFC 7523).
pub const GRANT_TYPE: &str = "urn:ietf:params:oauth:grant-type:jwt-bearer";
/// Google's token endpoint, when the key names none.
pub const DEFAULT_TOKEN_URI: &str = "https://oauth2.googleapis.com/token";
/// How often the root context must tick for [`refresh`] (the lead's `tick_period`).
pub const TICK_PERIOD: Duration = Duration::from_secs(1);
/// Timeout of the token exchange callout.
pub const EXCHANGE_TIMEOUT: Duration = Duration::from_secs(10);
/// Lifetime asked for in the JWT (Google's maximum).
const JWT_LIFETIME: u64 = 3600;
/// How long a claim keeps other workers from refreshing (callout timeout plus slack).
const CLAIM_SECS: u64 = 15;
/// Pause after a failed exchange before any worker tries again.
const RETRY_SECS: u64 = 5;
/// `refreshAhead` default, seconds.
const DEFAULT_REFRESH_AHEAD: u64 = 60;

thread_local! {
    /// This worker's token exchange in flight: shared-data key → callout id.
    static PENDING: RefCell<HashMap<String, u32>> = RefCell::new(HashMap::new());
}

/// A Vertex AI service account: where requests go and how tokens are obtained.
pub struct ServiceAccount {
    /// `{region}-aiplatform.googleapis.com`, or `aiplatform.googleapis.com` for `global`.
    pub host: String,
    /// `vertexProjectId`, else the key's `project_id`.
    pub project: String,
    /// `vertexRegion`.
    pub region: String,
    client_email: String,
    key_id: Option<String>,
    /// Boxed: the key is large and `Provider`s embed this struct.
    signer: Box<SigningKey<Sha256>>,
    /// `aud` of the JWT: the token endpoint URL.
    token_uri: String,
    /// `:authority` of the exchange.
    token_host: String,
    /// `:path` of the exchange.
    token_path: String,
    /// Envoy cluster reaching the token endpoint.
    cluster: String,
    refresh_ahead: u64,
    shared_key: String,
}

impl std::fmt::Debug for ServiceAccount {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the private key.
        f.debug_struct("ServiceAccount")
            .field("host", &self.host)
            .field("project", &self.project)
            .field("region", &self.region)
            .field("client_email", &self.client_email)
            .field("token_uri", &self.token_uri)
            .field("cluster", &self.cluster)
            .field("refresh_ahead", &self.refresh_ahead)
            .finish_non_exhaustive()
    }
}

fn key_error(message: impl Into<String>) -> ConfigError {
    ConfigError::new("vertexAuthKey", message)
}

/// Splits `http(s)://host/path` into (host, path).
fn split_token_uri(uri: &str) -> Option<(String, String)> {
    let rest = uri
        .strip_prefix("https://")
        .or_else(|| uri.strip_prefix("http://"))?;
    let (host, path) = match rest.find('/') {
        Some(i) => rest.split_at(i),
        None => (rest, "/"),
    };
    if host.is_empty() || host.contains(['?', '#', ' ']) {
        return None;
    }
    Some((host.to_string(), path.to_string()))
}

fn signing_key(pem: &str) -> Result<Box<SigningKey<Sha256>>, ConfigError> {
    // Keys pasted with their JSON escapes left in (`\n` as two characters).
    let pem = if pem.contains('\n') {
        pem.to_string()
    } else {
        pem.replace("\\n", "\n")
    };
    let key = match RsaPrivateKey::from_pkcs8_pem(&pem) {
        Ok(k) => k,
        Err(e) => RsaPrivateKey::from_pkcs1_pem(&pem).map_err(|_| {
            key_error(format!(
                "`private_key` is not an RSA private key in PKCS#8 PEM ({e})"
            ))
        })?,
    };
    Ok(Box::new(SigningKey::<Sha256>::new(key)))
}

impl ServiceAccount {
    /// Reads the service-account JSON key (`vertexAuthKey`) and the provider's Vertex keys;
    /// errors name the config field.
    pub fn parse(key_json: &str, c: &ProviderConfig) -> Result<ServiceAccount, ConfigError> {
        // Through `Value`: serde's typed errors could quote a field's value.
        let key: Value = serde_json::from_str(key_json)
            .map_err(|e| key_error(format!("not a service-account JSON key: {e}")))?;
        if !key.is_object() {
            return Err(key_error("not a service-account JSON key: not an object"));
        }
        let field = |name: &str| {
            key.get(name)
                .and_then(Value::as_str)
                .map(str::trim)
                .filter(|s| !s.is_empty())
        };
        if let Some(kind) = field("type").filter(|t| *t != "service_account") {
            return Err(key_error(format!(
                "a key of type `{kind}`; a `service_account` key is needed"
            )));
        }
        let client_email = field("client_email")
            .ok_or_else(|| key_error("the key has no `client_email`"))?
            .to_string();
        let pem = field("private_key").ok_or_else(|| key_error("the key has no `private_key`"))?;
        let signer = signing_key(pem)?;
        let token_uri = field("token_uri").unwrap_or(DEFAULT_TOKEN_URI).to_string();
        let (token_host, token_path) = split_token_uri(&token_uri)
            .ok_or_else(|| key_error("`token_uri` must be an http(s) URL"))?;
        let region = non_empty(&c.vertex_region)
            .ok_or_else(|| {
                ConfigError::new(
                    "vertexRegion",
                    "required with vertexAuthKey, e.g. us-central1",
                )
            })?
            .to_string();
        let region_ok = region
            .chars()
            .all(|ch| ch.is_ascii_lowercase() || ch.is_ascii_digit() || ch == '-');
        if !region_ok {
            return Err(ConfigError::new(
                "vertexRegion",
                "must be a region name like us-central1 (or global)",
            ));
        }
        let project = non_empty(&c.vertex_project_id)
            .or_else(|| field("project_id"))
            .ok_or_else(|| {
                ConfigError::new("vertexProjectId", "required (the key has no `project_id`)")
            })?
            .to_string();
        let cluster = non_empty(&c.vertex_auth_service_name)
            .ok_or_else(|| {
                ConfigError::new(
                    "vertexAuthServiceName",
                    "required with vertexAuthKey: the Envoy cluster that reaches the token endpoint",
                )
            })?
            .to_string();
        let host = if region == "global" {
            "aiplatform.googleapis.com".to_string()
        } else {
            format!("{region}-aiplatform.googleapis.com")
        };
        Ok(ServiceAccount {
            host,
            project,
            region,
            shared_key: format!("ai-proxy/vertex-token/{client_email}/{token_uri}"),
            client_email,
            key_id: field("private_key_id").map(str::to_string),
            signer,
            token_uri,
            token_host,
            token_path,
            cluster,
            refresh_ahead: c
                .vertex_token_refresh_ahead
                .unwrap_or(DEFAULT_REFRESH_AHEAD),
        })
    }

    /// The token endpoint URL (the JWT's `aud`).
    pub fn token_uri(&self) -> &str {
        &self.token_uri
    }

    /// The signed JWT (RS256) asserting this account at `now` (seconds since the epoch).
    pub fn jwt(&self, now: u64) -> Result<String, String> {
        let mut header = serde_json::json!({"alg": "RS256", "typ": "JWT"});
        if let (Some(kid), Some(h)) = (&self.key_id, header.as_object_mut()) {
            h.insert("kid".into(), Value::String(kid.clone()));
        }
        let claims = serde_json::json!({
            "iss": self.client_email,
            "scope": SCOPE,
            "aud": self.token_uri,
            "iat": now,
            "exp": now.saturating_add(JWT_LIFETIME),
        });
        let input = format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(header.to_string()),
            URL_SAFE_NO_PAD.encode(claims.to_string())
        );
        let signature = self
            .signer
            .try_sign(input.as_bytes())
            .map_err(|e| format!("signing failed: {e}"))?;
        Ok(format!(
            "{input}.{}",
            URL_SAFE_NO_PAD.encode(signature.to_bytes())
        ))
    }

    /// The form body of the token exchange.
    fn exchange_body(&self, now: u64) -> Result<String, String> {
        // A JWT is base64url and dots: nothing to escape.
        Ok(format!(
            "grant_type=urn%3Aietf%3Aparams%3Aoauth%3Agrant-type%3Ajwt-bearer&assertion={}",
            self.jwt(now)?
        ))
    }
}

/// The token record shared by all workers.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
struct Record {
    /// The access token ("" when none yet).
    #[serde(default)]
    token: String,
    /// When it was stored, seconds since the epoch.
    #[serde(default)]
    issued_at: u64,
    /// When it expires, seconds since the epoch.
    #[serde(default)]
    expires_at: u64,
    /// No worker starts an exchange before this (one in flight, or a pause after a failure).
    #[serde(default)]
    refreshing_until: u64,
}

impl Record {
    fn valid(&self, now: u64) -> bool {
        !self.token.is_empty() && now < self.expires_at
    }

    /// Due for a refresh: none, expired, or within `ahead` of expiry (at most half the
    /// token's lifetime, so short-lived tokens are not refreshed on every tick).
    fn due(&self, now: u64, ahead: u64) -> bool {
        let half_life = self.expires_at.saturating_sub(self.issued_at) / 2;
        !self.valid(now) || now.saturating_add(ahead.min(half_life)) >= self.expires_at
    }
}

fn account(p: &Provider) -> Option<&ServiceAccount> {
    match &p.native {
        Native::Gemini(g) => g.vertex.as_ref(),
        _ => None,
    }
}

fn seconds(host: &dyn Host) -> u64 {
    host.now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// The provider's access token from shared data, if there is one that has not expired.
pub fn access_token(host: &dyn Host, p: &Provider) -> Option<String> {
    let sa = account(p)?;
    let record: Record = sdk::shared::load(host, &sa.shared_key);
    record.valid(seconds(host)).then_some(record.token)
}

/// Root tick, every worker: starts the token exchange when the token is missing or due and no
/// other worker is exchanging. Returns the callout id when one was sent (also remembered for
/// [`on_token_response`]).
pub fn refresh(host: &dyn Host, p: &Provider) -> Option<u32> {
    let sa = account(p)?;
    let now = seconds(host);
    let claimed = sdk::shared::update_json(host, &sa.shared_key, |r: &mut Record| {
        if !r.due(now, sa.refresh_ahead) || r.refreshing_until > now {
            return false;
        }
        r.refreshing_until = now.saturating_add(CLAIM_SECS);
        true
    });
    if !claimed {
        return None;
    }
    let call = send_exchange(host, p, sa, now)?;
    PENDING.with(|m| m.borrow_mut().insert(sa.shared_key.clone(), call));
    Some(call)
}

/// From a request that found no token: an exchange of its own, whose answer comes back to that
/// request (which waits for it instead of failing). Returns the callout id.
pub fn fetch_for_request(host: &dyn Host, p: &Provider) -> Option<u32> {
    let sa = account(p)?;
    send_exchange(host, p, sa, seconds(host))
}

/// The answer to [`fetch_for_request`]: the token, stored for every worker, or why there is
/// none.
pub fn on_request_token(host: &dyn Host, p: &Provider, body_size: usize) -> Result<String, String> {
    let sa = account(p).ok_or("no service account")?;
    store_answer(host, p, sa, body_size)
}

/// Sends the JWT-for-token exchange to the token service's cluster.
fn send_exchange(host: &dyn Host, p: &Provider, sa: &ServiceAccount, now: u64) -> Option<u32> {
    let body = match sa.exchange_body(now) {
        Ok(b) => b,
        Err(e) => {
            // The claim stays until it lapses: a pause before the next try.
            host.log(
                LogLevel::Error,
                &format!("[ai-proxy] vertex token for `{}`: {e}", p.name()),
            );
            return None;
        }
    };
    let headers = [
        (":method", "POST"),
        (":path", sa.token_path.as_str()),
        (":authority", sa.token_host.as_str()),
        ("content-type", "application/x-www-form-urlencoded"),
        ("accept", "application/json"),
    ];
    match host.dispatch_http_call(
        &sa.cluster,
        &headers,
        Some(body.as_bytes()),
        EXCHANGE_TIMEOUT,
    ) {
        Ok(call) => Some(call),
        Err(e) => {
            host.log(
                LogLevel::Warn,
                &format!(
                    "[ai-proxy] vertex token exchange for `{}` not sent to cluster `{}`: {e:?}",
                    p.name(),
                    sa.cluster
                ),
            );
            None
        }
    }
}

/// A parsed token answer: (token, lifetime in seconds), or why it is unusable.
fn parse_answer(status: Option<u32>, body: &[u8]) -> Result<(String, u64), String> {
    let json: Option<Value> = serde_json::from_slice(body).ok();
    let text = |v: &Value, k: &str| v.get(k).and_then(Value::as_str).map(str::to_string);
    if status != Some(200) {
        let status = status.map_or_else(|| "no answer".to_string(), |s| format!("status {s}"));
        let detail = json
            .as_ref()
            .map(|j| {
                [text(j, "error"), text(j, "error_description")]
                    .into_iter()
                    .flatten()
                    .collect::<Vec<_>>()
                    .join(": ")
            })
            .unwrap_or_default();
        let detail: String = detail.chars().take(200).collect();
        return Err(if detail.is_empty() {
            status
        } else {
            format!("{status}: {detail}")
        });
    }
    let json = json.ok_or("the answer is not JSON")?;
    let token = text(&json, "access_token")
        .filter(|t| !t.is_empty())
        .ok_or("the answer has no access_token")?;
    if let Some(kind) = text(&json, "token_type") {
        if !kind.eq_ignore_ascii_case("bearer") {
            return Err(format!("unexpected token_type `{kind}`"));
        }
    }
    let lifetime = match json.get("expires_in") {
        None => JWT_LIFETIME,
        Some(v) => v
            .as_u64()
            .or_else(|| v.as_f64().filter(|f| *f >= 0.0).map(|f| f as u64))
            .or_else(|| v.as_str().and_then(|s| s.trim().parse().ok()))
            .ok_or("expires_in is not a number")?,
    };
    if lifetime == 0 {
        return Err("expires_in is 0".into());
    }
    Ok((token, lifetime))
}

/// Root callout answer: true if `call` was this provider's token exchange (then handled: the
/// new token stored for every worker, or on failure a log line and the old token kept).
pub fn on_token_response(host: &dyn Host, p: &Provider, call: u32, body_size: usize) -> bool {
    let Some(sa) = account(p) else {
        return false;
    };
    let ours = PENDING.with(|m| {
        let mut m = m.borrow_mut();
        if m.get(&sa.shared_key) == Some(&call) {
            m.remove(&sa.shared_key);
            true
        } else {
            false
        }
    });
    if !ours {
        return false;
    }
    let _ = store_answer(host, p, sa, body_size);
    true
}

/// Reads a token answer: stores the token for every worker and returns it, or on failure logs,
/// keeps the current token and schedules a retry.
fn store_answer(
    host: &dyn Host,
    p: &Provider,
    sa: &ServiceAccount,
    body_size: usize,
) -> Result<String, String> {
    let now = seconds(host);
    let status = host
        .http_call_response_header(":status")
        .and_then(|s| s.trim().parse::<u32>().ok());
    let body = host.http_call_response_body(body_size).unwrap_or_default();
    match parse_answer(status, &body) {
        Ok((token, lifetime)) => {
            let expires_at = now.saturating_add(lifetime);
            sdk::shared::update_json(host, &sa.shared_key, |r: &mut Record| {
                r.token = token.clone();
                r.issued_at = now;
                r.expires_at = expires_at;
                r.refreshing_until = 0;
                true
            });
            host.log(
                LogLevel::Info,
                &format!(
                    "[ai-proxy] vertex access token for `{}` refreshed, valid for {lifetime}s",
                    p.name()
                ),
            );
            Ok(token)
        }
        Err(e) => {
            sdk::shared::update_json(host, &sa.shared_key, |r: &mut Record| {
                r.refreshing_until = now.saturating_add(RETRY_SECS);
                true
            });
            host.log(
                LogLevel::Warn,
                &format!(
                    "[ai-proxy] vertex token exchange for `{}` failed ({e}); keeping the current token, retrying in {RETRY_SECS}s",
                    p.name()
                ),
            );
            Err(e)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::providers::resolve;
    use rand_chacha::rand_core::SeedableRng;
    use rsa::pkcs1v15::{Signature, VerifyingKey};
    use rsa::pkcs8::{EncodePrivateKey, LineEnding};
    use rsa::signature::Verifier;
    use sdk::host::MockHost;
    use serde_json::json;
    use std::sync::OnceLock;

    /// One 2048-bit test key per test binary, from a seeded RNG.
    fn test_key() -> &'static RsaPrivateKey {
        static KEY: OnceLock<RsaPrivateKey> = OnceLock::new();
        KEY.get_or_init(|| {
            let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(7);
            RsaPrivateKey::new(&mut rng, 2048).unwrap()
        })
    }

    fn pem() -> String {
        test_key().to_pkcs8_pem(LineEnding::LF).unwrap().to_string()
    }

    fn key_json() -> String {
        json!({"type": "service_account", "project_id": "proj-from-key",
               "private_key_id": "kid1", "private_key": pem(),
               "client_email": "gw@proj.iam.gserviceaccount.com",
               "token_uri": "https://oauth2.googleapis.com/token"})
        .to_string()
    }

    fn config(extra: Value) -> ProviderConfig {
        let mut v = json!({"type": "vertex", "vertexRegion": "us-central1",
            "vertexAuthKey": key_json(), "vertexAuthServiceName": "google_oauth"});
        if let (Some(o), Some(e)) = (v.as_object_mut(), extra.as_object()) {
            o.extend(e.clone());
        }
        serde_json::from_value(v).unwrap()
    }

    fn provider(extra: Value) -> Provider {
        resolve(&config(extra)).unwrap()
    }

    fn sa(p: &Provider) -> &ServiceAccount {
        account(p).unwrap()
    }

    fn host_at(secs: u64) -> MockHost {
        let host = MockHost::default();
        *host.clock.borrow_mut() = Duration::from_secs(secs);
        host
    }

    fn answer(host: &MockHost, status: &str, body: Value) {
        *host.call_response_headers.borrow_mut() = vec![(":status".into(), status.into())];
        *host.call_response_body.borrow_mut() = body.to_string().into_bytes();
    }

    fn deliver(host: &MockHost, p: &Provider, call: u32) -> bool {
        let size = host.call_response_body.borrow().len();
        on_token_response(host, p, call, size)
    }

    fn parse_err(key: &str, extra: Value) -> ConfigError {
        ServiceAccount::parse(key, &config(extra)).unwrap_err()
    }

    #[test]
    fn parses_the_key_and_config() {
        let p = provider(json!({}));
        let a = sa(&p);
        assert_eq!(a.host, "us-central1-aiplatform.googleapis.com");
        assert_eq!(a.project, "proj-from-key");
        assert_eq!(a.region, "us-central1");
        assert_eq!(a.token_host, "oauth2.googleapis.com");
        assert_eq!(a.token_path, "/token");
        assert_eq!(a.cluster, "google_oauth");
        assert_eq!(a.refresh_ahead, 60);
        assert_eq!(p.host, a.host);
        let g = provider(json!({"vertexRegion": "global", "vertexProjectId": "mine",
                                "vertexTokenRefreshAhead": 120}));
        assert_eq!(sa(&g).host, "aiplatform.googleapis.com");
        assert_eq!(sa(&g).project, "mine");
        assert_eq!(sa(&g).refresh_ahead, 120);
        // Escapes left in the PEM are undone.
        let mut k: Value = serde_json::from_str(&key_json()).unwrap();
        k["private_key"] = Value::String(pem().replace('\n', "\\n"));
        assert!(ServiceAccount::parse(&k.to_string(), &config(json!({}))).is_ok());
    }

    #[test]
    fn parse_errors_name_the_field() {
        let key: Value = serde_json::from_str(&key_json()).unwrap();
        let without = |field: &str| {
            let mut k = key.clone();
            k.as_object_mut().unwrap().remove(field);
            k.to_string()
        };
        let with = |field: &str, v: &str| {
            let mut k = key.clone();
            k[field] = Value::String(v.into());
            k.to_string()
        };
        let cases = [
            (parse_err("{not json", json!({})), "vertexAuthKey"),
            (parse_err("[1]", json!({})), "vertexAuthKey"),
            (
                parse_err(&without("client_email"), json!({})),
                "vertexAuthKey",
            ),
            (
                parse_err(&without("private_key"), json!({})),
                "vertexAuthKey",
            ),
            (
                parse_err(
                    &with(
                        "private_key",
                        "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n",
                    ),
                    json!({}),
                ),
                "vertexAuthKey",
            ),
            (
                parse_err(&with("type", "authorized_user"), json!({})),
                "vertexAuthKey",
            ),
            (
                parse_err(&with("token_uri", "oauth2.googleapis.com/token"), json!({})),
                "vertexAuthKey",
            ),
            (
                parse_err(&key_json(), json!({"vertexRegion": ""})),
                "vertexRegion",
            ),
            (
                parse_err(&key_json(), json!({"vertexRegion": "us/central"})),
                "vertexRegion",
            ),
            (
                parse_err(&key_json(), json!({"vertexAuthServiceName": null})),
                "vertexAuthServiceName",
            ),
            (
                parse_err(&without("project_id"), json!({})),
                "vertexProjectId",
            ),
        ];
        for (i, (err, field)) in cases.iter().enumerate() {
            assert_eq!(err.path, *field, "case {i}: {}", err.message);
        }
        // A bad key never shows up in the message.
        let err = parse_err(&with("private_key", "s3cr3t-material"), json!({}));
        assert!(!err.message.contains("s3cr3t"), "{}", err.message);
        // Through the provider, the path is the provider's field.
        let c: ProviderConfig = serde_json::from_value(json!({"type": "vertex",
            "vertexAuthKey": "{}", "vertexRegion": "us-central1"}))
        .unwrap();
        assert_eq!(resolve(&c).unwrap_err().path, "vertexAuthKey");
    }

    #[test]
    fn jwt_is_rs256_and_verifies_with_the_public_key() {
        let p = provider(json!({}));
        let jwt = sa(&p).jwt(1_700_000_000).unwrap();
        let parts: Vec<&str> = jwt.split('.').collect();
        assert_eq!(parts.len(), 3);
        let decode = |s: &str| -> Value {
            serde_json::from_slice(&URL_SAFE_NO_PAD.decode(s).unwrap()).unwrap()
        };
        assert_eq!(
            decode(parts[0]),
            json!({"alg": "RS256", "typ": "JWT", "kid": "kid1"})
        );
        assert_eq!(
            decode(parts[1]),
            json!({"iss": "gw@proj.iam.gserviceaccount.com", "scope": SCOPE,
                   "aud": "https://oauth2.googleapis.com/token",
                   "iat": 1_700_000_000u64, "exp": 1_700_003_600u64})
        );
        let sig =
            Signature::try_from(URL_SAFE_NO_PAD.decode(parts[2]).unwrap().as_slice()).unwrap();
        let public = VerifyingKey::<Sha256>::new(test_key().to_public_key());
        let signed = format!("{}.{}", parts[0], parts[1]);
        assert!(public.verify(signed.as_bytes(), &sig).is_ok());
        assert!(public.verify(b"other.input", &sig).is_err());
        // Deterministic: same input, same token.
        assert_eq!(sa(&p).jwt(1_700_000_000).unwrap(), jwt);
    }

    #[test]
    fn debug_output_has_no_key_material() {
        let p = provider(json!({}));
        let text = format!("{:?} {p:?}", sa(&p));
        assert!(text.contains("gw@proj.iam.gserviceaccount.com"));
        for secret in [pem(), pem().lines().nth(1).unwrap().to_string()] {
            assert!(!text.contains(&secret));
        }
        assert!(!text.contains("PRIVATE KEY"));
        assert!(!text.contains("SigningKey"));
    }

    #[test]
    fn refresh_sends_the_exchange_and_stores_the_token() {
        let host = host_at(1_000);
        let p = provider(json!({}));
        assert_eq!(access_token(&host, &p), None);
        let call = refresh(&host, &p).unwrap();
        let callout = host.callouts.borrow()[0].clone();
        assert_eq!(callout.cluster, "google_oauth");
        for h in [
            (":method", "POST"),
            (":path", "/token"),
            (":authority", "oauth2.googleapis.com"),
            ("content-type", "application/x-www-form-urlencoded"),
        ] {
            assert!(callout.headers.contains(&(h.0.into(), h.1.into())), "{h:?}");
        }
        let body = String::from_utf8(callout.body.unwrap()).unwrap();
        let assertion = body
            .strip_prefix(
                "grant_type=urn%3Aietf%3Aparams%3Aoauth%3Agrant-type%3Ajwt-bearer&assertion=",
            )
            .unwrap();
        assert_eq!(assertion, sa(&p).jwt(1_000).unwrap());
        // Not yet answered: no token, and no second exchange.
        assert_eq!(refresh(&host, &p), None);
        assert!(!deliver(&host, &p, call + 1), "not our call");
        answer(
            &host,
            "200",
            json!({"access_token": "ya29.tok", "expires_in": 3599, "token_type": "Bearer"}),
        );
        assert!(deliver(&host, &p, call));
        assert!(!deliver(&host, &p, call), "answered once");
        assert_eq!(access_token(&host, &p).as_deref(), Some("ya29.tok"));
        assert!(host.logs.borrow().iter().all(|(_, l)| !l.contains("ya29")));
        assert!(host
            .shared
            .borrow()
            .values()
            .any(|(v, _)| { String::from_utf8_lossy(v).contains("\"expires_at\":4599") }));
    }

    #[test]
    fn cached_token_expires_and_is_refreshed_ahead() {
        let host = host_at(1_000);
        let p = provider(json!({"vertexTokenRefreshAhead": 100}));
        let call = refresh(&host, &p).unwrap();
        answer(
            &host,
            "200",
            json!({"access_token": "t1", "expires_in": 1000}),
        );
        assert!(deliver(&host, &p, call));
        // Valid until 2000; refreshed from 1900 on.
        *host.clock.borrow_mut() = Duration::from_secs(1_899);
        assert_eq!(refresh(&host, &p), None);
        assert_eq!(access_token(&host, &p).as_deref(), Some("t1"));
        *host.clock.borrow_mut() = Duration::from_secs(1_900);
        let call = refresh(&host, &p).unwrap();
        assert_eq!(
            access_token(&host, &p).as_deref(),
            Some("t1"),
            "still served while refreshing"
        );
        *host.clock.borrow_mut() = Duration::from_secs(2_000);
        assert_eq!(access_token(&host, &p), None, "expired");
        answer(
            &host,
            "200",
            json!({"access_token": "t2", "expires_in": 1000}),
        );
        assert!(deliver(&host, &p, call));
        assert_eq!(access_token(&host, &p).as_deref(), Some("t2"));
    }

    #[test]
    fn short_lived_tokens_are_not_refreshed_every_tick() {
        let host = host_at(1_000);
        let p = provider(json!({}));
        let call = refresh(&host, &p).unwrap();
        answer(&host, "200", json!({"access_token": "t", "expires_in": 20}));
        assert!(deliver(&host, &p, call));
        // refreshAhead 60 > lifetime 20: refreshed at half-life instead.
        *host.clock.borrow_mut() = Duration::from_secs(1_009);
        assert_eq!(refresh(&host, &p), None);
        *host.clock.borrow_mut() = Duration::from_secs(1_010);
        assert!(refresh(&host, &p).is_some());
    }

    #[test]
    fn a_second_worker_does_not_refresh_while_one_is() {
        let host = host_at(1_000);
        let p = provider(json!({}));
        assert!(refresh(&host, &p).is_some());
        // Another worker: its own thread (own pending map), the same shared data.
        let run_worker = |secs: u64| {
            let shared = host.shared.borrow().clone();
            std::thread::spawn(move || {
                let other = host_at(secs);
                *other.shared.borrow_mut() = shared;
                let p = provider(json!({}));
                refresh(&other, &p).is_some()
            })
            .join()
            .unwrap()
        };
        assert!(!run_worker(1_001), "claimed by the first worker");
        assert!(!run_worker(1_000 + CLAIM_SECS - 1));
        // The first worker's exchange never came back: the claim lapses.
        assert!(run_worker(1_000 + CLAIM_SECS + 1));
    }

    #[test]
    fn a_failed_exchange_keeps_the_old_token() {
        let host = host_at(1_000);
        let p = provider(json!({}));
        let call = refresh(&host, &p).unwrap();
        answer(
            &host,
            "200",
            json!({"access_token": "old", "expires_in": 3600}),
        );
        assert!(deliver(&host, &p, call));
        *host.clock.borrow_mut() = Duration::from_secs(4_550);
        let failures = [
            (
                "400",
                json!({"error": "invalid_grant", "error_description": "Invalid JWT Signature."}),
            ),
            ("200", json!({"token_type": "Bearer"})),
            ("200", json!({"access_token": "x", "token_type": "MAC"})),
            ("503", json!("unavailable")),
        ];
        for (i, (status, body)) in failures.into_iter().enumerate() {
            let now = 4_550 + i as u64 * (RETRY_SECS + 1);
            *host.clock.borrow_mut() = Duration::from_secs(now);
            let call = refresh(&host, &p).unwrap_or_else(|| panic!("case {i}: no refresh"));
            answer(&host, status, body);
            assert!(deliver(&host, &p, call));
            assert_eq!(access_token(&host, &p).as_deref(), Some("old"), "case {i}");
            // A pause before the next try.
            assert_eq!(refresh(&host, &p), None, "case {i}");
        }
        let logs = host.logs.borrow();
        assert!(logs
            .iter()
            .any(|(l, m)| *l == LogLevel::Warn
                && m.contains("invalid_grant: Invalid JWT Signature.")));
        // A callout that timed out (no headers) is a failure too.
        drop(logs);
        *host.clock.borrow_mut() = Duration::from_secs(4_590);
        let call = refresh(&host, &p).unwrap();
        host.call_response_headers.borrow_mut().clear();
        host.call_response_body.borrow_mut().clear();
        assert!(deliver(&host, &p, call));
        assert_eq!(access_token(&host, &p).as_deref(), Some("old"));
        assert!(host.logs.borrow().last().unwrap().1.contains("no answer"));
    }

    #[test]
    fn answers_are_parsed() {
        assert_eq!(
            parse_answer(Some(200), br#"{"access_token":"a","expires_in":"30"}"#),
            Ok(("a".into(), 30))
        );
        assert_eq!(
            parse_answer(Some(200), br#"{"access_token":"a"}"#),
            Ok(("a".into(), 3600))
        );
        assert!(parse_answer(Some(200), br#"{"access_token":"a","expires_in":0}"#).is_err());
        assert!(parse_answer(Some(200), b"not json").is_err());
        assert_eq!(
            parse_answer(Some(401), br#"{"error":"unauthorized_client"}"#),
            Err("status 401: unauthorized_client".into())
        );
    }

    #[test]
    fn other_providers_are_ignored() {
        let host = host_at(1_000);
        let c: ProviderConfig =
            serde_json::from_value(json!({"type": "vertex", "apiTokens": ["k"]})).unwrap();
        let express = resolve(&c).unwrap();
        assert_eq!(refresh(&host, &express), None);
        assert_eq!(access_token(&host, &express), None);
        assert!(!on_token_response(&host, &express, 1, 0));
        assert!(host.callouts.borrow().is_empty());
    }

    #[test]
    fn the_first_request_waits_for_a_token_of_its_own() {
        use crate::stage::ProxyStage;
        use proxy_wasm::types::Action;
        use sdk::config::{RuleMode, RuleSet};
        use sdk::pipeline::{HeaderHold, Pipeline};
        use std::rc::Rc;

        let config = json!({"provider": {"type": "vertex", "vertexRegion": "us-central1",
            "vertexAuthKey": key_json(), "vertexAuthServiceName": "google_oauth"}});
        let rules: RuleSet<crate::config::ProxyConfig> =
            RuleSet::parse(config.to_string().as_bytes(), RuleMode::Override).unwrap();
        let mut p = Pipeline::new(vec![Box::new(ProxyStage::new(Rc::new(rules)))]);
        p.set_header_hold(HeaderHold::Works);
        let host = host_at(1_700_000_000);
        *host.request_headers.borrow_mut() = vec![
            (":method".into(), "POST".into()),
            (":path".into(), "/v1/chat/completions".into()),
        ];
        let body = br#"{"model":"gemini-2.5-flash","messages":[{"role":"user","content":"hi"}]}"#;
        *host.request_body.borrow_mut() = body.to_vec();
        // No token yet: the headers wait, and this request sends an exchange of its own.
        assert_eq!(p.on_request_headers(&host, false), Action::Pause);
        assert!(host.local_reply().is_none());
        assert_eq!(host.callouts.borrow().len(), 1);
        // The body is read; the request still waits for the token.
        assert_eq!(p.on_request_body(&host, body.len(), true), Action::Pause);
        assert_eq!(host.resumed.borrow().0, 0);
        answer(
            &host,
            "200",
            json!({"access_token": "ya29.first", "expires_in": 3600}),
        );
        let size = host.call_response_body.borrow().len();
        p.on_http_call_response(&host, 1, size);
        assert_eq!(
            host.request_header("authorization").as_deref(),
            Some("Bearer ya29.first")
        );
        assert_eq!(host.resumed.borrow().0, 1);
        assert!(host.local_reply().is_none());
        // Stored for every later request and worker.
        let provider = provider(json!({}));
        assert_eq!(
            access_token(&host, &provider).as_deref(),
            Some("ya29.first")
        );
    }
}
