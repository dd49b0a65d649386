//! `switchyard keys ...`: virtual keys through a running gateway's admin API (the store
//! belongs to the gateway process, so the CLI asks it rather than opening the store).

use std::process::ExitCode;

use serde_json::{json, Map, Value};

#[derive(clap::Subcommand)]
pub enum Action {
    /// Create a key; prints its secret once.
    Create {
        /// Its id (in the ledger and reports).
        id: String,
        #[arg(long)]
        owner: Option<String>,
        #[arg(long)]
        team: Option<String>,
        /// Aliases it may use, comma-separated (absent: all, or its team's).
        #[arg(long, value_delimiter = ',')]
        models: Option<Vec<String>>,
        /// APIs it may use: chat, embeddings, batch (comma-separated).
        #[arg(long, value_delimiter = ',')]
        endpoints: Option<Vec<String>>,
        #[arg(long)]
        rpm: Option<u32>,
        #[arg(long)]
        tpm: Option<u64>,
        #[arg(long)]
        tpd: Option<u64>,
        #[arg(long)]
        max_concurrent: Option<u32>,
        #[arg(long)]
        budget_usd: Option<f64>,
        /// day, month or total.
        #[arg(long)]
        budget_period: Option<String>,
        #[arg(long)]
        max_tokens: Option<u64>,
        /// RFC 3339, e.g. 2027-01-31T00:00:00Z.
        #[arg(long)]
        expires_at: Option<String>,
    },
    /// List keys (never their secrets).
    List,
    /// Change fields: `--set rpm=100 --set models='["fast"]' --set budget_usd=null`.
    Update {
        id: String,
        /// `field=value`; the value is JSON when it parses as JSON, else a string; `null` removes.
        #[arg(long = "set", required = true)]
        set: Vec<String>,
    },
    /// Revoke a key: refused from the next request on.
    Revoke { id: String },
}

fn body(action: &Action) -> Result<Option<Value>, String> {
    Ok(match action {
        Action::Create {
            id,
            owner,
            team,
            models,
            endpoints,
            rpm,
            tpm,
            tpd,
            max_concurrent,
            budget_usd,
            budget_period,
            max_tokens,
            expires_at,
        } => {
            let v = json!({"id": id, "owner": owner, "team": team, "models": models, "endpoints": endpoints,
                "rpm": rpm, "tpm": tpm, "tpd": tpd, "max_concurrent": max_concurrent, "budget_usd": budget_usd,
                "budget_period": budget_period, "max_tokens": max_tokens, "expires_at": expires_at});
            // absent flags are not sent
            let obj: Map<String, Value> = v
                .as_object()
                .into_iter()
                .flatten()
                .filter(|(_, v)| !v.is_null())
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect();
            Some(Value::Object(obj))
        }
        Action::Update { set, .. } => {
            let mut obj = Map::new();
            for s in set {
                let (k, v) = s.split_once('=').ok_or_else(|| format!("--set `{s}`: expected field=value"))?;
                let v = serde_json::from_str(v).unwrap_or_else(|_| Value::String(v.to_string()));
                obj.insert(k.to_string(), v);
            }
            Some(Value::Object(obj))
        }
        Action::List | Action::Revoke { .. } => None,
    })
}

pub fn run(url: &str, admin_key: &str, action: Action) -> ExitCode {
    let payload = match body(&action) {
        Ok(b) => b,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(2);
        }
    };
    let (method, path) = match &action {
        Action::Create { .. } => (reqwest::Method::POST, "/admin/keys".to_string()),
        Action::List => (reqwest::Method::GET, "/admin/keys".to_string()),
        Action::Update { id, .. } => (reqwest::Method::PATCH, format!("/admin/keys/{id}")),
        Action::Revoke { id } => (reqwest::Method::DELETE, format!("/admin/keys/{id}")),
    };
    crate::admin_client::call(url, admin_key, None, method, &path, payload)
}
