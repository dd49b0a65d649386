//! PII and secrets: one pass over the text with one regex of named alternatives (e-mail,
//! payment card, IBAN, US SSN, IPv4/IPv6, API keys and tokens, private key blocks,
//! custom patterns), each candidate confirmed by its own check (Luhn, IBAN mod-97, SSN
//! ranges and context, `std::net` address parsing), and a second pass for phone
//! numbers, confirmed by libphonenumber (the `phonenumber` crate): international
//! numbers (`+` or `00`) for their own country, national ones for each configured
//! region. Then an action per entity: `redact` (`[EMAIL]`), `mask` (all but the last 4
//! characters), `pseudonymize` (`<EMAIL_1>`, restored in the answer), `block` or `log`.
//!
//! Word boundaries keep ids alone: a candidate glued to letters, `#`, `_`, `/`, or a
//! dash or dot and more digits (an order number, a SKU, a hex nonce, a version, a
//! date) is not a value.

use std::collections::HashMap;
use std::fmt::Write as _;

use regex::Regex;

/// What a match is.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Entity {
    Email,
    Phone,
    Card,
    Iban,
    Ssn,
    Ip,
    /// API keys and tokens (cloud and provider keys, JWTs, private key blocks).
    Secret,
    /// A `custom` pattern, by its name.
    Custom(String),
}

impl Entity {
    /// The label in placeholders, metrics and usage notes.
    pub fn label(&self) -> &str {
        match self {
            Entity::Email => "EMAIL",
            Entity::Phone => "PHONE",
            Entity::Card => "CARD",
            Entity::Iban => "IBAN",
            Entity::Ssn => "SSN",
            Entity::Ip => "IP",
            Entity::Secret => "SECRET",
            Entity::Custom(name) => name,
        }
    }

    pub fn parse(s: &str) -> Option<Entity> {
        Some(match s {
            "email" => Entity::Email,
            "phone" => Entity::Phone,
            "card" => Entity::Card,
            "iban" => Entity::Iban,
            "ssn" => Entity::Ssn,
            "ip" => Entity::Ip,
            "secret" => Entity::Secret,
            _ => return None,
        })
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Action {
    Redact,
    Mask,
    Pseudonymize,
    Block,
    Log,
}

impl Action {
    pub fn parse(s: &str) -> Option<Action> {
        Some(match s {
            "redact" => Action::Redact,
            "mask" => Action::Mask,
            "pseudonymize" => Action::Pseudonymize,
            "block" => Action::Block,
            "log" => Action::Log,
            _ => return None,
        })
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Action::Redact => "redact",
            Action::Mask => "mask",
            Action::Pseudonymize => "pseudonymize",
            Action::Block => "block",
            Action::Log => "log",
        }
    }
}

/// The built-in alternatives, in priority order at a given position (longer and
/// stricter first).
const BUILTIN: &[(&str, &str)] = &[
    (
        "secret_pem",
        r"-----BEGIN (?:RSA |EC |DSA |OPENSSH |ENCRYPTED )?PRIVATE KEY-----[\s\S]*?-----END (?:RSA |EC |DSA |OPENSSH |ENCRYPTED )?PRIVATE KEY-----",
    ),
    ("secret_jwt", r"\beyJ[A-Za-z0-9_-]{8,}\.eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}"),
    ("secret_aws", r"\b(?:AKIA|ASIA)[0-9A-Z]{16}\b"),
    (
        "secret_key",
        r"\b(?:sk-ant-[A-Za-z0-9_-]{20,}|sk-(?:proj-)?[A-Za-z0-9_-]{20,}|gh[pousr]_[A-Za-z0-9]{36}|xox[abprs]-[A-Za-z0-9-]{10,}|AIza[0-9A-Za-z_-]{35}|sk_live_[0-9A-Za-z]{24,})",
    ),
    ("email", r"\b[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}\b"),
    ("iban", r"\b[A-Z]{2}[0-9]{2}(?: ?[A-Z0-9]){11,30}\b"),
    ("ssn", r"\b[0-9]{3}-[0-9]{2}-[0-9]{4}\b|\b[0-9]{3} [0-9]{2} [0-9]{4}\b|\b[0-9]{9}\b"),
    ("card", r"\b[0-9](?:[ -]?[0-9]){12,18}\b"),
    ("ipv4", r"\b(?:[0-9]{1,3}\.){3}[0-9]{1,3}\b"),
    (
        "ipv6",
        r"(?:[0-9A-Fa-f]{1,4}:){2,7}[0-9A-Fa-f]{1,4}|(?:[0-9A-Fa-f]{1,4}:){1,7}:(?:[0-9A-Fa-f]{1,4}(?::[0-9A-Fa-f]{1,4}){0,6})?|::(?:[0-9A-Fa-f]{1,4}:){0,6}[0-9A-Fa-f]{1,4}",
    ),
];

/// Phone candidates (their own pass): an optional `+` or `00`, then digits with the
/// separators people write (spaces, dots, dashes, slashes, an area code or a trunk
/// `(0)` in parentheses).
const PHONE: &str = r"(?:\+|\b00)?\(?[0-9][0-9]*\)?(?:[ .\-/\u{00A0}]{0,2}\(?[0-9]+\)?){1,7}";

/// Words that say a nine-digit number is a US SSN (as Presidio's recognizer reads them).
const SSN_CONTEXT: &[&str] = &["ssn", "social security", "social sec", "ss#", "ss #", "ss no", "taxpayer id", "tin"];

/// A confirmed match.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    pub entity: Entity,
    pub start: usize,
    pub end: usize,
}

