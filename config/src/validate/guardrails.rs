//! `[[guardrails]]`: what each guardrail detects and does.

use super::*;

/// `on_error`: `allow` (default) or `block`.
fn fail_closed(v: Option<&str>, field: &str, errs: &mut Errors) -> bool {
    match v {
        None | Some("allow") => false,
        Some("block") => true,
        Some(other) => {
            errs.push(field, format!("`{other}` is not allow or block"));
            false
        }
    }
}

fn service_url(url: &str, field: &str, errs: &mut Errors) {
    if !(url.starts_with("http://") || url.starts_with("https://")) || url.len() < 10 {
        errs.push(field, format!("`{url}` is not an http(s) address"));
    }
}

pub(super) fn guardrails(
    raw: Vec<RawGuardrail>,
    env: &dyn Fn(&str) -> Option<String>,
    errs: &mut Errors,
) -> (Vec<Guardrail>, HashSet<String>) {
    let mut guardrails = Vec::new();
    let mut guard_names = HashSet::new();
    for (i, g) in raw.into_iter().enumerate() {
        let f = |name: &str| format!("guardrails[{i}].{name}");
        if g.name.is_empty() || !guard_names.insert(g.name.clone()) {
            errs.push(f("name"), format!("`{}` is empty or used twice", g.name));
        }
        let (on_request, on_response) = match g.direction.as_deref() {
            None | Some("both") => (true, true),
            Some("request") => (true, false),
            Some("response") => (false, true),
            Some(other) => {
                errs.push(f("direction"), format!("`{other}` is not request, response or both"));
                (true, true)
            }
        };
        const ENTITIES: &[&str] = &["email", "phone", "card", "iban", "ssn", "ip", "secret"];
        const ACTIONS: &[&str] = &["redact", "mask", "pseudonymize", "block", "log"];
        for (entity, action) in &g.pii {
            if !ENTITIES.contains(&entity.as_str()) {
                errs.push(
                    format!("{}.{entity}", f("pii")),
                    format!("unknown entity; expected one of {}", ENTITIES.join(", ")),
                );
            }
            if !ACTIONS.contains(&action.as_str()) {
                errs.push(format!("{}.{entity}", f("pii")), format!("`{action}` is not one of {}", ACTIONS.join(", ")));
            }
        }
        let mut custom = Vec::new();
        for (j, c) in g.custom.into_iter().enumerate() {
            let cf = |name: &str| format!("guardrails[{i}].custom[{j}].{name}");
            if c.name.is_empty() || !c.name.bytes().all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'_') {
                errs.push(cf("name"), "must be upper-case letters, digits and `_`");
            }
            if let Err(e) = regex::Regex::new(&c.regex) {
                errs.push(cf("regex"), format!("not a regular expression: {e}"));
            }
            if !ACTIONS.contains(&c.action.as_str()) {
                errs.push(cf("action"), format!("`{}` is not one of {}", c.action, ACTIONS.join(", ")));
            }
            custom.push(crate::CustomPattern { name: c.name, regex: c.regex, action: c.action });
        }
        let injection_classifier = g.injection.as_ref().and_then(|i| {
            let ask_above = i.ask_above.unwrap_or(0.2);
            if !(0.0..=1.0).contains(&ask_above) {
                errs.push(f("injection.ask_above"), format!("{ask_above} is not in [0, 1]"));
            }
            i.classifier.clone().map(|c| (c, ask_above))
        });
        let injection_model = g.injection.as_ref().is_none_or(|i| i.model.unwrap_or(true));
        let injection = g.injection.map(|i| {
            let threshold = i.threshold.unwrap_or(0.5);
            if !(threshold > 0.0 && threshold <= 1.0) {
                errs.push(f("injection.threshold"), format!("{threshold} is not in (0, 1]"));
            }
            let block = blocks(i.action.as_deref(), &f("injection.action"), errs);
            (threshold, block)
        });
        let moderation = g.moderation.map(|m| {
            let threshold = m.threshold.unwrap_or(0.5);
            let in_range = |v: f64| v > 0.0 && v <= 1.0;
            if !in_range(threshold) {
                errs.push(f("moderation.threshold"), format!("{threshold} is not in (0, 1]"));
            }
            for (c, v) in m.thresholds.iter().map(|(c, v)| (c, *v)).chain(m.extra.keys().map(|c| (c, 0.5))) {
                if !crate::MODERATION_CATEGORIES.contains(&c.as_str()) {
                    errs.push(
                        format!("{}.{c}", f("moderation")),
                        format!("unknown category; expected one of {}", crate::MODERATION_CATEGORIES.join(", ")),
                    );
                }
                if !in_range(v) {
                    errs.push(format!("{}.{c}", f("moderation.thresholds")), format!("{v} is not in (0, 1]"));
                }
            }
            let block = blocks(m.action.as_deref(), &f("moderation.action"), errs);
            let upstream = match (m.upstream_provider, m.upstream_model) {
                (None, None) => None,
                (Some(p), model) => Some((p, model.unwrap_or_else(|| "omni-moderation-latest".into()))),
                (None, Some(_)) => {
                    errs.push(f("moderation.upstream_model"), "needs `upstream_provider`");
                    None
                }
            };
            crate::ModerationCfg {
                threshold,
                thresholds: m.thresholds.into_iter().collect(),
                extra: m
                    .extra
                    .into_iter()
                    .map(|(c, phrases)| {
                        let phrases = phrases
                            .into_iter()
                            .map(|p| match p {
                                crate::raw::RawPhrase::Plain(t) => (t, 0.8),
                                crate::raw::RawPhrase::Weighted { phrase, severity } => {
                                    if !(severity > 0.0 && severity <= 1.0) {
                                        errs.push(
                                            format!("{}.{c}", f("moderation.extra")),
                                            format!("severity {severity} of `{phrase}` is not in (0, 1]"),
                                        );
                                    }
                                    (phrase, severity)
                                }
                            })
                            .collect();
                        (c, phrases)
                    })
                    .collect(),
                block,
                upstream,
                model: m.model.unwrap_or(true),
                classifier: m.classifier,
            }
        });
        let webhook = g.webhook.map(|w| {
            service_url(&w.url, &f("webhook.url"), errs);
            crate::WebhookCfg {
                headers: w
                    .headers
                    .iter()
                    .map(|(k, v)| (k.clone(), interpolate(&f(&format!("webhook.headers.{k}")), v, env, errs)))
                    .collect(),
                url: w.url,
                timeout: Duration::from_millis(w.timeout_ms.unwrap_or(1000).max(1)),
                fail_closed: fail_closed(w.on_error.as_deref(), &f("webhook.on_error"), errs),
                max_answer_bytes: w.max_answer_bytes.unwrap_or(1 << 20).max(1),
            }
        });
        let presidio = g.presidio.map(|p| {
            service_url(&p.url, &f("presidio.url"), errs);
            let score = p.score.unwrap_or(0.5);
            if !(0.0..=1.0).contains(&score) {
                errs.push(f("presidio.score"), format!("{score} is not in [0, 1]"));
            }
            for (e, a) in &p.entities {
                if !["redact", "mask", "block", "log"].contains(&a.as_str()) {
                    errs.push(
                        format!("{}.{e}", f("presidio.entities")),
                        format!("`{a}` is not redact, mask, block or log"),
                    );
                }
            }
            crate::PresidioCfg {
                url: p.url.trim_end_matches('/').to_string(),
                language: p.language.unwrap_or_else(|| "en".into()),
                score,
                entities: p.entities.into_iter().collect(),
                timeout: Duration::from_millis(p.timeout_ms.unwrap_or(1000).max(1)),
                fail_closed: fail_closed(p.on_error.as_deref(), &f("presidio.on_error"), errs),
                max_answer_bytes: p.max_answer_bytes.unwrap_or(1 << 20).max(1),
            }
        });
        if g.pii.is_empty()
            && custom.is_empty()
            && injection.is_none()
            && moderation.is_none()
            && webhook.is_none()
            && presidio.is_none()
        {
            errs.push(
                f("pii"),
                "set at least one entity, custom pattern, `injection`, `moderation`, `webhook` or `presidio`",
            );
        }
        guardrails.push(crate::Guardrail {
            name: g.name,
            on_request,
            on_response,
            pii: g.pii.into_iter().collect(),
            custom,
            regions: if g.regions.is_empty() {
                vec!["US".to_string()]
            } else {
                g.regions.iter().map(|r| r.to_ascii_uppercase()).collect()
            },
            injection,
            injection_model,
            injection_classifier,
            moderation,
            webhook,
            presidio,
        });
    }
    (guardrails, guard_names)
}
