//! Named users: what a name and a password may be, Argon2id hashing, and
//! the first admin created at first start.
//!
//! Hashes are PHC strings (`$argon2id$v=19$m=19456,t=2,p=1$…`), the
//! parameters OWASP's password storage guidance gives for Argon2id; the
//! parameters travel in the string, so raising them later still verifies
//! old hashes. Hashing takes tens of milliseconds and 19 MiB on purpose:
//! callers run it on a blocking thread.

use argon2::password_hash::{rand_core::OsRng, PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::{Algorithm, Argon2, Params, Version};

/// Shortest password accepted (a generated one is 24 characters).
pub const MIN_PASSWORD: usize = 12;
/// Longest password accepted, in characters (hashing cost hardly depends
/// on it, but nobody types more).
pub const MAX_PASSWORD: usize = 1024;

fn argon2() -> Argon2<'static> {
    // m = 19 MiB, t = 2, p = 1.
    let params = Params::new(19 * 1024, 2, 1, None).unwrap_or_default();
    Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
}

/// The PHC string of `password` with a fresh random salt.
pub fn hash_password(password: &str) -> Result<String, String> {
    let salt = SaltString::generate(&mut OsRng);
    argon2().hash_password(password.as_bytes(), &salt).map(|h| h.to_string()).map_err(|e| e.to_string())
}

/// Whether `password` matches `hash`; a hash that cannot be parsed
/// matches nothing.
pub fn verify_password(hash: &str, password: &str) -> bool {
    PasswordHash::new(hash).is_ok_and(|h| argon2().verify_password(password.as_bytes(), &h).is_ok())
}

/// A hash no password matches, verified against when the user does not
/// exist so that an unknown name takes as long as a wrong password.
pub fn decoy_hash() -> &'static str {
    static DECOY: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    DECOY.get_or_init(|| hash_password(&generate_password()).unwrap_or_default())
}

/// 24 characters from an alphabet without look-alikes (~137 bits).
pub fn generate_password() -> String {
    const ALPHABET: &[u8] = b"abcdefghijkmnopqrstuvwxyzABCDEFGHJKLMNPQRSTUVWXYZ23456789";
    use rand::Rng;
    let mut rng = rand::rng();
    (0..24).map(|_| ALPHABET[rng.random_range(0..ALPHABET.len())] as char).collect()
}

/// A user name: 1–64 of a–z, 0–9, `.`, `_`, `-`, starting with a letter
/// or digit (it appears in audit entries, action records and URLs).
pub fn check_name(name: &str) -> Result<(), String> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'.' | b'_' | b'-'))
        && name.as_bytes()[0].is_ascii_alphanumeric();
    if ok {
        Ok(())
    } else {
        Err(format!(
            "user name {name:?}: 1 to 64 characters of a-z, 0-9, '.', '_', '-', starting with a letter or digit"
        ))
    }
}

pub fn check_password(password: &str) -> Result<(), String> {
    let chars = password.chars().count();
    if chars < MIN_PASSWORD {
        return Err(format!("the password must have at least {MIN_PASSWORD} characters"));
    }
    if chars > MAX_PASSWORD {
        return Err(format!("the password must have at most {MAX_PASSWORD} characters"));
    }
    Ok(())
}

/// Hashes on a blocking thread.
pub async fn hash_blocking(password: String) -> Result<String, String> {
    tokio::task::spawn_blocking(move || hash_password(&password)).await.map_err(|e| e.to_string())?
}

/// Verifies on a blocking thread.
pub async fn verify_blocking(hash: String, password: String) -> bool {
    tokio::task::spawn_blocking(move || verify_password(&hash, &password)).await.unwrap_or(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn argon2id_hashes_verify_only_their_password() {
        let hash = hash_password("correct horse battery").expect("hash");
        assert!(hash.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"), "{hash}");
        assert!(verify_password(&hash, "correct horse battery"));
        assert!(!verify_password(&hash, "correct horse batterY"));
        assert!(!verify_password("not a hash", "correct horse battery"));
        assert_ne!(hash, hash_password("correct horse battery").expect("hash"), "salted");
        assert!(!verify_password(decoy_hash(), ""));
    }

    #[test]
    fn names_and_passwords_are_checked() {
        assert!(check_name("alice").is_ok());
        assert!(check_name("a.b-c_1").is_ok());
        for bad in ["", "Alice", "-x", "a b", "a/b", &"x".repeat(65), "<img>"] {
            assert!(check_name(bad).is_err(), "{bad:?}");
        }
        assert!(check_password("short").is_err());
        assert!(check_password(&generate_password()).is_ok());
        assert!(check_password(&"x".repeat(MAX_PASSWORD + 1)).is_err());
        assert_eq!(generate_password().len(), 24);
    }
}
