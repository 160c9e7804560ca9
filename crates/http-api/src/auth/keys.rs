use sha2::{Digest, Sha256};

/// The prefix of keys `commander keys new` makes, so they are recognisable in a leak scanner.
const KEY_PREFIX: &str = "cmdr_";

/// A fresh random API key and its SHA-256 (hex): give the key to its owner once, keep only the
/// hash in the configuration.
pub fn new_api_key() -> Result<(String, String), getrandom::Error> {
    let mut bytes = [0u8; 32];
    getrandom::getrandom(&mut bytes)?;
    let key = format!("{KEY_PREFIX}{}", hex::encode(bytes));
    let digest = sha256_hex(&key);
    Ok((key, digest))
}

pub(crate) fn sha256(text: &str) -> [u8; 32] {
    Sha256::digest(text.as_bytes()).into()
}

pub(crate) fn sha256_hex(text: &str) -> String {
    hex::encode(sha256(text))
}

/// Equality whose time does not depend on where the inputs differ.
pub(crate) fn constant_time_eq(a: &[u8; 32], b: &[u8; 32]) -> bool {
    let difference = a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y));
    std::hint::black_box(difference) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn new_keys_are_random_prefixed_and_hashed() {
        let (a, hash_a) = new_api_key().unwrap();
        let (b, _) = new_api_key().unwrap();
        assert_ne!(a, b);
        assert!(a.starts_with("cmdr_") && a.len() == 5 + 64);
        assert_eq!(hash_a, sha256_hex(&a));
        assert_eq!(hash_a.len(), 64);
    }

    #[test]
    fn constant_time_eq_compares_whole_arrays() {
        let a = sha256("x");
        let mut b = a;
        assert!(constant_time_eq(&a, &b));
        b[31] ^= 1;
        assert!(!constant_time_eq(&a, &b));
    }
}
