//! `[[prompts]]` and `[[prompt_policies]]`.

use std::collections::HashSet;

use super::Errors;
use crate::{check_experiment, check_prompt, check_template, Experiment, Prompt, PromptPolicy};

pub(super) fn prompts(
    raw: Vec<Prompt>,
    aliases: &HashSet<String>,
    teams: &HashSet<String>,
    errs: &mut Errors,
) -> Vec<Prompt> {
    let mut seen = HashSet::new();
    for (i, p) in raw.iter().enumerate() {
        if let Some(t) = p.team.as_ref().filter(|t| !teams.contains(*t)) {
            errs.push(format!("prompts[{i}].team"), format!("no team `{t}` in [[teams]]"));
        }
        for (field, message) in check_prompt(p, &|a| aliases.contains(a)) {
            errs.push(format!("prompts[{i}].{field}"), message);
        }
        if !seen.insert(p.id.clone()) {
            errs.push(format!("prompts[{i}].id"), format!("`{}` is defined twice", p.id));
        }
    }
    raw
}

pub(super) fn policies(
    raw: Vec<PromptPolicy>,
    aliases: &HashSet<String>,
    keys: &HashSet<String>,
    teams: &HashSet<String>,
    errs: &mut Errors,
) -> Vec<PromptPolicy> {
    let mut seen = HashSet::new();
    for (i, p) in raw.iter().enumerate() {
        let f = |name: &str| format!("prompt_policies[{i}].{name}");
        if p.name.is_empty() || !seen.insert(p.name.clone()) {
            errs.push(f("name"), "must be set and unique");
        }
        for (list, known, what, field) in [
            (&p.keys, keys, "key", "keys"),
            (&p.teams, teams, "team", "teams"),
            (&p.models, aliases, "model alias", "models"),
        ] {
            for (j, v) in list.iter().enumerate() {
                if !known.contains(v) {
                    errs.push(format!("{}[{j}]", f(field)), format!("no {what} `{v}`"));
                }
            }
        }
        if p.prepend.is_none() && p.append.is_none() {
            errs.push(f("prepend"), "a policy needs `prepend` or `append` text");
        }
        for (name, text) in [("prepend", &p.prepend), ("append", &p.append)] {
            if let Some(Err(e)) = text.as_deref().map(check_template) {
                errs.push(f(name), e);
            }
        }
    }
    raw
}

pub(super) fn experiments(
    raw: Vec<Experiment>,
    prompts: &[Prompt],
    aliases: &HashSet<String>,
    errs: &mut Errors,
) -> Vec<Experiment> {
    let mut seen = HashSet::new();
    for (i, e) in raw.iter().enumerate() {
        // a prompt made through the admin API is not known here: name config prompts
        let versions = |id: &str| prompts.iter().find(|p| p.id == id).map(|p| p.versions.len() as u32);
        for (field, message) in check_experiment(e, &versions, &|a| aliases.contains(a)) {
            errs.push(format!("experiments[{i}].{field}"), message);
        }
        if !seen.insert(e.id.clone()) {
            errs.push(format!("experiments[{i}].id"), format!("`{}` is defined twice", e.id));
        }
    }
    raw
}