/// A compiled detector and the action for each entity it looks for.
#[derive(Debug, Clone)]
pub struct Scanner {
    re: Regex,
    /// Capture group name -> entity.
    groups: Vec<(String, Entity)>,
    pub actions: HashMap<Entity, Action>,
    /// The phone pass, when phones are looked for, and the regions whose national
    /// formats count.
    phone: Option<(Regex, Vec<phonenumber::country::Id>)>,
}

fn luhn(digits: &[u8]) -> bool {
    let mut sum = 0u32;
    for (i, d) in digits.iter().rev().enumerate() {
        let mut v = u32::from(*d);
        if i % 2 == 1 {
            v *= 2;
            if v > 9 {
                v -= 9;
            }
        }
        sum += v;
    }
    sum % 10 == 0
}

fn iban_ok(s: &str) -> bool {
    let compact: Vec<u8> = s.bytes().filter(|b| !b.is_ascii_whitespace()).collect();
    if !(15..=34).contains(&compact.len()) {
        return false;
    }
    let (head, tail) = compact.split_at(4);
    let mut rem = 0u32;
    for b in tail.iter().chain(head) {
        let v = match b {
            b'0'..=b'9' => u32::from(b - b'0'),
            b'A'..=b'Z' => u32::from(b - b'A') + 10,
            _ => return false,
        };
        rem = if v >= 10 { (rem * 100 + v) % 97 } else { (rem * 10 + v) % 97 };
    }
    rem == 1
}

/// A US SSN: area, group and serial in their assigned ranges; without dashes only
/// where a context word (`SSN`, `social security`, ...) comes shortly before.
fn ssn_ok(s: &str, before: &str) -> bool {
    let digits: Vec<u8> = s.bytes().filter(u8::is_ascii_digit).map(|b| b - b'0').collect();
    if digits.len() != 9 {
        return false;
    }
    if !s.contains('-') {
        let start = before.char_indices().rev().nth(40).map_or(0, |(i, _)| i);
        let near = before[start..].to_ascii_lowercase();
        if !SSN_CONTEXT.iter().any(|w| near.contains(w)) {
            return false;
        }
    }
    let n = |r: std::ops::Range<usize>| digits[r].iter().fold(0u32, |a, d| a * 10 + u32::from(*d));
    let area = n(0..3);
    area != 0 && area != 666 && area < 900 && n(3..5) != 0 && n(5..9) != 0
}

/// A candidate's edges are a value's, not an id's: not glued to letters or `#_/`, and
/// no dash or dot with more digits or letters on either side. (`hash_ok`: a `#` before
/// it is a label's, as in `SSN#123456789`.)
fn free_standing(text: &str, start: usize, end: usize, hash_ok: bool) -> bool {
    let (before, after) = (&text[..start], &text[end..]);
    let mut b = before.chars().rev();
    let mut a = after.chars();
    let (b1, b2, a1, a2) = (b.next(), b.next(), a.next(), a.next());
    let glued = |c: Option<char>| {
        c.is_some_and(|c| c.is_alphanumeric() || matches!(c, '_' | '/' | '@') || (c == '#' && !hash_ok))
    };
    let joined = |sep: Option<char>, next: Option<char>| {
        sep.is_some_and(|c| matches!(c, '-' | '.' | ':')) && next.is_some_and(char::is_alphanumeric)
    };
    !glued(b1) && !glued(a1) && !joined(b1, b2) && !joined(a1, a2)
}

