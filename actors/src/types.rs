//! Domain types: the unified chat and embeddings requests (typed where the gateway looks,
//! everything else kept in `rest` and passed through), usage, and the ledger record.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::GatewayError;

/// Which API a request is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Endpoint {
    Chat,
    Embeddings,
}

impl Endpoint {
    pub fn as_str(self) -> &'static str {
        match self {
            Endpoint::Chat => "chat",
            Endpoint::Embeddings => "embeddings",
        }
    }

    /// Path under the provider's base URL.
    pub fn path(self) -> &'static str {
        match self {
            Endpoint::Chat => "/chat/completions",
            Endpoint::Embeddings => "/embeddings",
        }
    }
}

/// `stream_options`
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct StreamOptions {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub include_usage: Option<bool>,
    #[serde(flatten)]
    pub rest: Map<String, Value>,
}

/// A wire format a client speaks and a provider may speak too.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WireFormat {
    /// Anthropic's Messages API.
    Anthropic,
    /// OpenAI's Responses API.
    Responses,
}

/// The request as the client sent it, kept beside the OpenAI view the engine works on,
/// so that a target speaking the same format gets it whole (fields the OpenAI view has no
/// place for, such as `thinking` or `cache_control`, included).
#[derive(Debug, Clone, PartialEq)]
pub struct NativeRequest {
    pub format: WireFormat,
    /// The client's JSON body.
    pub body: Map<String, Value>,
    /// Client headers of that format that go upstream with it (`anthropic-beta`).
    pub headers: Vec<(String, String)>,
    /// Why the OpenAI view leaves part of the request out (a hosted tool a chat target
    /// cannot run): a target that does not take the request whole refuses it with this.
    pub untranslatable: Option<String>,
}

/// OpenAI Chat Completions request.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ChatRequest {
    pub model: String,
    pub messages: Vec<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stream: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stream_options: Option<StreamOptions>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_tokens: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_completion_tokens: Option<u64>,
    #[serde(flatten)]
    pub rest: Map<String, Value>,
    /// The client's own request when it came in another format (`/v1/messages`).
    #[serde(skip)]
    pub native: Option<std::sync::Arc<NativeRequest>>,
}

/// What a request field must be, for [`check_fields`].
#[derive(Debug, Clone, Copy)]
pub enum Shape {
    Bool,
    /// An integer in the range.
    Int(i64, i64),
    /// A number in the range.
    Number(f64, f64),
    Str,
    Array,
    Object,
    StrOrArray,
    StrOrObject,
}

impl Shape {
    fn holds(self, v: &Value) -> bool {
        match self {
            Shape::Bool => v.is_boolean(),
            Shape::Int(lo, hi) => v.as_i64().is_some_and(|n| (lo..=hi).contains(&n)),
            Shape::Number(lo, hi) => v.as_f64().is_some_and(|n| n >= lo && n <= hi),
            Shape::Str => v.is_string(),
            Shape::Array => v.is_array(),
            Shape::Object => v.is_object(),
            Shape::StrOrArray => v.is_string() || v.is_array(),
            Shape::StrOrObject => v.is_string() || v.is_object(),
        }
    }

    fn describe(self) -> String {
        match self {
            Shape::Bool => "a boolean".into(),
            Shape::Int(lo, hi) => format!("an integer from {lo} to {hi}"),
            Shape::Number(lo, hi) => format!("a number from {lo} to {hi}"),
            Shape::Str => "a string".into(),
            Shape::Array => "an array".into(),
            Shape::Object => "an object".into(),
            Shape::StrOrArray => "a string or an array".into(),
            Shape::StrOrObject => "a string or an object".into(),
        }
    }
}

/// Checks the fields of `obj` that `rules` name (absent or `null` is fine): a 400 that
/// names the first one of the wrong shape.
pub fn check_fields(obj: &Map<String, Value>, rules: &[(&str, Shape)]) -> Result<(), GatewayError> {
    for (name, shape) in rules {
        match obj.get(*name) {
            None | Some(Value::Null) => {}
            Some(v) if shape.holds(v) => {}
            Some(_) => return Err(GatewayError::BadRequest(format!("`{name}` must be {}", shape.describe()))),
        }
    }
    Ok(())
}

