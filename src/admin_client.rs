//! The CLI's side of the admin API: one call, its JSON printed (pretty) on success, the
//! error on stderr with a failing exit code. The store belongs to the gateway process,
//! so the CLI asks it rather than opening the store.

use std::process::ExitCode;

use serde_json::Value;

/// Sends one admin request; `actor` goes in `x-switchyard-actor` (the audit trail).
pub fn call(
    url: &str,
    admin_key: &str,
    actor: Option<&str>,
    method: reqwest::Method,
    path: &str,
    payload: Option<Value>,
) -> ExitCode {
    let base = url.trim_end_matches('/');
    let rt = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("runtime: {e}");
            return ExitCode::from(1);
        }
    };
    let result = rt.block_on(async {
        let mut rb = reqwest::Client::new().request(method, format!("{base}{path}")).bearer_auth(admin_key);
        if let Some(a) = actor {
            rb = rb.header("x-switchyard-actor", a);
        }
        if let Some(b) = payload {
            rb = rb.json(&b);
        }
        let r = rb.send().await.map_err(|e| format!("{base}: {e}"))?;
        let status = r.status();
        let text = r.text().await.map_err(|e| e.to_string())?;
        Ok::<_, String>((status, text))
    });
    match result {
        Ok((status, text)) => {
            let pretty = serde_json::from_str::<Value>(&text)
                .ok()
                .and_then(|v| serde_json::to_string_pretty(&v).ok())
                .unwrap_or(text);
            if status.is_success() {
                println!("{pretty}");
                ExitCode::SUCCESS
            } else {
                eprintln!("{status}: {pretty}");
                ExitCode::from(1)
            }
        }
        Err(e) => {
            eprintln!("{e}");
            ExitCode::from(1)
        }
    }
}
