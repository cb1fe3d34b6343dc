//! Who is calling, as far as the gateway can tell, and how that becomes a cache tenant.
//!
//! The rules live here rather than in a handler so that every function draws the same line:
//! an identity API Gateway verified (a JWT's issuer and subject, an IAM principal) always
//! wins; the `x-tenant-id` header names a tenant only where the deployer trusts it; everyone
//! else is anonymous. A JWT without a subject is refused outright, because falling back to a
//! header the caller chose would let any token holder pick someone else's cache.

use std::fmt::Write as _;

use crate::cache::Tenant;

/// The header an unauthenticated caller may name its tenant with.
pub const TENANT_HEADER: &str = "x-tenant-id";

/// The longest tenant header value accepted, in bytes (all ASCII, so also in characters).
pub const MAX_TENANT_HEADER_LEN: usize = 128;

/// A caller's identity. Each variant keeps its parts apart, so that no two different
/// identities can be confused however their parts are spelled.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Identity {
    /// A JWT API Gateway validated: the issuer qualifies the subject, since two identity
    /// providers may hand out the same `sub`.
    Jwt {
        issuer: String,
        subject: String,
    },
    /// An IAM principal (user or role session ARN, or caller ID) API Gateway verified.
    Iam {
        principal: String,
    },
    /// The `x-tenant-id` header, where the deployer trusts it (locally, or behind a proxy
    /// that sets it).
    TrustedHeader {
        tenant: String,
    },
    Anonymous,
}

/// What API Gateway's authorizer says about the caller, in the core's own terms.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Authentication<'a> {
    /// No authorizer ran (a local stack, or an API without authentication).
    None,
    /// A JWT authorizer ran; its `iss` and `sub` claims, when present.
    Jwt { issuer: Option<&'a str>, subject: Option<&'a str> },
    /// An IAM authorizer ran; the user (or role session) ARN and the caller ID it verified,
    /// as it reports them.
    Iam { user_arn: Option<&'a str>, caller_id: Option<&'a str> },
}

/// Why a request carries no usable identity.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdentityError {
    /// The authorizer ran but did not name the caller: a 401, never a fallback.
    #[error("the caller is not identified: {reason}")]
    Unauthenticated { reason: &'static str },
    /// The tenant header is malformed or repeated: a 400 naming the header.
    #[error("`{TENANT_HEADER}`: {reason}")]
    InvalidTenantHeader { reason: &'static str },
}

impl IdentityError {
    pub fn label(&self) -> crate::label::ErrorLabel {
        match self {
            IdentityError::Unauthenticated { .. } => crate::label::ErrorLabel::Unauthenticated,
            IdentityError::InvalidTenantHeader { .. } => crate::label::ErrorLabel::InvalidRequest,
        }
    }

    /// The header at fault, when the error is about one.
    pub fn field(&self) -> Option<&'static str> {
        match self {
            IdentityError::Unauthenticated { .. } => None,
            IdentityError::InvalidTenantHeader { .. } => Some(TENANT_HEADER),
        }
    }
}

/// The `x-tenant-id` header as received: absent, one raw value, or given more than once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TenantHeader<'a> {
    Absent,
    Value(&'a [u8]),
    Repeated,
}

impl Identity {
    /// The identity of a request. The header is validated whether or not it is trusted, so a
    /// malformed header is the same 400 on every deployment rather than silently ignored on
    /// some.
    pub fn resolve(
        authentication: Authentication<'_>,
        header: TenantHeader<'_>,
        trust_header: bool,
    ) -> Result<Identity, IdentityError> {
        let header_tenant = match header {
            TenantHeader::Absent => None,
            TenantHeader::Repeated => {
                return Err(IdentityError::InvalidTenantHeader { reason: "must be given at most once" });
            }
            TenantHeader::Value(raw) => Some(valid_tenant_header(raw)?),
        };
        match authentication {
            Authentication::Jwt { issuer, subject } => {
                let subject = subject
                    .filter(|s| !s.is_empty())
                    .ok_or(IdentityError::Unauthenticated { reason: "the token has no `sub` claim" })?;
                let issuer = issuer
                    .filter(|s| !s.is_empty())
                    .ok_or(IdentityError::Unauthenticated { reason: "the token has no `iss` claim" })?;
                Ok(Identity::Jwt { issuer: issuer.to_owned(), subject: subject.to_owned() })
            }
            Authentication::Iam { user_arn, caller_id } => {
                // The ARN names the principal; the caller ID only where no ARN is reported.
                let principal = user_arn
                    .or(caller_id)
                    .filter(|s| !s.is_empty())
                    .ok_or(IdentityError::Unauthenticated { reason: "the IAM authorizer reported no principal" })?;
                Ok(Identity::Iam { principal: principal.to_owned() })
            }
            Authentication::None => Ok(match header_tenant {
                Some(tenant) if trust_header => Identity::TrustedHeader { tenant: tenant.to_owned() },
                _ => Identity::Anonymous,
            }),
        }
    }