/// `YYYYMMDD` of this century or the last.
fn compact_date(g: &str) -> bool {
    let n = |r: std::ops::Range<usize>| g[r].parse::<u32>().unwrap_or(0);
    g.len() == 8
        && g.bytes().all(|b| b.is_ascii_digit())
        && (1900..2100).contains(&n(0..4))
        && (1..=12).contains(&n(4..6))
        && (1..=31).contains(&n(6..8))
}

/// Shapes that are dates, versions, ZIP+4 codes or Unix times, whatever a numbering
/// plan says of their digits.
fn not_a_phone(s: &str) -> bool {
    if s.starts_with('+') {
        return false;
    }
    let groups: Vec<&str> = s.split(['-', '.', '/', ' ']).filter(|g| !g.is_empty()).collect();
    let lens: Vec<usize> = groups.iter().map(|g| g.len()).collect();
    let all_digits = groups.iter().all(|g| g.bytes().all(|b| b.is_ascii_digit()));
    // a date, or a date with more after it (`2024/05/01-0042`)
    let date = matches!(lens.as_slice(), [4, 1..=2, 1..=2, ..] | [1..=2, 1..=2, 4, ..] | [1..=2, 1..=2, 2])
        && !s.contains(' ');
    let dotted_version = s.contains('.') && !s.contains(' ') && groups.len() <= 4 && lens.iter().all(|l| *l <= 3);
    let zip4 = lens == [5, 4] && s.contains('-');
    let unix_time = groups.len() == 1 && (lens[0] == 10 || lens[0] == 13) && s.starts_with('1');
    all_digits && (date || dotted_version || zip4 || unix_time || groups.iter().any(|g| compact_date(g)))
}

/// A phone number: with `+` or `00`, valid for its own country; otherwise valid in one
/// of `regions` (national format, trunk prefix included).
fn phone_ok(s: &str, regions: &[phonenumber::country::Id]) -> bool {
    // a number in parentheses of its own: `(+44 20 7946 0958)`
    let s = match s.strip_prefix('(').and_then(|t| t.strip_suffix(')')) {
        Some(inner) if !inner.contains(['(', ')']) => inner,
        _ => s,
    };
    let s = if s.matches('(').count() < s.matches(')').count() { s.trim_end_matches(')') } else { s };
    let s = if s.matches('(').count() > s.matches(')').count() { s.trim_start_matches('(') } else { s };
    let digits = s.bytes().filter(u8::is_ascii_digit).count();
    if !(7..=15).contains(&digits) || not_a_phone(s) {
        return false;
    }
    let valid = |region: Option<phonenumber::country::Id>, s: &str| {
        phonenumber::parse(region, s).is_ok_and(|n| phonenumber::is_valid(&n))
    };
    if s.starts_with('+') || s.starts_with("00") {
        let s = if let Some(rest) = s.strip_prefix("00") { format!("+{rest}") } else { s.to_string() };
        // `+33 (0)7 ...`: a trunk zero in parentheses is not dialled from abroad, except
        // where it is part of the number (Italy)
        return valid(None, &s.replace("(0)", "")) || valid(None, &s.replace("(0)", "0"));
    }
    regions.iter().any(|r| valid(Some(*r), s))
}

impl Scanner {
    /// `actions` for the built-in entities; `custom` patterns as `(NAME, regex, action)`;
    /// national phone numbers of the US.
    pub fn new(actions: HashMap<Entity, Action>, custom: &[(String, String, Action)]) -> Result<Scanner, String> {
        Scanner::with_regions(actions, custom, &["US".to_string()])
    }

