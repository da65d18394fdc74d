//! `mnemo projections run | rebuild | lag`: the projector on its own (with health and
//! metrics), a rebuild beside the live view, and the view's lag.

use super::{Config, views};
use anyhow::Context;
use clap::Subcommand;
use mnemo_api::health;

#[derive(Subcommand)]
pub(crate) enum Projections {
    /// Runs the projector until Ctrl-C, with `/healthz`, `/readyz` (lag) and `/metrics`.
    Run {
        /// Address of the health and metrics endpoints.
        #[arg(long, env = "MNEMO_METRICS_LISTEN", default_value = "127.0.0.1:9464")]
        listen: std::net::SocketAddr,
        /// `/readyz` answers 503 while the view is more events behind than this.
        #[arg(long, env = "MNEMO_READY_MAX_LAG", default_value_t = 1000)]
        max_lag: u64,
    },
    /// Replays the chains into fresh tables beside the live view, then switches over.
    Rebuild {
        /// The view to rebuild.
        #[arg(long, default_value = "pg")]
        view: String,
    },
    /// Prints how many events the view is behind the chains.
    Lag {
        /// The view.
        #[arg(long, default_value = "pg")]
        view: String,
    },
}

impl Projections {
    pub(crate) async fn run(self, c: &Config) -> anyhow::Result<()> {
        let client = c.connect().await?;
        let js = async_nats::jetstream::new(client.clone());
        let url = c.database_url()?;
        let views = views(url).await?;
        let pool = views.pool().clone();
        match self {
            Projections::Lag { view } => {
                println!("{}", mnemo_projections::lag(&js, &pool, &view).await?);
            }
            Projections::Run { listen, max_lag } => {
                mnemo_projections::migrate(&pool).await?;
                let ledger = c.ledger_reader(client).await?;
                let (tx, rx) = tokio::sync::watch::channel(false);
                let projector = mnemo_projections::Projector::new(
                    js.clone(),
                    ledger,
                    pool.clone(),
                    mnemo_projections::ProjectorConfig {
                        replicas: c.replicas.max(1),
                        ..Default::default()
                    },
                );
                let h = health::Health {
                    js,
                    views,
                    view: "pg".into(),
                    stats: projector.stats(),
                    max_lag,
                    api: None,
                    anchor: None,
                    tasks: None,
                    role: health::Role::Views,
                };
                let listener = mnemo_api::http::bind(listen)
                    .with_context(|| format!("listening on {listen}"))?;
                tracing::info!(%listen, "health and metrics endpoints up");
                println!("listening on {}", listener.local_addr()?);
                let server =
                    tokio::spawn(async move { axum::serve(listener, health::router(h)).await });
                let task = tokio::spawn(projector.run(rx));
                tokio::signal::ctrl_c().await?;
                server.abort();
                tx.send(true)?;
                task.await??;
            }
            Projections::Rebuild { view } => {
                let ledger = c.ledger_reader(client).await?;
                let bar = indicatif::ProgressBar::new(0);
                bar.set_style(
                    indicatif::ProgressStyle::with_template(
                        "rebuilding {msg} [{bar:40}] {pos}/{len} events ({per_sec}, eta {eta})",
                    )
                    .context("progress template")?,
                );
                bar.set_message(view.clone());
                let report = mnemo_projections::rebuild(&js, &ledger, url, &view, |done, total| {
                    bar.set_length(total);
                    bar.set_position(done);
                })
                .await?;
                bar.finish();
                println!(
                    "rebuilt view {view}: {} events in {:.1} s, switched over",
                    report.events, report.seconds
                );
            }
        }
        Ok(())
    }
}
