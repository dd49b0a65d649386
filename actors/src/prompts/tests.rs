use serde_json::json;
use switchyard_config::load_str;

use super::*;

fn config(extra: &str) -> Config {
    let text = format!(
        "[[providers]]\nname = \"m\"\nkind = \"mock\"\n[[models]]\nalias = \"fast\"\n\
         targets = [{{ provider = \"m\", model = \"gpt-4o-mini\" }}]\n{extra}"
    );
    load_str(&text, std::path::Path::new("."), &|_| None).unwrap()
}

fn prompt(id: &str) -> Prompt {
    serde_json::from_value(json!({"id": id, "versions": [{"messages": [{"role": "user", "content": "v1 {{ x }}"}]}]}))
        .unwrap()
}

fn version(text: &str) -> PromptVersion {
    serde_json::from_value(json!({"messages": [{"role": "user", "content": text}]})).unwrap()
}

#[actix_rt::test]
async fn versions_labels_and_the_audit_trail() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config("");
    let prompts = Prompts::load(Store::open(dir.path()).unwrap(), &cfg).unwrap();
    prompts.create(prompt("greet"), "ann", &cfg).await.unwrap();
    let e = prompts.create(prompt("greet"), "ann", &cfg).await.unwrap_err();
    assert_eq!(e.class().status, 409);
    let (_, n) =
        prompts.add_version("greet", version("v2 {{ x }}"), &["production".into()], "bob", &cfg).await.unwrap();
    assert_eq!(n, 2);
    let render = |sel: Selector| {
        prompts.resolve("greet", &sel).unwrap().render("greet", json!({"x": 1}).as_object().unwrap()).unwrap()[0]
            .1
            .clone()
    };
    assert_eq!(render(Selector::Default), "v2 1", "the production label");
    assert_eq!(render(Selector::Version(1)), "v1 1");
    // a rollback: the label moves back
    prompts.set_label("greet", "production", Some(1), "carol", &cfg).await.unwrap();
    assert_eq!(render(Selector::Default), "v1 1");
    assert_eq!(render(Selector::Label("production".into())), "v1 1");
    prompts.set_label("greet", "production", None, "carol", &cfg).await.unwrap();
    assert_eq!(render(Selector::Default), "v2 1", "no label: the latest");
    let e = prompts.set_label("greet", "staging", Some(7), "carol", &cfg).await.unwrap_err().to_string();
    assert!(e.contains("no version 7"), "{e}");
    assert!(prompts.resolve("greet", &Selector::Label("staging".into())).is_err());
    let entry = prompts.get("greet").unwrap();
    let trail: Vec<(&str, &str, Option<u32>)> =
        entry.audit.iter().map(|a| (a.actor.as_str(), a.action.as_str(), a.version)).collect();
    assert_eq!(
        trail,
        vec![
            ("ann", "create", Some(1)),
            ("bob", "version", Some(2)),
            ("bob", "label", Some(2)),
            ("carol", "label", Some(1)),
            ("carol", "unlabel", None)
        ]
    );
    assert_eq!(entry.audit[3].from, Some(2), "the label's version before it moved");
    // kept across a restart
    drop(prompts);
    drop(entry);
    let prompts =
        Prompts::load(Store::open_waiting(dir.path(), std::time::Duration::from_secs(5)).unwrap(), &cfg).unwrap();
    assert_eq!(prompts.get("greet").unwrap().prompt.versions.len(), 2);
}

#[actix_rt::test]
async fn config_prompts_are_read_only_and_replication_keeps_the_latest() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config("[[prompts]]\nid = \"cfg\"\nlabels = { production = 1 }\n[[prompts.versions]]\nmessages = [{ role = \"system\", content = \"hi\" }]\nmodel = \"fast\"\n");
    let prompts = Prompts::load(Store::open(dir.path()).unwrap(), &cfg).unwrap();
    assert_eq!(prompts.resolve("cfg", &Selector::Default).unwrap().spec.model.as_deref(), Some("fast"));
    let e = prompts.add_version("cfg", version("x"), &[], "ann", &cfg).await.unwrap_err();
    assert_eq!(e.class().code, "prompt_in_config");
    let e = prompts.create(prompt("cfg"), "ann", &cfg).await.unwrap_err();
    assert_eq!(e.class().status, 409);
    let bad: Prompt = serde_json::from_value(
        json!({"id": "b", "versions": [{"messages": [{"role": "user", "content": "{{ x"}], "model": "nope"}]}),
    )
    .unwrap();
    let e = prompts.create(bad, "ann", &cfg).await.unwrap_err().to_string();
    assert!(
        e.contains("versions[0].messages[0].content: template error")
            && e.contains("versions[0].model: no model alias `nope`"),
        "{e}"
    );

    let made = prompts.create(prompt("r"), "ann", &cfg).await.unwrap();
    let mut newer = made.clone();
    newer.prompt.versions.push(version("remote"));
    newer.updated_ms += 10;
    assert!(prompts.apply_remote(&serde_json::to_vec(&newer).unwrap(), &cfg).await.unwrap());
    assert_eq!(prompts.get("r").unwrap().prompt.versions.len(), 2);
    // an older change arriving late is ignored; a stored prompt whose alias a reload
    // removed is not served (and the others are)
    let pinned: Prompt = serde_json::from_value(
        json!({"id": "pinned", "versions": [{"messages": [{"role": "user", "content": "x"}], "model": "fast"}]}),
    )
    .unwrap();
    prompts.create(pinned, "ann", &cfg).await.unwrap();
    let without_fast = load_str(
        "[[providers]]\nname = \"m\"\nkind = \"mock\"\n[[models]]\nalias = \"slow\"\n\
         targets = [{ provider = \"m\", model = \"gpt-4o-mini\" }]\n",
        std::path::Path::new("."),
        &|_| None,
    )
    .unwrap();
    prompts.rebuild(&without_fast).unwrap();
    assert!(prompts.get("pinned").is_none() && prompts.get("r").is_some());
    prompts.rebuild(&cfg).unwrap();
    assert!(!prompts.apply_remote(&serde_json::to_vec(&made).unwrap(), &cfg).await.unwrap());
    assert_eq!(prompts.get("r").unwrap().prompt.versions.len(), 2);
}
