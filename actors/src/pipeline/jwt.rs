//! JWT bearer tokens (`[jwt]`): HS256 with a shared secret, RS256/ES256 (and the other
//! algorithms `jsonwebtoken` supports) with the public keys of a JWKS file or URL. A
//! valid token's team claim picks a `[[teams]]` policy; its subject becomes the caller's
//! id in the ledger (`jwt:<sub>`). Every refusal is a 401 `invalid_token` naming why.

use std::collections::HashMap;
use std::sync::Arc;

use arc_swap::ArcSwap;
use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use switchyard_config::{Config, Jwt, Key, Limits, Priority};

use super::KeyEntry;
use crate::GatewayError;

/// Verifies tokens for one `[jwt]` config; the JWKS can be swapped by a refresh.
pub struct JwtVerifier {
    cfg: Jwt,
    hs256: Option<DecodingKey>,
    jwks: ArcSwap<JwkSet>,
}

fn invalid(why: impl Into<String>) -> GatewayError {
    GatewayError::InvalidToken(why.into())
}

/// Whether a presented credential is a JWT rather than an API key.
pub fn looks_like_jwt(s: &str) -> bool {
    s.starts_with("eyJ") && s.bytes().filter(|b| *b == b'.').count() == 2
}

impl JwtVerifier {
    /// Reads the JWKS file now; a JWKS URL is fetched by [`JwtVerifier::refresh`].
    pub fn new(cfg: &Jwt) -> Result<JwtVerifier, GatewayError> {
        let jwks = match &cfg.jwks_file {
            None => JwkSet { keys: Vec::new() },
            Some(path) => {
                let text = std::fs::read(path)
                    .map_err(|e| GatewayError::Internal(format!("jwt.jwks_file {}: {e}", path.display())))?;
                serde_json::from_slice(&text)
                    .map_err(|e| GatewayError::Internal(format!("jwt.jwks_file {}: not a JWKS: {e}", path.display())))?
            }
        };
        Ok(JwtVerifier {
            hs256: cfg.hs256_secret.as_ref().map(|s| DecodingKey::from_secret(s.as_bytes())),
            jwks: ArcSwap::from_pointee(jwks),
            cfg: cfg.clone(),
        })
    }

    pub fn config(&self) -> &Jwt {
        &self.cfg
    }

    /// Fetches the JWKS URL (when configured) and swaps the keys in.
    pub async fn refresh(&self, http: &reqwest::Client) -> Result<usize, GatewayError> {
        let Some(url) = &self.cfg.jwks_url else { return Ok(0) };
        let fetch = async {
            let r = http.get(url).send().await?.error_for_status()?;
            r.json::<JwkSet>().await
        };
        let set = tokio::time::timeout(std::time::Duration::from_secs(10), fetch)
            .await
            .map_err(|_| GatewayError::Unavailable(format!("jwt.jwks_url {url}: timed out")))?
            .map_err(|e| GatewayError::Unavailable(format!("jwt.jwks_url {url}: {e}")))?;
        let n = set.keys.len();
        self.jwks.store(Arc::new(set));
        Ok(n)
    }

    /// Verifies a token and makes the caller's key: its team's policy, its subject's id.
    pub fn verify(&self, token: &str, config: &Config) -> Result<Arc<KeyEntry>, GatewayError> {
        self.verify_claims(token, None, config).map(|(key, _)| key)
    }

    /// [`JwtVerifier::verify`], with every claim of the token (a console session reads
    /// its role and an ID token's nonce from them); `audience` stands in for
    /// `jwt.audience` (an ID token's is the OIDC client id).
    pub fn verify_claims(
        &self,
        token: &str,
        audience: Option<&str>,
        config: &Config,
    ) -> Result<(Arc<KeyEntry>, HashMap<String, serde_json::Value>), GatewayError> {
        let claims = self.claims(token, audience.or(self.cfg.audience.as_deref()))?;
        Ok((self.key_of(&claims, config)?, claims))
    }

