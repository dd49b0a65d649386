//! `switchyard prompts ...`: the prompt registry through a running gateway's admin API.
//! Files are JSON, or TOML when they end in `.toml` (the shape of `[[prompts]]`).

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use reqwest::Method;
use serde_json::{json, Map, Value};

#[derive(clap::Subcommand)]
pub enum Action {
    /// Every prompt with its labels.
    List,
    /// One prompt: versions, labels, audit trail.
    Get { id: String },
    /// Create a prompt from a file (`id`, `versions`, `labels`).
    Create { file: PathBuf },
    /// Add a version from a file (`messages`, `model`, `params`, `variables`, `note`).
    Version {
        id: String,
        file: PathBuf,
        /// Move these labels to the new version at once (repeatable).
        #[arg(long = "label")]
        labels: Vec<String>,
    },
    /// Point a label at a version.
    Label { id: String, label: String, version: u32 },
    /// Remove a label.
    Unlabel { id: String, label: String },
    /// Move a label back to the version it pointed at before its last move.
    Rollback {
        id: String,
        #[arg(default_value = "production")]
        label: String,
    },
    /// A unified diff of two versions.
    Diff { id: String, from: u32, to: u32 },
    /// Render a version with sample variables (`--var name=value`; the value is JSON
    /// when it parses as JSON, else a string).
    Render {
        id: String,
        #[arg(long)]
        version: Option<u32>,
        #[arg(long)]
        label: Option<String>,
        #[arg(long = "var")]
        vars: Vec<String>,
    },
}

fn read(file: &Path) -> Result<Value, String> {
    let text = std::fs::read_to_string(file).map_err(|e| format!("{}: {e}", file.display()))?;
    if file.extension().is_some_and(|e| e == "toml") {
        let v: toml::Value = toml::from_str(&text).map_err(|e| format!("{}: {e}", file.display()))?;
        serde_json::to_value(v).map_err(|e| e.to_string())
    } else {
        serde_json::from_str(&text).map_err(|e| format!("{}: {e}", file.display()))
    }
}

fn request(action: &Action) -> Result<(Method, String, Option<Value>), String> {
    Ok(match action {
        Action::List => (Method::GET, "/admin/prompts".into(), None),
        Action::Get { id } => (Method::GET, format!("/admin/prompts/{id}"), None),
        Action::Create { file } => (Method::POST, "/admin/prompts".into(), Some(read(file)?)),
        Action::Version { id, file, labels } => {
            let mut v = read(file)?;
            if let (Some(o), false) = (v.as_object_mut(), labels.is_empty()) {
                o.insert("labels".into(), json!(labels));
            }
            (Method::POST, format!("/admin/prompts/{id}/versions"), Some(v))
        }
        Action::Label { id, label, version } => {
            (Method::PUT, format!("/admin/prompts/{id}/labels/{label}"), Some(json!({"version": version})))
        }
        Action::Unlabel { id, label } => (Method::DELETE, format!("/admin/prompts/{id}/labels/{label}"), None),
        Action::Rollback { id, label } => {
            (Method::POST, format!("/admin/prompts/{id}/rollback"), Some(json!({"label": label})))
        }
        Action::Diff { id, from, to } => (Method::GET, format!("/admin/prompts/{id}/diff?from={from}&to={to}"), None),
        Action::Render { id, version, label, vars } => {
            let mut variables = Map::new();
            for s in vars {
                let (k, v) = s.split_once('=').ok_or_else(|| format!("--var `{s}`: expected name=value"))?;
                let v = serde_json::from_str(v).unwrap_or_else(|_| Value::String(v.to_string()));
                variables.insert(k.to_string(), v);
            }
            let mut body = json!({"variables": variables});
            if let Some(n) = version {
                body["version"] = json!(n);
            }
            if let Some(l) = label {
                body["label"] = json!(l);
            }
            (Method::POST, format!("/admin/prompts/{id}/render"), Some(body))
        }
    })
}

pub fn run(url: &str, admin_key: &str, actor: &str, action: Action) -> ExitCode {
    let (method, path, body) = match request(&action) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(2);
        }
    };
    crate::admin_client::call(url, admin_key, Some(actor), method, &path, body)
}

/// `switchyard experiments ...`
#[derive(clap::Subcommand)]
pub enum ExperimentAction {
    /// Every experiment and its status.
    List,
    /// Create an experiment from a file (JSON, or TOML: the shape of `[[experiments]]`).
    Create { file: PathBuf },
    /// The report: per variant, requests, errors, latency, tokens, cost and feedback with
    /// 95% intervals, and the tests against the control.
    Report { id: String },
    /// Run it (again, after a pause).
    Start { id: String },
    /// Everyone gets what they asked for until it runs again.
    Pause { id: String },
    /// Stop it for good.
    Stop { id: String },
    /// Give a variant's prompt version the label (default `production`) and stop.
    Promote {
        id: String,
        variant: String,
        #[arg(long)]
        label: Option<String>,
    },
}

pub fn run_experiments(url: &str, admin_key: &str, actor: &str, action: ExperimentAction) -> ExitCode {
    use ExperimentAction as A;
    let (method, path, body) = match &action {
        A::List => (Method::GET, "/admin/experiments".to_string(), None),
        A::Create { file } => match read(file) {
            Ok(v) => (Method::POST, "/admin/experiments".to_string(), Some(v)),
            Err(e) => {
                eprintln!("{e}");
                return ExitCode::from(2);
            }
        },
        A::Report { id } => (Method::GET, format!("/admin/experiments/{id}"), None),
        A::Start { id } => (Method::POST, format!("/admin/experiments/{id}/start"), None),
        A::Pause { id } => (Method::POST, format!("/admin/experiments/{id}/pause"), None),
        A::Stop { id } => (Method::POST, format!("/admin/experiments/{id}/stop"), None),
        A::Promote { id, variant, label } => {
            let mut b = json!({"variant": variant});
            if let Some(l) = label {
                b["label"] = json!(l);
            }
            (Method::POST, format!("/admin/experiments/{id}/promote"), Some(b))
        }
    };
    crate::admin_client::call(url, admin_key, Some(actor), method, &path, body)
}