/// The optional fields of a chat request the gateway checks (OpenAI's ranges).
const CHAT_FIELDS: &[(&str, Shape)] = &[
    ("stream", Shape::Bool),
    ("n", Shape::Int(1, 128)),
    ("temperature", Shape::Number(0.0, 2.0)),
    ("top_p", Shape::Number(0.0, 1.0)),
    ("presence_penalty", Shape::Number(-2.0, 2.0)),
    ("frequency_penalty", Shape::Number(-2.0, 2.0)),
    ("logprobs", Shape::Bool),
    ("top_logprobs", Shape::Int(0, 20)),
    ("seed", Shape::Int(i64::MIN, i64::MAX)),
    ("user", Shape::Str),
    ("stop", Shape::StrOrArray),
    ("tools", Shape::Array),
    ("functions", Shape::Array),
    ("tool_choice", Shape::StrOrObject),
    ("parallel_tool_calls", Shape::Bool),
    ("response_format", Shape::Object),
    ("stream_options", Shape::Object),
    ("metadata", Shape::Object),
    ("logit_bias", Shape::Object),
    ("max_tokens", Shape::Int(1, i64::MAX)),
    ("max_completion_tokens", Shape::Int(1, i64::MAX)),
];

/// The roles a chat message may have.
const CHAT_ROLES: &[&str] = &["system", "developer", "user", "assistant", "tool", "function"];

impl ChatRequest {
    /// Parses and checks the shape the gateway relies on; errors are client errors that
    /// name the field.
    pub fn parse(body: &[u8]) -> Result<ChatRequest, GatewayError> {
        match serde_json::from_slice(body) {
            Ok(r) => Self::checked(r),
            // a field of the wrong type: found again by name (only on this error path)
            Err(e) => Err(Self::explain(serde_json::from_slice::<Value>(body).ok(), e)),
        }
    }

    /// [`ChatRequest::parse`] of a body already parsed (and shaped: `prompts::shape`).
    pub fn from_object(obj: Map<String, Value>) -> Result<ChatRequest, GatewayError> {
        let v = Value::Object(obj);
        match ChatRequest::deserialize(&v) {
            Ok(r) => Self::checked(r),
            Err(e) => Err(Self::explain(Some(v), e)),
        }
    }

    /// The error of a body that did not deserialize, naming the field when it can.
    fn explain(parsed: Option<Value>, e: serde_json::Error) -> GatewayError {
        if let Some(Value::Object(obj)) = parsed {
            if let Err(named) = check_fields(&obj, CHAT_FIELDS) {
                return named;
            }
            for (name, ok) in [
                ("model", obj.get("model").is_some_and(Value::is_string)),
                ("messages", obj.get("messages").is_some_and(Value::is_array)),
            ] {
                if !ok {
                    return GatewayError::BadRequest(format!(
                        "`{name}` is required: {}",
                        if name == "model" { "a string" } else { "an array of messages" }
                    ));
                }
            }
        }
        json_error(e)
    }

    fn checked(req: ChatRequest) -> Result<ChatRequest, GatewayError> {
        if req.model.is_empty() {
            return Err(GatewayError::BadRequest("`model` must not be empty".into()));
        }
        if req.messages.is_empty() {
            return Err(GatewayError::BadRequest("`messages` must contain at least one message".into()));
        }
        for (i, m) in req.messages.iter().enumerate() {
            match m.get("role").and_then(Value::as_str) {
                Some(role) if CHAT_ROLES.contains(&role) => {}
                Some(role) => {
                    let roles = CHAT_ROLES.join(", ");
                    return Err(GatewayError::BadRequest(format!(
                        "`messages[{i}].role` `{role}` is not one of {roles}"
                    )));
                }
                None => {
                    return Err(GatewayError::BadRequest(format!(
                        "`messages[{i}]` must be an object with a string `role`"
                    )))
                }
            }
        }
        check_fields(&req.rest, CHAT_FIELDS)?;
        if req.max_tokens == Some(0) || req.max_completion_tokens == Some(0) {
            return Err(GatewayError::BadRequest("`max_tokens` must be at least 1".into()));
        }
        Ok(req)
    }

    pub fn is_stream(&self) -> bool {
        self.stream.unwrap_or(false)
    }

    /// Whether the client asked for the usage chunk at the end of a stream.
    pub fn wants_stream_usage(&self) -> bool {
        self.stream_options.as_ref().and_then(|o| o.include_usage).unwrap_or(false)
    }

    pub fn max_output_tokens(&self) -> Option<u64> {
        self.max_completion_tokens.or(self.max_tokens)
    }

    /// The request's `user` field.
    pub fn user(&self) -> Option<&str> {
        self.rest.get("user").and_then(Value::as_str)
    }

    /// Whether the request offers tools (or legacy functions).
    pub fn has_tools(&self) -> bool {
        ["tools", "functions"]
            .iter()
            .any(|k| self.rest.get(*k).and_then(Value::as_array).is_some_and(|a| !a.is_empty()))
    }

