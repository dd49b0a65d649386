//! Checked guardrail settings.

/// A `[[guardrails]]` set (compiled by the engine).
#[derive(Debug, Clone, PartialEq)]
pub struct Guardrail {
    pub name: String,
    pub on_request: bool,
    pub on_response: bool,
    /// Entity -> action, as written (checked).
    pub pii: Vec<(String, String)>,
    pub custom: Vec<CustomPattern>,
    /// Regions whose national phone formats count (`["US"]` unless set).
    pub regions: Vec<String>,
    /// Prompt-injection scoring: threshold, and whether to block (else flag).
    pub injection: Option<(f64, bool)>,
    /// Whether injection scoring runs the shipped classifier (else phrases alone).
    pub injection_model: bool,
    /// A classifier alias asked about messages scored from the second value up.
    pub injection_classifier: Option<(String, f64)>,
    pub moderation: Option<ModerationCfg>,
    pub webhook: Option<WebhookCfg>,
    pub presidio: Option<PresidioCfg>,
}

/// A guardrail service of your own (`webhook`).
#[derive(Debug, Clone, PartialEq)]
pub struct WebhookCfg {
    pub url: String,
    pub headers: Vec<(String, String)>,
    pub timeout: std::time::Duration,
    /// Block when it cannot answer (else let through, counted).
    pub fail_closed: bool,
    /// The largest answer read.
    pub max_answer_bytes: usize,
}

/// A Presidio analyzer (`presidio`).
#[derive(Debug, Clone, PartialEq)]
pub struct PresidioCfg {
    pub url: String,
    pub language: String,
    pub score: f64,
    /// Entity type -> action; `*` for the rest.
    pub entities: Vec<(String, String)>,
    pub timeout: std::time::Duration,
    pub fail_closed: bool,
    pub max_answer_bytes: usize,
}

/// The moderation categories, in OpenAI's names (validated here, scored by the
/// engine's moderator).
pub const MODERATION_CATEGORIES: &[&str] = &["hate", "harassment", "violence", "self-harm", "sexual", "illicit"];

#[derive(Debug, Clone, PartialEq)]
pub struct ModerationCfg {
    pub threshold: f64,
    pub thresholds: Vec<(String, f64)>,
    /// Category -> (phrase, severity).
    pub extra: Vec<(String, Vec<(String, f64)>)>,
    pub block: bool,
    /// A second opinion from a provider's `/moderations` (provider, model).
    pub upstream: Option<(String, String)>,
    /// Whether the shipped classifier scores too (else the phrase lists alone).
    pub model: bool,
    /// A Llama-Guard-style model alias asked about each request.
    pub classifier: Option<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct CustomPattern {
    pub name: String,
    pub regex: String,
    pub action: String,
}
