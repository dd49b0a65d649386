//! The one generator of ids: request ids, response ids for providers that send none,
//! batch and file ids. 96 random bits as 24 hex digits after a prefix.

/// `<prefix><24 hex digits>`.
pub fn new_id(prefix: &str) -> String {
    let mut raw = [0u8; 12];
    raw[..8].copy_from_slice(&fastrand::u64(..).to_be_bytes());
    raw[8..].copy_from_slice(&fastrand::u32(..).to_be_bytes());
    let mut id = String::with_capacity(prefix.len() + 24);
    id.push_str(prefix);
    id.push_str(&hex::encode(raw));
    id
}

/// Longest `x-request-id` a client may choose (longer ones are replaced).
pub const MAX_REQUEST_ID: usize = 128;

/// The request id: the client's `x-request-id` when it is a sane token, else a new one.
pub fn request_id(client: Option<&str>) -> String {
    match client {
        Some(v) if !v.is_empty() && v.len() <= MAX_REQUEST_ID && v.bytes().all(|b| b.is_ascii_graphic()) => {
            v.to_string()
        }
        _ => new_id("req_"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_have_a_prefix_and_24_hex_digits() {
        let id = new_id("req_");
        assert_eq!(id.len(), 28);
        assert!(id[4..].bytes().all(|b| b.is_ascii_hexdigit()));
        assert_ne!(new_id(""), new_id(""));
        assert_eq!(request_id(Some("abc-1")), "abc-1");
        for bad in [Some(""), Some("a b"), Some(&*"x".repeat(129)), None] {
            assert!(request_id(bad).starts_with("req_"), "{bad:?}");
        }
    }
}
