//! Credentials out of text that came from outside. A provider's error message may echo
//! what it was sent (`Incorrect API key provided: sk-...`), and that text goes on to the
//! client, the log and the usage record: every credential in it is masked first.

use std::sync::OnceLock;

use regex::Regex;

/// What a credential looks like: provider keys (OpenAI, Anthropic, GitHub, Slack,
/// Google, Stripe; OpenAI's own partly masked echo too), bearer tokens, AWS key ids,
/// JWTs.
const SHAPES: &str = concat!(
    r"\bsk-[A-Za-z0-9_*-]{6,}",
    r"|\bgh[pousr]_[A-Za-z0-9]{20,}",
    r"|\bxox[abprs]-[A-Za-z0-9-]{10,}",
    r"|\bAIza[0-9A-Za-z_-]{20,}",
    r"|\b[rs]k_live_[0-9A-Za-z]{16,}",
    r"|(?i:\bbearer\s+)[A-Za-z0-9._~+/=-]{8,}",
    r"|\b(?:AKIA|ASIA)[0-9A-Z]{16}\b",
    r"|\beyJ[A-Za-z0-9_-]{8,}\.eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}",
);

/// Shorter secrets are not searched for (they would mask ordinary words).
const MIN_SECRET: usize = 6;

fn shapes() -> Option<&'static Regex> {
    static RE: OnceLock<Option<Regex>> = OnceLock::new();
    RE.get_or_init(|| Regex::new(SHAPES).ok()).as_ref()
}

/// `text` with each of `secrets` and everything shaped like a credential replaced by
/// `***`.
pub fn credentials(text: &str, secrets: &[&str]) -> String {
    let mut out = text.to_string();
    for s in secrets.iter().filter(|s| s.len() >= MIN_SECRET) {
        if out.contains(*s) {
            out = out.replace(*s, "***");
        }
    }
    match shapes() {
        Some(re) if re.is_match(&out) => re.replace_all(&out, "***").into_owned(),
        // the pattern is a constant that compiles (a test holds it); if it did not,
        // no text from outside would pass unchecked
        None => "(provider message withheld)".to_string(),
        Some(_) => out,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_are_masked_and_the_rest_is_kept() {
        assert!(shapes().is_some());
        let m = credentials(
            "Incorrect API key provided: sk-proj-****************abcd. Authorization: Bearer abc.def-123_xyz",
            &[],
        );
        assert_eq!(m, "Incorrect API key provided: ***. Authorization: ***");
        let m = credentials("key my-provider-secret-1 and AKIAABCDEFGHIJKLMNOP refused", &["my-provider-secret-1"]);
        assert_eq!(m, "key *** and *** refused");
        let plain = "model `gpt-4o` does not exist; see the docs";
        assert_eq!(credentials(plain, &["abc"]), plain, "short secrets and ordinary words stay");
    }
}