    /// As `new`, with the regions (ISO 3166 codes) whose national phone formats count.
    pub fn with_regions(
        actions: HashMap<Entity, Action>,
        custom: &[(String, String, Action)],
        regions: &[String],
    ) -> Result<Scanner, String> {
        let mut alternatives: Vec<String> = Vec::new();
        let mut groups = Vec::new();
        // custom patterns first: an organisation's own formats win over the generic ones
        for (i, (name, pattern, action)) in custom.iter().enumerate() {
            Regex::new(pattern).map_err(|e| format!("custom pattern `{name}`: {e}"))?;
            let group = format!("custom{i}");
            alternatives.push(format!("(?P<{group}>{pattern})"));
            groups.push((group, Entity::Custom(name.clone())));
            let _ = action;
        }
        for (group, pattern) in BUILTIN {
            let entity = match *group {
                g if g.starts_with("secret") => Entity::Secret,
                "ipv4" | "ipv6" => Entity::Ip,
                g => Entity::parse(g).unwrap_or(Entity::Secret),
            };
            if !actions.contains_key(&entity) {
                continue;
            }
            alternatives.push(format!("(?P<{group}>{pattern})"));
            groups.push((group.to_string(), entity));
        }
        let mut actions = actions;
        for (name, _, action) in custom {
            actions.insert(Entity::Custom(name.clone()), *action);
        }
        let re = if alternatives.is_empty() { Regex::new("[^\\s\\S]") } else { Regex::new(&alternatives.join("|")) }
            .map_err(|e| e.to_string())?;
        let phone = if actions.contains_key(&Entity::Phone) {
            let ids = regions
                .iter()
                .map(|r| r.parse::<phonenumber::country::Id>().map_err(|_| format!("unknown region `{r}`")))
                .collect::<Result<Vec<_>, _>>()?;
            Some((Regex::new(PHONE).map_err(|e| e.to_string())?, ids))
        } else {
            None
        };
        Ok(Scanner { re, groups, actions, phone })
    }

    /// Every confirmed match, in order, in one pass.
    pub fn scan(&self, text: &str) -> Vec<Finding> {
        let mut out = Vec::new();
        for caps in self.re.captures_iter(text) {
            let Some((group, entity)) = self.groups.iter().find(|(g, _)| caps.name(g).is_some()) else { continue };
            let Some(m) = caps.name(group) else { continue };
            let s = m.as_str();
            let ok = match group.as_str() {
                "card" => {
                    let digits: Vec<u8> = s.bytes().filter(u8::is_ascii_digit).map(|b| b - b'0').collect();
                    // no card number starts with 0 (ISO/IEC 7812 leaves that industry unissued)
                    (13..=19).contains(&digits.len())
                        && digits[0] != 0
                        && luhn(&digits)
                        && free_standing(text, m.start(), m.end(), false)
                }
                "iban" => iban_ok(s),
                "ssn" => ssn_ok(s, &text[..m.start()]) && free_standing(text, m.start(), m.end(), true),
                // not the middle of a longer dotted number (a version 1.2.3.4.5)
                "ipv4" => {
                    let (before, after) = (&text[..m.start()], &text[m.end()..]);
                    let dotted =
                        |a: Option<char>, b: Option<char>| a == Some('.') && b.is_some_and(|c| c.is_ascii_digit());
                    s.parse::<std::net::Ipv4Addr>().is_ok()
                        && !dotted(after.chars().next(), after.chars().nth(1))
                        && !dotted(before.chars().next_back(), before.chars().rev().nth(1))
                }
                "ipv6" => s.parse::<std::net::Ipv6Addr>().is_ok(),
                _ => true,
            };
            if ok {
                out.push(Finding { entity: entity.clone(), start: m.start(), end: m.end() });
            }
        }
        if let Some((re, regions)) = &self.phone {
            let mut phones = Vec::new();
            for m in re.find_iter(text) {
                // trailing separators are not the number's
                let s = m.as_str().trim_end_matches([' ', '.', '-', '/', '(', '\u{00A0}']);
                let (start, end) = (m.start(), m.start() + s.len());
                let taken = out.iter().any(|f| f.start < end && start < f.end);
                if !taken && free_standing(text, start, end, false) && phone_ok(s, regions) {
                    phones.push(Finding { entity: Entity::Phone, start, end });
                }
            }
            if !phones.is_empty() {
                out.extend(phones);
                out.sort_by_key(|f| f.start);
            }
        }
        out
    }

    /// Applies the actions to `text`: the new text and what was done, or the entity that
    /// blocks it. Pseudonyms come from (and go into) `vault`.
    pub fn apply(&self, text: &str, vault: &mut Vault) -> Result<(String, Vec<(Entity, Action)>), Entity> {
        self.apply_as(text, vault, false)
    }

