//! Local offboarding tokens: `pko_<hex payload>.<hex signature>`.
//!
//! The payload is `<device id>:<expiry, Unix ms>`; the signature is ECDSA
//! P-256 / SHA-256 (ASN.1 DER) by the Picket CA's key, so an agent that
//! cannot reach the coordinator checks it against the CA it pinned at
//! enrollment. Signing lives in the coordinator; this module builds, splits
//! and verifies the string (the agent reads the pinned CA's key).

use uuid::Uuid;

pub const PREFIX: &str = "pko_";

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Claims {
    pub device_id: Uuid,
    pub expires_at_ms: i64,
}

impl Claims {
    /// The exact bytes that are signed.
    pub fn payload(&self) -> Vec<u8> {
        format!("{}:{}", self.device_id, self.expires_at_ms).into_bytes()
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("not a Picket offboarding token (pko_…): {0}")]
pub struct TokenFormatError(&'static str);

pub fn encode(claims: &Claims, signature: &[u8]) -> String {
    format!("{PREFIX}{}.{}", hex::encode(claims.payload()), hex::encode(signature))
}

/// Split a token into its claims, the signed payload and the signature.
pub fn decode(token: &str) -> Result<(Claims, Vec<u8>, Vec<u8>), TokenFormatError> {
    let body = token.trim().strip_prefix(PREFIX).ok_or(TokenFormatError("missing prefix"))?;
    let (payload_hex, sig_hex) = body.split_once('.').ok_or(TokenFormatError("missing signature"))?;
    let payload = hex::decode(payload_hex).map_err(|_| TokenFormatError("payload is not hex"))?;
    let signature = hex::decode(sig_hex).map_err(|_| TokenFormatError("signature is not hex"))?;
    let text = std::str::from_utf8(&payload).map_err(|_| TokenFormatError("payload is not text"))?;
    let (id, exp) = text.split_once(':').ok_or(TokenFormatError("payload has no expiry"))?;
    let claims = Claims {
        device_id: id.parse().map_err(|_| TokenFormatError("bad device id"))?,
        expires_at_ms: exp.parse().map_err(|_| TokenFormatError("bad expiry"))?,
    };
    Ok((claims, payload, signature))
}

/// Verify `token` for `device` at `now_ms` against the CA's public key
/// (`ca_key`: the uncompressed P-256 point of its certificate). Returns the
/// claims, or why the token is refused.
pub fn verify(token: &str, ca_key: &[u8], device: Uuid, now_ms: i64) -> Result<Claims, String> {
    let (claims, payload, signature) = decode(token).map_err(|e| e.to_string())?;
    if claims.device_id != device {
        return Err(format!("the token is for device {}, this is {device}", claims.device_id));
    }
    if claims.expires_at_ms <= now_ms {
        return Err("the token has expired; ask for a new one".into());
    }
    ring::signature::UnparsedPublicKey::new(&ring::signature::ECDSA_P256_SHA256_ASN1, ca_key)
        .verify(&payload, &signature)
        .map_err(|_| "the token's signature is not from this device's coordinator".to_string())?;
    Ok(claims)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_round_trip_and_garbage_is_refused() {
        let c = Claims { device_id: Uuid::new_v4(), expires_at_ms: 1_800_000_000_000 };
        let t = encode(&c, &[1, 2, 3]);
        let (back, payload, sig) = decode(&t).expect("decode");
        assert_eq!(back, c);
        assert_eq!(payload, c.payload());
        assert_eq!(sig, vec![1, 2, 3]);
        for bad in ["", "pko_", "pko_zz.00", "pkt_00.00", &format!("{PREFIX}{}.00", hex::encode("x:y"))] {
            assert!(decode(bad).is_err(), "{bad}");
        }
    }
}
