//! `switchyard`: the gateway binary. Subcommands: `serve`, `check-config`,
//! `mock-upstream`, `usage`, `keys`, `prompts`, `experiments`, `guardrails`.

mod admin_client;
mod app;
mod guardrails_cli;
mod ingress;
mod keys;
mod logs_cli;
mod mock_upstream;
mod prompts_cli;
mod telemetry;
mod usage;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// mimalloc: the gateway allocates many small short-lived buffers per request (JSON,
/// headers, messages); glibc malloc was 15% of its CPU under load (see BENCHMARKS.md).
/// `--features system-allocator` builds with glibc's instead, for heap profilers
/// (heaptrack) that see only malloc.
#[cfg(not(feature = "system-allocator"))]
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(name = "switchyard", version, about = "An AI gateway on an actor engine")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the gateway.
    Serve {
        /// Config file.
        #[arg(long, short, default_value = "config/switchyard.toml", env = "SWITCHYARD_CONFIG")]
        config: PathBuf,
    },
    /// Validate a config file; prints every error with its field and exits non-zero.
    CheckConfig {
        /// Config file.
        file: PathBuf,
    },
    /// Run a standalone OpenAI-compatible mock provider (tests, demos, benchmarks).
    MockUpstream {
        /// Listen address (port 0 picks a free one; the bound address is printed).
        #[arg(long, default_value = "127.0.0.1:9090")]
        addr: String,
        /// Latency added to every request, in milliseconds.
        #[arg(long, default_value_t = 0)]
        latency_ms: u64,
        /// Delay between streamed chunks, in milliseconds.
        #[arg(long, default_value_t = 0)]
        chunk_delay_ms: u64,
        /// Worker threads.
        #[arg(long)]
        workers: Option<usize>,
    },
    /// Report from the usage ledger (stop the gateway first: the store is single-process).
    Usage {
        /// The gateway's `server.data_dir`.
        #[arg(long, default_value = "./data")]
        data_dir: PathBuf,
        /// Only records newer than this (e.g. `1h`, `7d`, `30m`).
        #[arg(long)]
        since: Option<String>,
        /// Group rows by key, team, model, provider or day.
        #[arg(long, value_enum, default_value_t = usage::GroupBy::Key)]
        by: usage::GroupBy,
        /// The gateway's config, for the teams of its keys (`--by team`).
        #[arg(long)]
        config: Option<PathBuf>,
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Manage virtual keys through a running gateway's admin API.
    Keys {
        /// The gateway's address.
        #[arg(long, default_value = "http://127.0.0.1:8080", env = "SWITCHYARD_URL")]
        url: String,
        /// The admin credential (`server.admin_key`).
        #[arg(long, env = "SWITCHYARD_ADMIN_KEY")]
        admin_key: String,
        #[command(subcommand)]
        action: Box<keys::Action>,
    },
    /// Manage prompts (versions, labels, diffs, rendering) through a running gateway's
    /// admin API.
    Prompts {
        /// The gateway's address.
        #[arg(long, default_value = "http://127.0.0.1:8080", env = "SWITCHYARD_URL")]
        url: String,
        /// The admin credential (`server.admin_key`).
        #[arg(long, env = "SWITCHYARD_ADMIN_KEY")]
        admin_key: String,
        /// Who makes the change, for the audit trail.
        #[arg(long, env = "USER", default_value = "cli")]
        actor: String,
        #[command(subcommand)]
        action: Box<prompts_cli::Action>,
    },
    /// Manage experiments (status, reports, promotion) through a running gateway's admin API.
    Experiments {
        /// The gateway's address.
        #[arg(long, default_value = "http://127.0.0.1:8080", env = "SWITCHYARD_URL")]
        url: String,
        /// The admin credential (`server.admin_key`).
        #[arg(long, env = "SWITCHYARD_ADMIN_KEY")]
        admin_key: String,
        /// Who makes the change, for the audit trail.
        #[arg(long, env = "USER", default_value = "cli")]
        actor: String,
        #[command(subcommand)]
        action: Box<prompts_cli::ExperimentAction>,
    },
    /// Train the injection and moderation classifiers, or measure them on a labelled file.
    Guardrails {
        #[command(subcommand)]
        action: Box<guardrails_cli::Action>,
    },
    /// Request logs on JetStream (the `[nats]` of the config file).
    Logs {
        #[arg(long, short, default_value = "config/switchyard.toml", env = "SWITCHYARD_CONFIG")]
        config: PathBuf,
        #[command(subcommand)]
        action: logs_cli::Action,
    },
}

/// mimalloc's options for a long-running server: arenas committed as they are used, not
/// up front. Measured (BENCHMARKS.md): 41 MiB resident at 2,000 req/s instead of 92-96,
/// and a 138 MiB peak at the load benchmark's maximum instead of 205, at the same CPU per
/// request (giving freed memory back at once as well saved 5-11 MiB more and cost CPU at
/// the maximum, so it is left to the operator: `MIMALLOC_PURGE_DELAY=0`). mimalloc reads its
/// options from the environment when it starts, which is before `main`; so `serve`
/// starts itself again, once, with them set (an operator's own `MIMALLOC_*` win).
/// (Setting them through `mi_option_set` would need `unsafe`, which this project forbids.)
fn with_allocator_options() {
    const OPTIONS: [(&str, &str); 1] = [("MIMALLOC_ARENA_EAGER_COMMIT", "0")];
    if OPTIONS.iter().all(|(k, _)| std::env::var_os(k).is_some()) {
        return;
    }
    let Ok(exe) = std::env::current_exe() else { return };
    let mut cmd = std::process::Command::new(exe);
    cmd.args(std::env::args_os().skip(1));
    for (k, v) in OPTIONS {
        if std::env::var_os(k).is_none() {
            cmd.env(k, v);
        }
    }
    // only returns if the exec failed
    let err = std::os::unix::process::CommandExt::exec(&mut cmd);
    eprintln!("switchyard: going on without the allocator's options (could not start again: {err})");
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Serve { config } => {
            with_allocator_options();
            app::serve(&config)
        }
        Command::CheckConfig { file } => match switchyard_config::load(&file) {
            Ok(cfg) => {
                println!(
                    "{}: ok ({} providers, {} models, {} keys)",
                    file.display(),
                    cfg.providers.len(),
                    cfg.models.len(),
                    cfg.keys.len()
                );
                ExitCode::SUCCESS
            }
            Err(errs) => {
                eprintln!("{}: {} error(s)", file.display(), errs.0.len());
                for e in &errs.0 {
                    eprintln!("  {e}");
                }
                ExitCode::from(2)
            }
        },
        Command::MockUpstream { addr, latency_ms, chunk_delay_ms, workers } => {
            mock_upstream::run(&addr, latency_ms, chunk_delay_ms, workers)
        }
        Command::Usage { data_dir, since, by, config, json } => {
            usage::run(&data_dir, config.as_deref(), since.as_deref(), by, json)
        }
        Command::Keys { url, admin_key, action } => keys::run(&url, &admin_key, *action),
        Command::Prompts { url, admin_key, actor, action } => prompts_cli::run(&url, &admin_key, &actor, *action),
        Command::Experiments { url, admin_key, actor, action } => {
            prompts_cli::run_experiments(&url, &admin_key, &actor, *action)
        }
        Command::Guardrails { action } => guardrails_cli::run(*action),
        Command::Logs { config, action } => logs_cli::run(&config, action),
    }
}
