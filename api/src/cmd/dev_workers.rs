//! `mnemo dev`'s processing demo: two processors and their workers, supervised.
//!
//! - `asr`: the Python speech-to-text worker (`workers/asr`, PocketSphinx), on audio;
//! - `trainer`: `mnemo-trainer`, a search model per user over texts and transcripts.
//!
//! Each is registered on the first run; its signing seed, token and NATS credentials are
//! kept in `<dir>/processors/<name>.json` (mode 0600). The demo user grants both. The
//! workers run as processes restarted whenever they exit (`mnemo_devstack::Supervised`),
//! their logs and pid files in `<dir>/workers/`.

use anyhow::Context;
use mnemo_api::auth::Auth;
use mnemo_api::http::processing::PROCESSOR_TOKEN_TTL;
use mnemo_core::{GrantConditions, ProcessorId, UserId};
use mnemo_devstack::Supervised;
use std::path::{Path, PathBuf};
use std::process::Command;

/// One demo processor.
struct DemoProcessor {
    name: &'static str,
    consumes: &'static [&'static str],
    produces: &'static [&'static str],
}

const ASR: DemoProcessor = DemoProcessor {
    name: "asr",
    consumes: &["audio"],
    produces: &["transcript"],
};
const TRAINER: DemoProcessor = DemoProcessor {
    name: "trainer",
    consumes: &["note", "conversation", "web", "transcript"],
    produces: &[],
};

/// What a worker of a demo processor needs, kept between runs.
#[derive(serde::Serialize, serde::Deserialize)]
struct Secrets {
    seed: String,
    token: String,
    creds: String,
}

/// Registers the demo processors (first run) and grants them the demo user's memories.
async fn ensure(
    running: &super::serve::Running,
    auth: &Auth,
    dir: &Path,
    user: &UserId,
    p: &DemoProcessor,
) -> anyhow::Result<Secrets> {
    let path = dir.join("processors").join(format!("{}.json", p.name));
    if let Ok(b) = std::fs::read(&path) {
        // Fresh NATS credentials each run: those of an earlier version may be refused.
        let mut kept: Secrets = serde_json::from_slice(&b)?;
        kept.creds = running
            .accounts
            .as_ref()
            .context("operator mode")?
            .processor_creds(p.name, PROCESSOR_TOKEN_TTL as i64)?
            .context("processor credentials")?;
        mnemo_accounts::write_private(&path, &serde_json::to_vec(&kept)?)?;
        return Ok(kept);
    }
    let name = ProcessorId::new(p.name)?;
    let reg = &running.processing.registry;
    if reg.get(&name).await?.is_some() {
        anyhow::bail!(
            "processor {name} is registered but {} is gone: delete the dev directory to start over",
            path.display()
        );
    }
    let (_, key) = reg
        .register(
            name.clone(),
            "1".into(),
            p.consumes.iter().map(|s| s.to_string()).collect(),
            p.produces.iter().map(|s| s.to_string()).collect(),
        )
        .await?;
    let ttl = PROCESSOR_TOKEN_TTL;
    let accounts = running.accounts.as_ref().context("operator mode")?;
    mnemo_api::sync_processor_accounts(accounts, reg).await?;
    let creds = accounts
        .processor_creds(name.as_str(), ttl as i64)?
        .context("processor credentials")?;
    let secrets = Secrets {
        seed: hex::encode(key.to_bytes()),
        token: auth.issue_processor(&name, ttl),
        creds,
    };
    std::fs::create_dir_all(path.parent().expect("has a parent"))?;
    mnemo_accounts::write_private(&path, &serde_json::to_vec(&secrets)?)?;
    // The demo user lets it process the kinds it takes.
    let conditions = GrantConditions {
        kinds: p.consumes.iter().map(|s| s.to_string()).collect(),
        ..Default::default()
    };
    running
        .processing
        .grant(user, &name, None, conditions, None)
        .await?;
    Ok(secrets)
}

/// `mnemo-trainer`: `$MNEMO_TRAINER_BIN`, else beside this binary.
fn trainer_bin() -> anyhow::Result<PathBuf> {
    if let Some(p) = std::env::var_os("MNEMO_TRAINER_BIN") {
        return Ok(p.into());
    }
    let me = std::env::current_exe()?;
    let p = me.with_file_name("mnemo-trainer");
    anyhow::ensure!(
        p.exists(),
        "{} is missing: build it (cargo build -p mnemo-worker --bin mnemo-trainer) or set MNEMO_TRAINER_BIN",
        p.display()
    );
    Ok(p)
}