    /// Whether any message carries an image part.
    pub fn has_images(&self) -> bool {
        self.messages.iter().any(|m| {
            m.get("content").and_then(Value::as_array).is_some_and(|parts| {
                parts.iter().any(|p| {
                    matches!(p.get("type").and_then(Value::as_str), Some("image_url" | "input_image" | "image"))
                })
            })
        })
    }

    /// The text of the last user message (its text parts joined by newlines).
    pub fn last_user_text(&self) -> String {
        let Some(m) = self.messages.iter().rev().find(|m| m.get("role").and_then(Value::as_str) == Some("user")) else {
            return String::new();
        };
        match m.get("content") {
            Some(Value::String(s)) => s.clone(),
            Some(Value::Array(parts)) => {
                parts.iter().filter_map(|p| p.get("text").and_then(Value::as_str)).collect::<Vec<_>>().join("\n")
            }
            _ => String::new(),
        }
    }
}

/// OpenAI embeddings request.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct EmbeddingsRequest {
    pub model: String,
    pub input: Value,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub encoding_format: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dimensions: Option<u32>,
    #[serde(flatten)]
    pub rest: Map<String, Value>,
}

impl EmbeddingsRequest {
    pub fn parse(body: &[u8]) -> Result<EmbeddingsRequest, GatewayError> {
        let req: EmbeddingsRequest = serde_json::from_slice(body).map_err(json_error)?;
        if req.model.is_empty() {
            return Err(GatewayError::BadRequest("`model` must not be empty".into()));
        }
        let ok = match &req.input {
            Value::String(_) => true,
            Value::Array(items) => {
                !items.is_empty()
                    && (items.iter().all(Value::is_string)
                        || items.iter().all(Value::is_number)
                        || items.iter().all(|i| i.as_array().is_some_and(|a| a.iter().all(Value::is_number))))
            }
            _ => false,
        };
        if !ok {
            return Err(GatewayError::BadRequest(
                "`input` must be a string, a non-empty array of strings, or token arrays".into(),
            ));
        }
        match req.encoding_format.as_deref() {
            None | Some("float") | Some("base64") => {}
            Some(other) => {
                return Err(GatewayError::BadRequest(format!(
                    "`encoding_format` must be `float` or `base64`, not `{other}`"
                )))
            }
        }
        Ok(req)
    }

    /// How many inputs the request holds (a flat token array is one).
    pub fn input_count(&self) -> usize {
        match &self.input {
            Value::Array(items) if items.iter().all(Value::is_number) => 1,
            Value::Array(items) => items.len(),
            _ => 1,
        }
    }

    /// The inputs as strings (token arrays are rendered as their numbers).
    pub fn inputs(&self) -> Vec<String> {
        match &self.input {
            Value::String(s) => vec![s.clone()],
            Value::Array(items) => items
                .iter()
                .map(|i| match i {
                    Value::String(s) => s.clone(),
                    other => other.to_string(),
                })
                .collect(),
            _ => Vec::new(),
        }
    }
}

/// Unix time in milliseconds (0 if the clock is before 1970).
pub fn unix_ms() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
}

/// Unix time in seconds, as OpenAI's `created`.
pub fn unix_secs() -> u64 {
    unix_ms() / 1000
}

/// How deeply a JSON value nests (a scalar is 0).
pub fn json_depth(v: &Value) -> usize {
    // iterative: a hostile document cannot overflow the stack here
    let mut deepest = 0;
    let mut stack = vec![(v, 0usize)];
    while let Some((v, d)) = stack.pop() {
        deepest = deepest.max(d);
        match v {
            Value::Array(a) => stack.extend(a.iter().map(|x| (x, d + 1))),
            Value::Object(o) => stack.extend(o.values().map(|x| (x, d + 1))),
            _ => {}
        }
    }
    deepest
}

fn json_error(e: serde_json::Error) -> GatewayError {
    GatewayError::BadRequest(format!("invalid JSON body: {e}"))
}

/// Token usage as reported by a provider (or estimated when it reports none).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Usage {
    /// Every input token, cache reads and writes included.
    pub input: u64,
    /// Every output token, reasoning included.
    pub output: u64,
    /// Of `input`, read from a prompt cache (`prompt_tokens_details.cached_tokens`).
    pub cached_input: u64,
    /// Of `input`, written to a prompt cache (`prompt_tokens_details.cache_write_tokens`:
    /// Anthropic's `cache_creation_input_tokens`, named as OpenAI's Responses usage names it).
    pub cache_write: u64,
    /// Of `output`, reasoning (`completion_tokens_details.reasoning_tokens`).
    pub reasoning: u64,
}

