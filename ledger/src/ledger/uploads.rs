//! Large content: streamed chunk by chunk into the object store under a key of its own
//! (`append_stream`), and the sweeper that purges chunks an unfinished upload left
//! ([`SweptChunks`]).

use super::*;

/// What [`Ledger::sweep_orphan_chunks`] purged.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SweptChunks {
    /// Objects' chunk subjects purged.
    pub objects: usize,
    /// Chunk messages purged.
    pub chunks: u64,
}

impl Ledger {
    /// Purges object chunks that no object names, once their newest chunk is older than
    /// `older_than`: what an upload that failed half-way (client gone, too large without a
    /// `Content-Length`) left in the object store's stream. Such chunks are sealed under a
    /// key that was never stored, so nobody can read them; they only take space. Chunks of
    /// an upload still in progress have no object entry yet either: `older_than` must be
    /// longer than an upload may stall (`mnemo serve` sweeps hourly, with an hour's grace);
    /// an upload that stalled longer and then finished is refused, never committed to.
    pub async fn sweep_orphan_chunks(&self, older_than: Duration) -> Result<SweptChunks> {
        let named = || async {
            let mut list = self
                .inner
                .objects
                .list()
                .await
                .map_err(|e| LedgerError::nats("list objects", e))?;
            let mut nuids = std::collections::HashSet::new();
            while let Some(info) = list.next().await {
                nuids.insert(info.map_err(|e| LedgerError::nats("list objects", e))?.nuid);
            }
            Ok::<_, LedgerError>(nuids)
        };
        let before = named().await?;
        let (stream, chunks) = self.object_chunks(">").await?;
        let cutoff = SystemTime::now()
            .checked_sub(older_than)
            .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
            .map_or(0, |d| d.as_secs() as i64);
        let mut old = Vec::new();
        for (nuid, subject, count) in chunks {
            if before.contains(&nuid) {
                continue;
            }
            // the newest chunk: an upload still going on keeps adding them
            let last = match stream.get_last_raw_message_by_subject(&subject).await {
                Ok(m) => m,
                // purged meanwhile (another sweeper, a failed upload's own clean-up)
                Err(e) if e.kind() == stream::LastRawMessageErrorKind::NoMessageFound => continue,
                Err(e) => return Err(LedgerError::nats("last chunk", e)),
            };
            if last.time.unix_timestamp() <= cutoff {
                old.push((nuid, subject, count));
            }
        }
        // An upload that finished meanwhile has its object entry now: keep its chunks.
        let after = named().await?;
        let mut swept = SweptChunks::default();
        for (nuid, subject, count) in old {
            if after.contains(&nuid) {
                continue;
            }
            stream
                .purge()
                .filter(&subject)
                .await
                .map_err(|e| LedgerError::nats("purge chunks", e))?;
            swept.objects += 1;
            swept.chunks += count;
        }
        Ok(swept)
    }

    /// The object store's stream and its chunk subjects matching `nuid` (a nuid or `>`):
    /// `(nuid, subject, chunk messages)` for each.
    pub(super) async fn object_chunks(
        &self,
        nuid: &str,
    ) -> Result<(stream::Stream, Vec<(String, String, u64)>)> {
        let stream = self
            .stream(&mnemo_core::names::object_stream(OBJECTS_BUCKET))
            .await?
            .ok_or_else(|| LedgerError::nats("object stream", "missing"))?;
        let prefix = mnemo_core::names::object_chunk_prefix(OBJECTS_BUCKET);
        let mut subjects = stream
            .info_with_subjects(format!("{prefix}{nuid}"))
            .await
            .map_err(|e| LedgerError::nats("object chunks", e))?;
        let mut out = Vec::new();
        while let Some(s) = subjects.next().await {
            let (subject, count) = s.map_err(|e| LedgerError::nats("object chunks", e))?;
            let nuid = subject.strip_prefix(&prefix).unwrap_or_default().to_owned();
            out.push((nuid, subject, count as u64));
        }
        Ok((stream, out))
    }