    /// The identity as cache-key material: a kind tag, then every part as `<byte length>:<bytes>`.
    /// Lengths delimit the parts, so no value, whatever separators it holds, can shift bytes
    /// from one part into another; different kinds never share a tag.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        let parts: &[&str] = match self {
            Identity::Jwt { issuer, subject } => {
                out.push_str("jwt");
                &[issuer, subject]
            }
            Identity::Iam { principal } => {
                out.push_str("iam");
                &[principal]
            }
            Identity::TrustedHeader { tenant } => {
                out.push_str("header");
                &[tenant]
            }
            Identity::Anonymous => {
                out.push_str("anonymous");
                &[]
            }
        };
        for part in parts {
            // Writing to a String cannot fail.
            let _ = write!(out, "/{}:{part}", part.len());
        }
        out
    }
}

/// A deployment's tenant rules (`TRUST_TENANT_HEADER`): functions hand over what the
/// authorizer verified and the raw header, and get the cache tenant back.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TenantRules {
    /// Whether `x-tenant-id` names the tenant of an unauthenticated caller.
    pub trust_header: bool,
}

impl TenantRules {
    pub fn tenant(
        &self,
        authentication: Authentication<'_>,
        header: TenantHeader<'_>,
    ) -> Result<Tenant, IdentityError> {
        Identity::resolve(authentication, header, self.trust_header).map(Tenant::from)
    }
}