impl Usage {
    /// Reads OpenAI's `usage` object.
    pub fn from_openai(v: &Value) -> Option<Usage> {
        let u = v.as_object()?;
        let input = u.get("prompt_tokens").and_then(Value::as_u64)?;
        let output = u.get("completion_tokens").and_then(Value::as_u64).unwrap_or(0);
        let detail = |d: &str, k: &str| u.get(d).and_then(|d| d.get(k)).and_then(Value::as_u64).unwrap_or(0);
        Some(Usage {
            input,
            output,
            cached_input: detail("prompt_tokens_details", "cached_tokens"),
            cache_write: detail("prompt_tokens_details", "cache_write_tokens"),
            reasoning: detail("completion_tokens_details", "reasoning_tokens"),
        })
    }

    /// The counts the pricing needs.
    pub fn counts(&self) -> switchyard_config::TokenCounts {
        switchyard_config::TokenCounts {
            input: self.input,
            output: self.output,
            cached_input: self.cached_input,
            cache_write_input: self.cache_write,
        }
    }

    pub fn total(&self) -> u64 {
        self.input + self.output
    }
}

impl UsageRecord {
    /// The record of a request that has just arrived: no provider yet, every count zero.
    pub fn new(request_id: &str, ts_ms: u64, key_id: &str, endpoint: Endpoint, alias: &str, stream: bool) -> Self {
        UsageRecord {
            request_id: request_id.to_string(),
            ts_ms,
            key_id: key_id.to_string(),
            endpoint,
            alias: alias.to_string(),
            provider: String::new(),
            upstream_model: String::new(),
            input_tokens: 0,
            output_tokens: 0,
            cached_tokens: 0,
            cache_write_tokens: 0,
            reasoning_tokens: 0,
            cost_usd: 0.0,
            latency_us: 0,
            ttft_us: None,
            status: 0,
            cache_hit: false,
            stream,
            usage_estimated: false,
            idempotency_key: None,
            attempts: 1,
            upstream_attempts: 0,
            guardrails: Vec::new(),
            prompt: None,
            experiment: None,
            semantic_similarity: None,
            saved_usd: 0.0,
        }
    }
}

/// One line of the usage ledger: a request that reached a provider or the cache.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct UsageRecord {
    pub request_id: String,
    /// Unix time in milliseconds when the request arrived.
    pub ts_ms: u64,
    pub key_id: String,
    pub endpoint: Endpoint,
    pub alias: String,
    pub provider: String,
    pub upstream_model: String,
    pub input_tokens: u64,
    pub output_tokens: u64,
    pub cached_tokens: u64,
    pub cost_usd: f64,
    /// Whole request as the client saw it.
    pub latency_us: u64,
    /// Streams only: time to the first content chunk.
    pub ttft_us: Option<u64>,
    /// HTTP status the client got (an error event mid-stream counts as 502).
    pub status: u16,
    pub cache_hit: bool,
    pub stream: bool,
    /// Whether the token counts are the provider's or the gateway's estimate.
    pub usage_estimated: bool,
    /// Set for work that can be delivered twice (a durable job's id): the ledger keeps
    /// one record per key. HTTP requests have none (a client's `x-request-id` may repeat).
    pub idempotency_key: Option<String>,
    /// Deliveries it took (a durable job retried after transient failures); 1 otherwise.
    pub attempts: u32,
    /// Calls sent to providers for this delivery, same-target retries and failovers
    /// included (`provider` and `upstream_model` name the target that answered last);
    /// 0 when no provider was called (a cache hit).
    #[serde(default)]
    pub upstream_attempts: u32,
    /// Guardrail actions taken, as `guardrail:ENTITY:action` (never the values).
    #[serde(default)]
    pub guardrails: Vec<String>,
    /// Of `input_tokens`, written to a prompt cache (priced apart).
    #[serde(default)]
    pub cache_write_tokens: u64,
    /// Of `output_tokens`, reasoning (thinking).
    #[serde(default)]
    pub reasoning_tokens: u64,
    /// The prompt version that served the request, as `ID@VERSION`.
    #[serde(default)]
    pub prompt: Option<String>,
    /// The experiment and the variant it was assigned, as `EXPERIMENT/VARIANT`.
    #[serde(default)]
    pub experiment: Option<String>,
    /// A semantic-cache hit: the similarity of the prompt whose answer was served.
    #[serde(default)]
    pub semantic_similarity: Option<f32>,
    /// A cache hit: what the provider call it replaced cost (USD).
    #[serde(default)]
    pub saved_usd: f64,
}
