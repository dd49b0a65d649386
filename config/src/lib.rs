//! Switchyard's typed configuration: raw serde types ([`raw`]) are read from TOML,
//! then [`validate`] turns them into a checked [`Config`] whose every error names the
//! field it is about.

mod access;
mod guardrails;
mod prompts;
mod providers;
pub mod raw;
mod routes;
mod semantic;
mod server;
mod telemetry;
mod validate;

use std::fmt;
use std::path::Path;
use std::sync::Arc;

use sha2::{Digest, Sha256};

pub use access::*;
pub use guardrails::*;
pub use prompts::*;
pub use providers::*;
pub use routes::{Route, RouteInput};
pub use semantic::*;
pub use server::*;
pub use telemetry::{OtlpProtocol, Telemetry};
pub use validate::validate;

/// A checked configuration. Cheap to share: hold it in an `Arc`.
#[derive(Debug, Clone)]
pub struct Config {
    pub server: Server,
    pub nats: Option<Nats>,
    /// OpenTelemetry traces; `None`: off.
    pub telemetry: Option<Telemetry>,
    pub providers: Vec<Provider>,
    /// Aliases in file order.
    pub models: Vec<Model>,
    pub keys: Vec<Key>,
    pub cache: Cache,
    pub pricing: Pricing,
    /// `[[routes]]` in file order; the first that matches picks the alias.
    pub routes: Vec<Route>,
    pub teams: Vec<Team>,
    pub jwt: Option<Jwt>,
    pub guardrails: Vec<Guardrail>,
    pub prompts: Vec<Prompt>,
    pub prompt_policies: Vec<PromptPolicy>,
    pub experiments: Vec<Experiment>,
}

impl Config {
    pub fn model(&self, alias: &str) -> Option<&Model> {
        self.models.iter().find(|m| m.alias == alias)
    }

    pub fn team(&self, id: &str) -> Option<&Team> {
        self.teams.iter().find(|t| t.id == id)
    }

    pub fn prompt(&self, id: &str) -> Option<&Prompt> {
        self.prompts.iter().find(|p| p.id == id)
    }

    pub fn provider(&self, name: &str) -> Option<&Provider> {
        self.providers.iter().find(|p| p.name == name)
    }
}

/// One problem in a config file, with the field it is about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// e.g. `providers[1].base_url`
    pub field: String,
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.field, self.message)
    }
}

/// Every problem found in a file, so one run of `check-config` shows them all.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct ConfigErrors(pub Vec<ConfigError>);

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

impl ConfigErrors {
    fn one(field: impl Into<String>, message: impl Into<String>) -> Self {
        ConfigErrors(vec![ConfigError { field: field.into(), message: message.into() }])
    }
}

/// Hex SHA-256 of a credential; keys are only ever compared in this form.
pub fn hash_key(secret: &str) -> String {
    hex::encode(Sha256::digest(secret.as_bytes()))
}

/// Reads, parses and validates a config file (and the pricing file it names).
pub fn load(path: &Path) -> Result<Arc<Config>, ConfigErrors> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| ConfigErrors::one("<file>", format!("cannot read {}: {e}", path.display())))?;
    let base = path.parent().unwrap_or(Path::new("."));
    load_str(&text, base, &|name| std::env::var(name).ok()).map(Arc::new)
}

/// Parses and validates config text; `base` resolves relative paths, `env` looks up `${VAR}`.
pub fn load_str(text: &str, base: &Path, env: &dyn Fn(&str) -> Option<String>) -> Result<Config, ConfigErrors> {
    let raw: raw::RawConfig = toml::from_str(text).map_err(|e| toml_error(&e, text))?;
    let pricing = match &raw.pricing_file {
        Some(p) => Some(read_pricing(&base.join(p), "pricing_file")?),
        None => {
            let default = base.join("pricing.toml");
            if default.exists() {
                Some(read_pricing(&default, "pricing_file")?)
            } else {
                None
            }
        }
    };
    let mut cfg = validate(raw, pricing.unwrap_or_default(), env)?;
    if let Some(f) = cfg.jwt.as_mut().and_then(|j| j.jwks_file.as_mut()) {
        if f.is_relative() {
            *f = base.join(&*f);
        }
    }
    Ok(cfg)
}

fn read_pricing(path: &Path, field: &str) -> Result<raw::RawPricing, ConfigErrors> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| ConfigErrors::one(field, format!("cannot read {}: {e}", path.display())))?;
    toml::from_str(&text).map_err(|e| {
        let inner = toml_error(&e, &text);
        ConfigErrors(
            inner
                .0
                .into_iter()
                .map(|c| ConfigError { field: format!("{} ({})", c.field, path.display()), message: c.message })
                .collect(),
        )
    })
}

/// A parse error names the line and quotes it, so the key is always visible
/// (toml's own message names unknown fields but not the key of a type error).
fn toml_error(e: &toml::de::Error, text: &str) -> ConfigErrors {
    let message = e.message().trim().to_string();
    let field = match e.span() {
        Some(span) => {
            let start = span.start.min(text.len());
            let line_no = text[..start].matches('\n').count() + 1;
            let line = text.lines().nth(line_no - 1).unwrap_or("").trim();
            format!("line {line_no} `{line}`")
        }
        None => "<toml>".to_string(),
    };
    ConfigErrors::one(field, message)
}

#[cfg(test)]
mod tests;