    /// A token's claims once its signature, time, audience and issuer hold.
    fn claims(&self, token: &str, audience: Option<&str>) -> Result<HashMap<String, serde_json::Value>, GatewayError> {
        let header = jsonwebtoken::decode_header(token).map_err(|e| invalid(format!("malformed token: {e}")))?;
        let key = match header.alg {
            Algorithm::HS256 | Algorithm::HS384 | Algorithm::HS512 => {
                self.hs256.clone().ok_or_else(|| invalid("HS256 tokens are not accepted (no jwt.hs256_secret)"))?
            }
            _ => {
                let jwks = self.jwks.load();
                let jwk = match &header.kid {
                    Some(kid) => jwks.find(kid),
                    None if jwks.keys.len() == 1 => jwks.keys.first(),
                    None => None,
                }
                .ok_or_else(|| invalid(format!("no key in the JWKS for kid {:?}", header.kid)))?;
                DecodingKey::from_jwk(jwk).map_err(|e| invalid(format!("unusable JWKS key: {e}")))?
            }
        };
        let mut v = Validation::new(header.alg);
        v.leeway = self.cfg.leeway_secs;
        v.validate_nbf = true;
        // a configured claim is a required claim: a token without it is refused
        let mut required = vec!["exp"];
        match audience {
            Some(aud) => {
                v.set_audience(&[aud]);
                required.push("aud");
            }
            None => v.validate_aud = false,
        }
        if let Some(iss) = &self.cfg.issuer {
            v.set_issuer(&[iss]);
            required.push("iss");
        }
        v.set_required_spec_claims(&required);
        let data = jsonwebtoken::decode::<HashMap<String, serde_json::Value>>(token, &key, &v).map_err(|e| {
            use jsonwebtoken::errors::ErrorKind as K;
            invalid(match e.kind() {
                K::InvalidSignature => "bad signature".to_string(),
                K::ExpiredSignature => "expired".to_string(),
                K::ImmatureSignature => "not valid yet (nbf)".to_string(),
                K::InvalidAudience => "wrong audience".to_string(),
                K::InvalidIssuer => "wrong issuer".to_string(),
                K::MissingRequiredClaim(c) => format!("missing claim `{c}`"),
                _ => e.to_string(),
            })
        })?;
        Ok(data.claims)
    }

    /// The caller verified claims name.
    fn key_of(
        &self,
        claims: &HashMap<String, serde_json::Value>,
        config: &Config,
    ) -> Result<Arc<KeyEntry>, GatewayError> {
        let team_id = claims
            .get(&self.cfg.team_claim)
            .and_then(|v| v.as_str())
            .ok_or_else(|| invalid(format!("no `{}` claim", self.cfg.team_claim)))?;
        // the subject is the caller's identity (its ledger rows, its files and batches):
        // a token without one would share an identity with every other such token
        let subject = claims
            .get(&self.cfg.subject_claim)
            .and_then(|v| v.as_str())
            .filter(|s| !s.is_empty())
            .ok_or_else(|| invalid(format!("no `{}` claim", self.cfg.subject_claim)))?;
        self.key_for(subject, team_id, config)
    }

    /// The caller a verified token names: its team's policy, its subject's id.
    pub fn key_for(&self, subject: &str, team_id: &str, config: &Config) -> Result<Arc<KeyEntry>, GatewayError> {
        let team = config.team(team_id).cloned().ok_or_else(|| invalid(format!("unknown team `{team_id}`")))?;
        let key = Key {
            // the caller is its subject within its team
            id: format!("jwt:{subject}@{}", team.id),
            key_sha256: String::new(),
            models: None,
            limits: Limits::default(),
            priority: Priority::Normal,
            batch_priority: Priority::Low,
            team: Some(team.id.clone()),
            endpoints: None,
            max_tokens: None,
            max_priority: Priority::High,
            budget: None,
            expires_at_ms: None,
            guardrails: Vec::new(),
            log_requests: false,
        };
        Ok(Arc::new(KeyEntry::new(key, Some(team))))
    }
}