/// 1–128 visible ASCII characters, nothing else: a non-ASCII value must not be dropped and
/// turn the caller anonymous.
fn valid_tenant_header(raw: &[u8]) -> Result<&str, IdentityError> {
    if raw.is_empty() || raw.len() > MAX_TENANT_HEADER_LEN || !raw.iter().all(u8::is_ascii_graphic) {
        return Err(IdentityError::InvalidTenantHeader { reason: "must be 1-128 printable ASCII characters" });
    }
    std::str::from_utf8(raw)
        .map_err(|_| IdentityError::InvalidTenantHeader { reason: "must be 1-128 printable ASCII characters" })
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;
    use crate::cache::{CacheKey, Tenant};
    use crate::request::ConverseRequest;
    use crate::splitmix::SplitMix64;

    const NONE: Authentication<'static> = Authentication::None;

    fn jwt<'a>(issuer: &'a str, subject: &'a str) -> Authentication<'a> {
        Authentication::Jwt { issuer: Some(issuer), subject: Some(subject) }
    }

    #[test]
    fn a_pipe_in_the_issuer_or_subject_cannot_merge_two_identities() {
        // Finding 5: `iss|sub` joined these two into one tenant.
        let a = Identity::resolve(jwt("https://x|y", "z"), TenantHeader::Absent, false).unwrap();
        let b = Identity::resolve(jwt("https://x", "y|z"), TenantHeader::Absent, false).unwrap();
        assert_ne!(a.encode(), b.encode());
        assert_ne!(Tenant::from(a), Tenant::from(b));
    }

    #[test]
    fn a_token_without_subject_is_refused_not_replaced_by_the_header() {
        // Finding 5: the header used to stand in for a missing `sub`.
        let no_sub = Authentication::Jwt { issuer: Some("https://idp"), subject: None };
        let err = Identity::resolve(no_sub, TenantHeader::Value(b"victim"), true).unwrap_err();
        assert!(matches!(err, IdentityError::Unauthenticated { .. }), "{err}");
        let empty_sub = Authentication::Jwt { issuer: Some("https://idp"), subject: Some("") };
        assert!(Identity::resolve(empty_sub, TenantHeader::Absent, true).is_err());
        let no_principal = Authentication::Iam { user_arn: None, caller_id: None };
        assert!(matches!(
            Identity::resolve(no_principal, TenantHeader::Absent, true),
            Err(IdentityError::Unauthenticated { .. })
        ));
    }

    #[test]
    fn an_iam_caller_is_its_arn_and_its_caller_id_only_without_one() {
        let iam = |user_arn, caller_id| Authentication::Iam { user_arn, caller_id };
        let resolve = |auth| Identity::resolve(auth, TenantHeader::Absent, false).unwrap();
        let arn = "arn:aws:iam::1:user/a";
        assert_eq!(resolve(iam(Some(arn), Some("AIDA1"))), Identity::Iam { principal: arn.into() });
        assert_eq!(resolve(iam(None, Some("AIDA1"))), Identity::Iam { principal: "AIDA1".into() });
    }

    #[test]
    fn tenant_rules_trust_the_header_only_where_the_deployer_says_so() {
        let header = TenantHeader::Value(b"team-a");
        let trusted = TenantRules { trust_header: true }.tenant(NONE, header).unwrap();
        let untrusted = TenantRules { trust_header: false }.tenant(NONE, header).unwrap();
        assert_eq!(trusted, Tenant::from(Identity::TrustedHeader { tenant: "team-a".into() }));
        assert_eq!(untrusted, Tenant::from(Identity::Anonymous));
        assert_ne!(trusted, untrusted);
    }

    #[test]
    fn a_non_ascii_empty_long_or_repeated_header_is_rejected_trusted_or_not() {
        // Finding 3: `ténant` was dropped and read the anonymous tenant's entries.
        let long = "a".repeat(MAX_TENANT_HEADER_LEN + 1);
        let bad: [&[u8]; 5] = ["ténant".as_bytes(), b"", long.as_bytes(), b"two words", b"tab\there"];
        for trust in [true, false] {
            for raw in bad {
                let err = Identity::resolve(NONE, TenantHeader::Value(raw), trust).unwrap_err();
                assert_eq!(err.field(), Some(TENANT_HEADER), "{raw:?}");
            }
            let err = Identity::resolve(NONE, TenantHeader::Repeated, trust).unwrap_err();
            assert_eq!(err.field(), Some(TENANT_HEADER));
        }
        let longest = "a".repeat(MAX_TENANT_HEADER_LEN);
        assert_eq!(
            Identity::resolve(NONE, TenantHeader::Value(longest.as_bytes()), true).unwrap(),
            Identity::TrustedHeader { tenant: longest }
        );
    }

    #[test]
    fn authenticated_identity_wins_and_untrusted_headers_are_anonymous() {
        let verified = Identity::resolve(jwt("https://idp", "alice"), TenantHeader::Value(b"bob"), true).unwrap();
        assert_eq!(verified, Identity::Jwt { issuer: "https://idp".into(), subject: "alice".into() });
        let iam = Identity::resolve(
            Authentication::Iam { user_arn: Some("arn:aws:iam::1:user/a"), caller_id: None },
            TenantHeader::Value(b"bob"),
            true,
        );
        assert_eq!(iam.unwrap(), Identity::Iam { principal: "arn:aws:iam::1:user/a".into() });
        assert_eq!(Identity::resolve(NONE, TenantHeader::Value(b"bob"), false).unwrap(), Identity::Anonymous);
        assert_eq!(
            Identity::resolve(NONE, TenantHeader::Value(b"bob"), true).unwrap(),
            Identity::TrustedHeader { tenant: "bob".into() }
        );
        assert_eq!(Identity::resolve(NONE, TenantHeader::Absent, true).unwrap(), Identity::Anonymous);
    }

    #[test]
    fn a_header_can_never_spell_another_kind_of_identity() {
        let forged = ["jwt/11:https://idp/5:alice", "iam/21:arn:aws:iam::1:user/a", "anonymous", "header/3:bob"];
        let real = [
            Identity::Jwt { issuer: "https://idp".into(), subject: "alice".into() },
            Identity::Iam { principal: "arn:aws:iam::1:user/a".into() },
            Identity::Anonymous,
            Identity::TrustedHeader { tenant: "bob".into() },
        ];
        for (text, identity) in forged.iter().zip(&real) {
            let header = Identity::resolve(NONE, TenantHeader::Value(text.as_bytes()), true).unwrap();
            assert_ne!(header.encode(), identity.encode(), "{text}");
        }
    }

    /// Values built to confuse a naive encoding: separators, length-like prefixes, quotes,
    /// other kinds' tags, unicode, and the empty string.
    fn nasty(rng: &mut SplitMix64) -> String {
        const PIECES: &[&str] = &[
            "|",
            ":",
            "/",
            "\"",
            "'",
            "\\",
            "jwt",
            "iam",
            "header",
            "anonymous",
            "1:",
            "/0:",
            "3:",
            "é",
            "ß",
            "🦀",
            "\u{0}",
            " ",
            ",",
            "{",
            "}",
            "x",
            "y",
            "z",
            "https://",
            "0",
            "12",
        ];
        let len = rng.below(6);
        (0..len).map(|_| PIECES[rng.below(PIECES.len() as u64) as usize]).collect()
    }

    fn random_identity(rng: &mut SplitMix64) -> Identity {
        match rng.below(4) {
            0 => Identity::Jwt { issuer: nasty(rng), subject: nasty(rng) },
            1 => Identity::Iam { principal: nasty(rng) },
            2 => Identity::TrustedHeader { tenant: nasty(rng) },
            _ => Identity::Anonymous,
        }
    }

    #[test]
    fn distinct_identities_never_share_an_encoding_nor_a_cache_key() {
        let request =
            ConverseRequest::from_json(br#"{"messages":[{"role":"user","content":[{"text":"hi"}]}]}"#).unwrap();
        let mut rng = SplitMix64::new(0x1de7_717e);
        let mut by_encoding: HashMap<String, Identity> = HashMap::new();
        let mut by_key: HashMap<CacheKey, Identity> = HashMap::new();
        for _ in 0..20_000 {
            let identity = random_identity(&mut rng);
            let encoding = identity.encode();
            if let Some(seen) = by_encoding.insert(encoding.clone(), identity.clone()) {
                assert_eq!(seen, identity, "two identities share the encoding {encoding:?}");
            }
            let key = CacheKey::compute(&Tenant::from(identity.clone()), "model", &request);
            if let Some(seen) = by_key.insert(key, identity.clone()) {
                assert_eq!(seen, identity, "two identities share a cache key");
            }
        }
        // The generator must actually produce many distinct identities for this to mean anything.
        assert!(by_encoding.len() > 5_000, "{}", by_encoding.len());
    }
}