    /// The same for an answer: values the request pseudonymized are the client's own and
    /// pass (the placeholders were just restored); every other action applies.
    pub fn apply_as(
        &self,
        text: &str,
        vault: &mut Vault,
        answer: bool,
    ) -> Result<(String, Vec<(Entity, Action)>), Entity> {
        let findings = self.scan(text);
        if findings.is_empty() {
            return Ok((text.to_string(), Vec::new()));
        }
        let mut out = String::with_capacity(text.len());
        let mut done = Vec::new();
        let mut at = 0;
        for f in findings {
            let action = self.actions.get(&f.entity).copied().unwrap_or(Action::Log);
            let value = &text[f.start..f.end];
            if answer && action == Action::Pseudonymize {
                continue;
            }
            out.push_str(&text[at..f.start]);
            match action {
                Action::Block => return Err(f.entity),
                Action::Log => out.push_str(value),
                Action::Redact => {
                    let _ = write!(out, "[{}]", f.entity.label());
                }
                Action::Mask => {
                    let keep = value.chars().count().saturating_sub(4);
                    out.extend(
                        value.chars().enumerate().map(|(i, c)| if i < keep && c.is_alphanumeric() { '*' } else { c }),
                    );
                }
                Action::Pseudonymize => out.push_str(&vault.placeholder(&f.entity, value)),
            }
            done.push((f.entity, action));
            at = f.end;
        }
        out.push_str(&text[at..]);
        Ok((out, done))
    }
}

/// A request's pseudonyms: the provider sees `<EMAIL_1>`, the client gets the value back.
#[derive(Debug, Default, Clone)]
pub struct Vault {
    by_value: HashMap<String, String>,
    by_placeholder: HashMap<String, String>,
    counts: HashMap<String, usize>,
}

impl Vault {
    fn placeholder(&mut self, entity: &Entity, value: &str) -> String {
        if let Some(p) = self.by_value.get(value) {
            return p.clone();
        }
        let n = self.counts.entry(entity.label().to_string()).or_default();
        *n += 1;
        let p = format!("<{}_{}>", entity.label(), n);
        self.by_value.insert(value.to_string(), p.clone());
        self.by_placeholder.insert(p.clone(), value.to_string());
        p
    }

    pub fn is_empty(&self) -> bool {
        self.by_placeholder.is_empty()
    }

    /// Puts the real values back in place of the placeholders.
    pub fn restore(&self, text: &str) -> String {
        if self.is_empty() || !text.contains('<') {
            return text.to_string();
        }
        let mut out = String::with_capacity(text.len());
        let mut rest = text;
        while let Some(open) = rest.find('<') {
            out.push_str(&rest[..open]);
            let after = &rest[open..];
            match after.find('>').map(|close| &after[..=close]).and_then(|p| self.by_placeholder.get(p).map(|v| (p, v)))
            {
                Some((p, v)) => {
                    out.push_str(v);
                    rest = &after[p.len()..];
                }
                None => {
                    out.push('<');
                    rest = &after[1..];
                }
            }
        }
        out.push_str(rest);
        out
    }

    /// The longest a placeholder is (the hold-back a stream needs).
    pub fn longest(&self) -> usize {
        self.by_placeholder.keys().map(String::len).max().unwrap_or(0)
    }
}

/// Restores placeholders in a stream of text pieces: a piece that ends inside what
/// could still become a placeholder is held back until the next (at most the longest
/// placeholder's length), so a placeholder split across chunks is restored whole and
/// no partial one reaches the client; text that cannot be part of one passes at once.
#[derive(Debug, Default)]
pub struct StreamRestorer {
    held: String,
}

impl StreamRestorer {
    /// The text that can be released now.
    pub fn push(&mut self, vault: &Vault, piece: &str) -> String {
        self.held.push_str(piece);
        // hold back from the last '<' that has no '>' after it, if it is short enough to
        // still be a placeholder's beginning
        let cut = match self.held.rfind('<') {
            Some(open) if !self.held[open..].contains('>') && self.held.len() - open < vault.longest() => open,
            _ => self.held.len(),
        };
        let ready: String = self.held.drain(..cut).collect();
        vault.restore(&ready)
    }

