//! `mnemo-bench`: one binary, one subcommand per area. Every figure is printed next to a
//! baseline measured in the same process and run, with the ratio, and as the median of
//! several rounds: machines are noisy, ratios travel better than absolute numbers.

mod ask;
mod core_bench;
mod device_hub;
mod epoch;
mod forward;
mod http;
mod ingest;
mod measure;
mod process;
mod process_asr;
mod project;
mod report;
mod scale;
mod scale_full;
mod seals;
mod upload;
mod verify;

/// mimalloc: glibc malloc took a fifth of the projector's CPU time in profiles.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "mnemo-bench",
    about = "mnemo benchmarks (ratios against same-run baselines)"
)]
struct Cli {
    #[command(subcommand)]
    area: Area,
}

#[derive(Subcommand)]
enum Area {
    /// Custody core: sign, verify, batch verify, encode+hash, append, chain verify, proofs.
    Core(core_bench::Args),
    /// Ledger appends vs raw JetStream publishes, per layout, user count and durability.
    Ingest(ingest::Args),
    /// Projection into PostgreSQL of a pre-filled chain set, and a full rebuild.
    Project(project::Args),
    /// Runs every benchmark and writes docs/BENCHMARKS.md (with a chart).
    Report(report::Args),
    /// Many users on one server, per layout: rates, memory, restart time, projection lag.
    Scale(scale::Args),
    /// Ingest over the REST API vs direct ledger appends, same run.
    Http(http::Args),
    /// Custody bundle verification (mnemo-audit) vs raw batch verification, same threads.
    Verify(verify::Args),
    Process(process::Args),
    /// Format version 2: stored bytes per event, low-load latency (A/B with version 1),
    /// an operator's audit of every chain, one user's export verified under load.
    Seals(seals::Args),
    /// A large recording as a chunked upload over NATS vs one REST upload, same run.
    Upload(upload::Args),
    /// The edge forwarder through a link with added round trip vs loopback, same run.
    Forward(forward::Args),
    /// One anchor epoch with many changed users, fsync on, vs as many bare KV puts.
    Epoch(epoch::Args),
    /// Questions to a user's model through mnemo (consent, recording) vs the model's own
    /// query, same run.
    Ask(ask::Args),
}

fn main() -> anyhow::Result<()> {
    match Cli::parse().area {
        Area::Core(a) => core_bench::run(&a),
        Area::Ingest(a) => ingest::run(&a),
        Area::Project(a) => project::run(&a),
        Area::Verify(a) => verify::run(&a),
        Area::Http(a) => http::run(&a),
        Area::Upload(a) => upload::run(&a),
        Area::Forward(a) => forward::run(&a),
        Area::Epoch(a) => epoch::run(&a),
        Area::Ask(a) => ask::run(&a),
        Area::Scale(a) => scale::run(&a),
        Area::Report(a) => report::run(&a),
        Area::Process(a) => process::run(&a),
        Area::Seals(a) => seals::run(&a),
    }
}
