//! `switchyard usage`: a report read straight from the ledger.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::process::ExitCode;

use serde::Serialize;
use switchyard_actors::rollup::{Counters, RollupRow};
use switchyard_actors::store::Store;
use switchyard_actors::types::UsageRecord;

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum GroupBy {
    Key,
    Team,
    Model,
    Provider,
    /// The UTC day (`YYYY-MM-DD`).
    Day,
    /// The UTC hour (`YYYY-MM-DDTHH`).
    Hour,
    /// The prompt version (`ID@VERSION`; `-` for requests without one).
    Prompt,
    /// The experiment's variant (`EXPERIMENT/VARIANT`; `-` outside experiments).
    Experiment,
}

/// One group's totals (the same counters the ledger's usage totals keep).
#[derive(Default, Serialize, PartialEq, Debug)]
pub struct Row {
    pub group: String,
    #[serde(flatten)]
    pub totals: Counters,
}

/// The team of key `key_id`: `teams` maps key ids to theirs; a JWT caller's id names its
/// team (`jwt:<sub>@<team>`).
pub fn team_of(key_id: &str, teams: &HashMap<String, String>) -> Option<String> {
    teams
        .get(key_id)
        .cloned()
        .or_else(|| key_id.strip_prefix("jwt:").and_then(|c| c.rsplit_once('@')).map(|(_, t)| t.to_string()))
}

/// The group a record or an hourly row falls in (`day` from its time).
#[allow(clippy::too_many_arguments)]
fn group_of(
    by: GroupBy,
    key_id: &str,
    alias: &str,
    provider: &str,
    ts_ms: u64,
    prompt: Option<&str>,
    experiment: Option<&str>,
    teams: &HashMap<String, String>,
) -> String {
    match by {
        GroupBy::Key => key_id.to_string(),
        GroupBy::Team => team_of(key_id, teams).unwrap_or_else(|| "-".into()),
        GroupBy::Day => switchyard_config::utc_day(ts_ms),
        GroupBy::Hour => format!("{}T{:02}", switchyard_config::utc_day(ts_ms), (ts_ms / 3_600_000) % 24),
        GroupBy::Model => alias.to_string(),
        GroupBy::Prompt => prompt.unwrap_or("-").to_string(),
        GroupBy::Experiment => experiment.unwrap_or("-").to_string(),
        GroupBy::Provider => provider.to_string(),
    }
}

/// Rows grouped `by`; `teams` maps key ids to their team (keys without one group as `-`).
pub fn aggregate(records: &[UsageRecord], by: GroupBy, teams: &HashMap<String, String>) -> Vec<Row> {
    let mut rows: BTreeMap<String, Row> = BTreeMap::new();
    for r in records {
        let provider = if r.cache_hit { "cache" } else { r.provider.as_str() };
        let group =
            group_of(by, &r.key_id, &r.alias, provider, r.ts_ms, r.prompt.as_deref(), r.experiment.as_deref(), teams);
        let mut one = Counters::default();
        one.add(r);
        rows.entry(group.clone()).or_insert_with(|| Row { group, ..Row::default() }).totals.merge(&one);
    }
    rows.into_values().collect()
}

/// Whether `by` can be answered from the hourly totals (prompts and experiments are not
/// in them: those reports read the records).
pub fn from_totals(by: GroupBy) -> bool {
    !matches!(by, GroupBy::Prompt | GroupBy::Experiment)
}

/// The totals a report `by` reads since `since_ms`: an hour at a time for [`GroupBy::Hour`].
pub fn rollup_for(
    store: &Store,
    since_ms: u64,
    by: GroupBy,
) -> Result<Vec<RollupRow>, switchyard_actors::store::StoreError> {
    if by == GroupBy::Hour {
        store.usage_rollup_hourly(since_ms)
    } else {
        store.usage_rollup(since_ms)
    }
}

/// [`aggregate`] over the hourly totals (`by` as [`from_totals`] allows).
pub fn aggregate_totals(totals: &[RollupRow], by: GroupBy, teams: &HashMap<String, String>) -> Vec<Row> {
    let mut rows: BTreeMap<String, Row> = BTreeMap::new();
    for t in totals {
        let ts_ms = u64::from(t.hour) * 3_600_000;
        let group = group_of(by, &t.key_id, &t.alias, &t.provider, ts_ms, None, None, teams);
        rows.entry(group.clone()).or_insert_with(|| Row { group, ..Row::default() }).totals.merge(&t.counters);
    }
    rows.into_values().collect()
}

pub fn render(rows: &[Row], by: GroupBy) -> String {
    let head = match by {
        GroupBy::Key => "KEY",
        GroupBy::Team => "TEAM",
        GroupBy::Day => "DAY",
        GroupBy::Hour => "HOUR",
        GroupBy::Model => "MODEL",
        GroupBy::Provider => "PROVIDER",
        GroupBy::Prompt => "PROMPT",
        GroupBy::Experiment => "EXPERIMENT",
    };
    let width = rows.iter().map(|r| r.group.len()).max().unwrap_or(0).max(head.len());
    let mut out = format!(
        "{head:<width$}  {:>9}  {:>7}  {:>10}  {:>9}  {:>13}  {:>13}  {:>12}\n",
        "REQUESTS", "ERRORS", "CACHE_HITS", "CALLS", "INPUT_TOKENS", "OUTPUT_TOKENS", "COST_USD"
    );
    let mut total = Row { group: "TOTAL".into(), ..Row::default() };
    for r in rows {
        out.push_str(&line(r, width));
        total.totals.merge(&r.totals);
    }
    out.push_str(&line(&total, width));
    out
}