    /// What is left at the end of the stream.
    pub fn finish(&mut self, vault: &Vault) -> String {
        let rest = std::mem::take(&mut self.held);
        vault.restore(&rest)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn all(action: Action) -> Scanner {
        let actions =
            [Entity::Email, Entity::Phone, Entity::Card, Entity::Iban, Entity::Ssn, Entity::Ip, Entity::Secret]
                .into_iter()
                .map(|e| (e, action))
                .collect();
        Scanner::new(actions, &[("EMPLOYEE".into(), r"\bEMP-[0-9]{6}\b".into(), Action::Redact)]).unwrap()
    }

    fn entities(s: &Scanner, text: &str) -> Vec<String> {
        s.scan(text).into_iter().map(|f| format!("{}:{}", f.entity.label(), &text[f.start..f.end])).collect()
    }

    #[test]
    fn each_entity_is_found_and_checked() {
        let s = all(Action::Redact);
        let text = "mail jane.doe+x@example.co.uk, call +44 20 7946 0958 or (415) 555-2671, card 4111 1111 1111 1111, \
                    iban DE89 3704 0044 0532 0130 00, ssn 123-45-6789, ip 192.168.10.1 and 2001:db8::8a2e:370:7334, \
                    key AKIAIOSFODNN7EXAMPLE and sk-proj-abcdefghijklmnopqrstuvwx, staff EMP-004211";
        let found = entities(&s, text);
        for want in [
            "EMAIL:jane.doe+x@example.co.uk",
            "PHONE:+44 20 7946 0958",
            "PHONE:(415) 555-2671",
            "CARD:4111 1111 1111 1111",
            "IBAN:DE89 3704 0044 0532 0130 00",
            "SSN:123-45-6789",
            "IP:192.168.10.1",
            "IP:2001:db8::8a2e:370:7334",
            "SECRET:AKIAIOSFODNN7EXAMPLE",
            "SECRET:sk-proj-abcdefghijklmnopqrstuvwx",
            "EMPLOYEE:EMP-004211",
        ] {
            assert!(found.iter().any(|f| f == want), "missing {want} in {found:?}");
        }
        // look-alikes that fail their checks are left alone
        let near = "card 4111 1111 1111 1112, iban DE00 3704 0044 0532 0130 00, ssn 000-12-3456, \
                    ip 999.1.1.1, time 12:30:45, version 1.2.3.4.5, order 12345";
        assert_eq!(entities(&s, near), Vec::<String>::new(), "{near}");
        let pem = "-----BEGIN PRIVATE KEY-----\nMIIEvQIBADANBgkqhkiG9w0BAQEFAASC\n-----END PRIVATE KEY-----";
        assert_eq!(entities(&s, pem).len(), 1);
        let jwt = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0THsR8U";
        assert_eq!(entities(&s, jwt), vec![format!("SECRET:{jwt}")]);
    }

    #[test]
    fn actions_redact_mask_block_and_pseudonymize() {
        let mut v = Vault::default();
        let (out, done) = all(Action::Redact).apply("write to a@b.io or c@d.io", &mut v).unwrap();
        assert_eq!(out, "write to [EMAIL] or [EMAIL]");
        assert_eq!(done.len(), 2);
        let (out, _) = all(Action::Mask).apply("card 4111111111111111", &mut v).unwrap();
        assert_eq!(out, "card ************1111");
        assert_eq!(all(Action::Block).apply("ssn 123-45-6789", &mut v).unwrap_err(), Entity::Ssn);
        let (out, _) = all(Action::Log).apply("ssn 123-45-6789", &mut v).unwrap();
        assert_eq!(out, "ssn 123-45-6789");
        let (out, _) = all(Action::Pseudonymize).apply("a@b.io, c@d.io, a@b.io", &mut v).unwrap();
        assert_eq!(out, "<EMAIL_1>, <EMAIL_2>, <EMAIL_1>");
        assert_eq!(v.restore("Dear <EMAIL_2> and <EMAIL_1>, <EMAIL_9> <b>"), "Dear c@d.io and a@b.io, <EMAIL_9> <b>");
    }

    #[test]
    fn a_placeholder_split_across_chunks_is_restored_whole() {
        let mut v = Vault::default();
        all(Action::Pseudonymize).apply("jane@example.com", &mut v).unwrap();
        let mut r = StreamRestorer::default();
        let mut out = Vec::new();
        for piece in ["Hello ", "<EM", "AIL", "_1", ">", ", bye <", "3 >", " end"] {
            out.push(r.push(&v, piece));
        }
        out.push(r.finish(&v));
        // nothing partial was released, and text without '<' passed at once
        assert_eq!(out[0], "Hello ");
        assert!(out.iter().all(|p| !p.contains("<EM")), "{out:?}");
        assert_eq!(out.concat(), "Hello jane@example.com, bye <3 > end");
    }
}