    /// Appends a memory whose content arrives as a stream (uploads), at most `max` bytes
    /// (and at most the configured `max_content`). Content that fits inline is appended
    /// like [`append`](Self::append); larger content is encrypted chunk by chunk into the
    /// object store as it arrives, so it is never held in memory whole. `m.content` is
    /// ignored. Too much content gives [`LedgerError::PayloadTooLarge`] and writes nothing.
    pub async fn append_stream<S>(
        &self,
        user: &UserId,
        mut m: NewMemory,
        mut content: S,
        max: usize,
    ) -> Result<Receipt>
    where
        S: futures::Stream<Item = std::io::Result<Bytes>> + Send + Unpin,
    {
        let max = max.min(self.inner.cfg.max_content);
        m.content = Bytes::new();
        m.validate(max)?;
        let mut first = bytes::BytesMut::new();
        loop {
            match content.next().await {
                Some(Ok(piece)) => {
                    first.extend_from_slice(&piece);
                    if first.len() > max {
                        return Err(LedgerError::PayloadTooLarge {
                            size: first.len(),
                            max,
                        });
                    }
                    if first.len() > self.inner.cfg.max_inline {
                        break;
                    }
                }
                Some(Err(e)) => {
                    return Err(LedgerError::InvalidInput(format!(
                        "reading the content: {e}"
                    )));
                }
                None => {
                    m.content = first.freeze();
                    return self.append(user, m).await;
                }
            }
        }
        let rest = futures::stream::iter([Ok(first.freeze())]).chain(content);
        self.append_object(user, m, rest, max).await
    }

    /// Streams content into the object store under a key of its own (which travels inside
    /// the sealed payload and is erased with it), then appends the memory committing to
    /// the content's hash and size.
    pub(super) async fn append_object<S>(
        &self,
        user: &UserId,
        m: NewMemory,
        content: S,
        max: usize,
    ) -> Result<Receipt>
    where
        S: futures::Stream<Item = std::io::Result<Bytes>> + Send + Unpin,
    {
        // An unknown user is refused before the content is stored.
        if self.head(user).await?.is_none() {
            return Err(LedgerError::UnknownUser(user.clone()));
        }
        let mut id = [0u8; 16];
        rand::thread_rng().fill_bytes(&mut id);
        let memory = MemoryId(id);
        let object_key = SecretKey::random();
        let sealing = Arc::new(Mutex::new(objects::Sealing::default()));
        let sealed = objects::seal_stream(
            &object_key,
            aad("object", user, Some(&memory)),
            content,
            max as u64,
            sealing.clone(),
        );
        let mut reader = tokio_util::io::StreamReader::new(sealed);
        let name = object_name(user, &memory);
        let put = self.inner.objects.put(name.as_str(), &mut reader).await;
        let st = std::mem::take(&mut *sealing.lock().expect("lock"));
        let hash = match (put, st.hash) {
            (Ok(info), Some(hash)) if !st.too_large => {
                // A sweeper takes the chunks of an upload that stalled past its grace; never
                // commit to an object that is not whole.
                let (_, stored) = self.object_chunks(&info.nuid).await?;
                if stored.iter().map(|c| c.2).sum::<u64>() != info.chunks as u64 {
                    let _ = self.inner.objects.delete(name.as_str()).await;
                    return Err(LedgerError::nats(
                        "put object",
                        "chunks missing after the upload (it stalled past the sweeper's grace)",
                    ));
                }
                hash
            }
            (put, _) => {
                // Whatever was stored of it is of no use.
                let _ = self.inner.objects.delete(name.as_str()).await;
                return Err(if st.too_large {
                    LedgerError::PayloadTooLarge {
                        size: st.size as usize,
                        max,
                    }
                } else {
                    match put {
                        Err(e) => LedgerError::nats("put object", e),
                        Ok(_) => LedgerError::nats("put object", "content stream ended early"),
                    }
                });
            }
        };
        let content = Content::Object {
            hash,
            size: st.size,
        };
        self.append_record(user, m, content, Some((memory, object_key)))
            .await
    }
}