fn line(r: &Row, width: usize) -> String {
    format!(
        "{:<width$}  {:>9}  {:>7}  {:>10}  {:>9}  {:>13}  {:>13}  {:>12.6}\n",
        r.group,
        r.totals.requests,
        r.totals.errors,
        r.totals.cache_hits,
        r.totals.upstream_calls,
        r.totals.input_tokens,
        r.totals.output_tokens,
        r.totals.cost_usd
    )
}

/// Key id -> team, from a config file and the virtual keys in the store.
fn teams_of(config: Option<&Path>, store: &Store) -> Result<HashMap<String, String>, String> {
    let mut teams = HashMap::new();
    if let Some(path) = config {
        let cfg = switchyard_config::load(path).map_err(|e| format!("{}: {e}", path.display()))?;
        teams.extend(cfg.keys.iter().filter_map(|k| k.team.clone().map(|t| (k.id.clone(), t))));
    }
    let stored: Vec<(String, switchyard_actors::pipeline::vkeys::VirtualKey)> =
        store.virtual_keys().map_err(|e| format!("reading virtual keys: {e}"))?;
    teams.extend(stored.into_iter().filter_map(|(_, k)| k.team.map(|t| (k.id, t))));
    Ok(teams)
}

pub fn run(data_dir: &Path, config: Option<&Path>, since: Option<&str>, by: GroupBy, json: bool) -> ExitCode {
    let since_ms = match since {
        None => 0,
        Some(s) => match humantime::parse_duration(s) {
            Ok(d) => switchyard_actors::types::unix_ms().saturating_sub(d.as_millis() as u64),
            Err(e) => {
                eprintln!("--since: `{s}` is not a duration like 1h or 7d: {e}");
                return ExitCode::from(2);
            }
        },
    };
    if !data_dir.join("switchyard.sled").exists() {
        eprintln!("no ledger in {} (is it the gateway's server.data_dir?)", data_dir.display());
        return ExitCode::from(2);
    }
    let store = match Store::open(data_dir) {
        Ok(s) => s,
        Err(e) => {
            eprintln!(
                "cannot open the ledger in {}: {e}\n(a running gateway holds it; stop it first)",
                data_dir.display()
            );
            return ExitCode::from(1);
        }
    };
    let teams = match teams_of(config, &store) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(2);
        }
    };
    let rows = if from_totals(by) {
        rollup_for(&store, since_ms, by).map(|totals| aggregate_totals(&totals, by, &teams))
    } else {
        store.usage_since(since_ms).map(|records| aggregate(&records, by, &teams))
    };
    let rows = match rows {
        Ok(r) => r,
        Err(e) => {
            eprintln!("cannot read the ledger: {e}");
            return ExitCode::from(1);
        }
    };
    if json {
        println!("{}", serde_json::to_string_pretty(&rows).unwrap_or_default());
    } else {
        print!("{}", render(&rows, by));
    }
    ExitCode::SUCCESS
}

#[cfg(test)]
mod tests {
    use switchyard_actors::types::Endpoint;

    use super::*;

    fn rec(key: &str, model: &str, status: u16, hit: bool, cost: f64) -> UsageRecord {
        UsageRecord {
            provider: "p".into(),
            upstream_model: "m".into(),
            input_tokens: 10,
            output_tokens: 5,
            cost_usd: cost,
            latency_us: 1,
            status,
            cache_hit: hit,
            ..UsageRecord::new("r", 1, key, Endpoint::Chat, model, false)
        }
    }

    #[test]
    fn groups_and_totals() {
        let records =
            [rec("a", "fast", 200, false, 0.5), rec("a", "smart", 502, false, 0.0), rec("b", "fast", 200, true, 0.0)];
        let teams = HashMap::from([("a".to_string(), "search".to_string())]);
        let by_key = aggregate(&records, GroupBy::Key, &teams);
        assert_eq!(by_key.len(), 2);
        assert_eq!((by_key[0].totals.requests, by_key[0].totals.errors, by_key[0].totals.input_tokens), (2, 1, 20));
        let by_team = aggregate(&records, GroupBy::Team, &teams);
        assert_eq!(
            by_team.iter().map(|r| (r.group.as_str(), r.totals.requests)).collect::<Vec<_>>(),
            [("-", 1), ("search", 2)]
        );
        let by_day = aggregate(&records, GroupBy::Day, &teams);
        assert_eq!(by_day[0].group, "1970-01-01");
        let by_provider = aggregate(&records, GroupBy::Provider, &teams);
        assert_eq!(by_provider.iter().map(|r| r.group.as_str()).collect::<Vec<_>>(), vec!["cache", "p"]);
        let table = render(&aggregate(&records, GroupBy::Model, &teams), GroupBy::Model);
        let lines: Vec<&str> = table.lines().collect();
        assert!(lines[0].starts_with("MODEL"));
        assert!(lines[3].starts_with("TOTAL") && lines[3].contains("0.500000"), "{table}");
    }
}
