//! `[[routes]]`: rules that pick the model alias from what the request says. Every
//! condition a rule gives must hold; the first rule that matches wins; a request that
//! no rule matches is served by the alias it names.

use aho_corasick::AhoCorasick;
use regex::Regex;

/// One checked rule.
#[derive(Debug, Clone)]
pub struct Route {
    pub name: String,
    /// The alias that serves a matching request.
    pub alias: String,
    /// Requested `model` values the rule applies to; empty: any.
    pub models: Vec<String>,
    /// Lower-case header name and the pattern its value must match.
    pub headers: Vec<(String, Regex)>,
    pub keys: Vec<String>,
    pub users: Vec<String>,
    pub has_tools: Option<bool>,
    pub has_images: Option<bool>,
    pub min_prompt_tokens: Option<u64>,
    pub max_prompt_tokens: Option<u64>,
    pub regex: Option<Regex>,
    /// Case-insensitive keyword set (one pass over the text, whatever its size).
    pub keywords: Option<AhoCorasick>,
}

/// What a rule can look at.
#[derive(Debug, Clone, Copy, Default)]
pub struct RouteInput<'a> {
    /// The `model` the client asked for.
    pub model: &'a str,
    pub key_id: &'a str,
    pub user: Option<&'a str>,
    /// Request headers a rule names (lower-case names).
    pub headers: &'a [(String, String)],
    pub has_tools: bool,
    pub has_images: bool,
    pub prompt_tokens: u64,
    /// The text of the last user message (for embeddings: the input).
    pub last_user_text: &'a str,
}

impl Route {
    pub fn matches(&self, r: &RouteInput<'_>) -> bool {
        let listed = |list: &[String], v: &str| list.is_empty() || list.iter().any(|x| x == v);
        listed(&self.models, r.model)
            && listed(&self.keys, r.key_id)
            && (self.users.is_empty() || r.user.is_some_and(|u| self.users.iter().any(|x| x == u)))
            && self.has_tools.is_none_or(|want| want == r.has_tools)
            && self.has_images.is_none_or(|want| want == r.has_images)
            && self.min_prompt_tokens.is_none_or(|n| r.prompt_tokens >= n)
            && self.max_prompt_tokens.is_none_or(|n| r.prompt_tokens <= n)
            && self.headers.iter().all(|(name, re)| r.headers.iter().any(|(h, v)| h == name && re.is_match(v)))
            && self.regex.as_ref().is_none_or(|re| re.is_match(r.last_user_text))
            && self.keywords.as_ref().is_none_or(|k| k.is_match(r.last_user_text))
    }

    /// Whether a rule reads the request's content (so the caller extracts it only then).
    pub fn reads_content(&self) -> bool {
        self.regex.is_some() || self.keywords.is_some()
    }
}
