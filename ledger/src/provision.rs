//! Getting or creating JetStream streams, KV buckets and object stores, with the replica
//! count a deployment asks for. Every mnemo stream and bucket is made here (the ledger's,
//! the views', the anchor service's, the NATS accounts'), so none can be created with one
//! replica on an R3 cluster by a copy that forgot the setting. An existing one with fewer
//! or more replicas than asked is updated to the count asked for.

use async_nats::jetstream::{self, context, kv, object_store, stream};

use crate::error::{LedgerError, Result};

/// Whether a stream lookup failed because the stream does not exist (as opposed to the
/// server not answering), from JetStream's error code.
pub fn is_stream_not_found(e: &context::GetStreamError) -> bool {
    matches!(
        e.kind(),
        context::GetStreamErrorKind::JetStream(j)
            if j.error_code() == jetstream::ErrorCode::STREAM_NOT_FOUND
    )
}

/// The stream named `config.name`: created with `config` when it does not exist; when it
/// does, its replica count is brought to `config.num_replicas` (the rest of its
/// configuration is left as it is).
pub async fn ensure_stream(
    js: &jetstream::Context,
    config: stream::Config,
) -> Result<stream::Stream> {
    match js.get_stream(&config.name).await {
        Ok(mut s) => {
            ensure_replicas(js, &mut s, config.num_replicas).await?;
            Ok(s)
        }
        Err(e) if is_stream_not_found(&e) => match js.create_stream(&config).await {
            Ok(s) => Ok(s),
            // Another instance created it meanwhile.
            Err(create) => js
                .get_stream(&config.name)
                .await
                .map_err(|_| LedgerError::nats("create stream", create)),
        },
        Err(e) => Err(LedgerError::nats("get stream", e)),
    }
}

/// The KV bucket `config.bucket`, created with `config` when missing; see
/// [`ensure_stream`] for the replica count of an existing one.
pub async fn ensure_kv(js: &jetstream::Context, config: kv::Config) -> Result<kv::Store> {
    let name = mnemo_core::names::kv_stream(&config.bucket);
    match js.get_stream(&name).await {
        Ok(mut s) => ensure_replicas(js, &mut s, config.num_replicas).await?,
        Err(e) if is_stream_not_found(&e) => {
            if let Err(create) = js.create_key_value(config.clone()).await
                && js.get_stream(&name).await.is_err()
            {
                return Err(LedgerError::nats("create KV bucket", create));
            }
        }
        Err(e) => return Err(LedgerError::nats("get KV bucket", e)),
    }
    js.get_key_value(&config.bucket)
        .await
        .map_err(|e| LedgerError::nats("open KV bucket", e))
}

/// The object store `config.bucket`, created with `config` when missing; see
/// [`ensure_stream`] for the replica count of an existing one.
pub async fn ensure_object_store(
    js: &jetstream::Context,
    config: object_store::Config,
) -> Result<object_store::ObjectStore> {
    let name = mnemo_core::names::object_stream(&config.bucket);
    match js.get_stream(&name).await {
        Ok(mut s) => ensure_replicas(js, &mut s, config.num_replicas).await?,
        Err(e) if is_stream_not_found(&e) => {
            if let Err(create) = js.create_object_store(config.clone()).await
                && js.get_stream(&name).await.is_err()
            {
                return Err(LedgerError::nats("create object store", create));
            }
        }
        Err(e) => return Err(LedgerError::nats("get object store", e)),
    }
    js.get_object_store(&config.bucket)
        .await
        .map_err(|e| LedgerError::nats("open object store", e))
}

/// Brings an existing stream's replica count to `replicas` (one info request; an update
/// only when it differs).
async fn ensure_replicas(
    js: &jetstream::Context,
    s: &mut stream::Stream,
    replicas: usize,
) -> Result<()> {
    let info = s
        .info()
        .await
        .map_err(|e| LedgerError::nats("stream info", e))?;
    let want = replicas.max(1);
    if info.config.num_replicas != want {
        let mut updated = info.config.clone();
        updated.num_replicas = want;
        tracing::info!(stream = %updated.name, from = info.config.num_replicas, to = want, "setting stream replicas");
        js.update_stream(&updated)
            .await
            .map_err(|e| LedgerError::nats("update stream replicas", e))?;
    }
    Ok(())
}