fn worker_env(c: &mut Command, nats_url: &str, name: &str, s: &Secrets, creds: &Path) {
    c.env("MNEMO_NATS_URL", nats_url)
        .env("MNEMO_NATS_CREDS", creds)
        .env("MNEMO_PROCESSOR", name)
        .env("MNEMO_PROCESSOR_VERSION", "1")
        .env("MNEMO_PROCESSOR_TOKEN", &s.token)
        .env("MNEMO_PROCESSOR_SEED", &s.seed);
}

/// Registers and grants the demo processors and starts their workers.
pub(super) async fn start(
    running: &super::serve::Running,
    auth: &Auth,
    dir: &Path,
    user: &UserId,
    nats_url: &str,
) -> anyhow::Result<Vec<Supervised>> {
    let workers = dir.join("workers");
    let mut out = Vec::new();
    for p in [&ASR, &TRAINER] {
        let s = ensure(running, auth, dir, user, p).await?;
        let creds = dir.join("processors").join(format!("{}.creds", p.name));
        mnemo_accounts::write_private(&creds, s.creds.as_bytes())?;
        let (url, name) = (nats_url.to_owned(), p.name);
        let make: Box<dyn Fn() -> Command + Send> = if p.name == ASR.name {
            let (py, src) = (mnemo_devstack::python(), mnemo_devstack::asr_dir());
            Box::new(move || {
                let mut c = Command::new(&py);
                c.args(["-m", "mnemo_asr"]).env("PYTHONPATH", &src);
                worker_env(&mut c, &url, name, &s, &creds);
                c
            })
        } else {
            let (bin, state) = (trainer_bin()?, dir.join("trainer-state"));
            Box::new(move || {
                let mut c = Command::new(&bin);
                c.env("MNEMO_TRAINER_STATE", &state);
                worker_env(&mut c, &url, name, &s, &creds);
                c
            })
        };
        out.push(Supervised::start(p.name, &workers, make)?);
    }
    Ok(out)
}

/// The demo's speech clip (testdata/audio/README.md): LibriVox, public domain.
pub(super) const DEMO_AUDIO: &[u8] =
    include_bytes!("../../../testdata/audio/sense-and-sensibility-0880.wav");

/// Waits (up to `within`) for the demo audio's transcript and a model holding it, and
/// describes the lineage and a query's answer, a line each.
pub(super) async fn summary(
    running: &super::serve::Running,
    user: &UserId,
    audio: &mnemo_core::MemoryId,
    within: std::time::Duration,
) -> anyhow::Result<Vec<String>> {
    let p = &running.processing;
    let t = std::time::Instant::now();
    let (transcript, model) = loop {
        let outputs = p.lineage(user, audio).await?.outputs;
        if let Some(tr) = outputs.first() {
            let model = p
                .models
                .of_user(user)
                .await?
                .into_iter()
                .rev()
                .find(|m| m.stale.is_none() && m.has(tr));
            if let Some(m) = model {
                break (*tr, m);
            }
        }
        if t.elapsed() > within {
            return Ok(vec![format!(
                "processing   no transcript and model yet after {within:?}: see the worker logs"
            )]);
        }
        tokio::time::sleep(std::time::Duration::from_millis(250)).await;
    };
    let opened = running
        .ledger
        .open_for_processing(user, &transcript, None)
        .await?;
    let text = String::from_utf8_lossy(&opened.opened.content).into_owned();
    let (_, hits) = p.query(user, Some(&model.id), "young man", 3).await?;
    let mut out = vec![
        format!(
            "lineage      audio {audio} -> transcript {transcript} {text:?} (asr, seq {})",
            opened.opened.seq
        ),
        format!(
            "model        {} (trainer): a search index over {} memories, training-set root {}",
            model.id,
            model.set_count,
            hex::encode(&model.set_root.0[..8])
        ),
    ];
    match hits.first() {
        Some(h) => out.push(format!(
            "query        \"young man\" -> memory {} (score {:.2}; its proof: /v1/models/{}/training-set/{})",
            h.memory, h.score, model.id, h.memory
        )),
        None => out.push("query        \"young man\" -> nothing (the recogniser missed it)".into()),
    }
    Ok(out)
}
