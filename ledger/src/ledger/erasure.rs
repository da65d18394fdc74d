//! Erasure by crypto-shredding: the `memory_erased` event, then the keys are destroyed.

use super::*;

impl Ledger {
    /// Crypto-shredding. Appends a `memory_erased` event, then destroys the keys: for one
    /// memory, its generation key (after saving its siblings' keys); for `All`, every
    /// generation key that covers memories before the event. The ciphertext stays in the
    /// chain, which keeps verifying; nobody, mnemo included, can decrypt it again.
    ///
    /// The event comes first so that no concurrent append can still use a generation key
    /// being destroyed (see `keystore`). A crash between the event and the destruction
    /// leaves the memory readable until `erase` is called again, which then completes the
    /// destruction (and appends a second, harmless erasure event).
    pub async fn erase(&self, user: &UserId, target: ErasureTarget) -> Result<Receipt> {
        match &target {
            ErasureTarget::Memory(m) => {
                let m = &m.clone();
                let stored = self.memory_event(user, m).await?;
                let (generation, _) = parse_sealed(&stored.sealed)?;
                if matches!(
                    self.inner.keys.memory_key(user, generation, m).await?,
                    MemoryKey::Erased
                ) {
                    return Err(LedgerError::Erased(*m));
                }
                let receipt = self.write_erasure(user, &target).await?;
                self.shred_one(user, m, receipt.seq).await?;
                Ok(receipt)
            }
            ErasureTarget::All => {
                let receipt = self.write_erasure(user, &target).await?;
                let n = self.inner.keys.shred_user(user, receipt.seq.0).await?;
                tracing::info!(%user, keys = n, "erased every memory of a user");
                Ok(receipt)
            }
        }
    }

    /// Destroys the key of memory `m`, erased by the event at `erasure`: its generation key
    /// goes, after its siblings' keys (the generation's other memories before the erasure)
    /// are saved in a rewrap table. Already erased: nothing to do.
    pub(super) async fn shred_one(&self, user: &UserId, m: &MemoryId, erasure: Seq) -> Result<()> {
        let stored = self.memory_event(user, m).await?;
        let (generation, _) = parse_sealed(&stored.sealed)?;
        let start = self
            .inner
            .keys
            .generation_start(user, generation)
            .await?
            .unwrap_or(stored.event.seq.0);
        let mut survivors = Vec::new();
        let mut r = self.read(user, Seq(start)).await?;
        while let Some(e) = r.next().await? {
            if e.event.seq >= erasure {
                break;
            }
            if let Some(memory) = e.event.body.payload_id()
                && memory != *m
                && parse_sealed(&e.sealed).is_ok_and(|(g, _)| g == generation)
            {
                survivors.push(memory);
            }
        }
        self.inner
            .keys
            .shred_memory(user, generation, m, &survivors)
            .await?;
        let _ = self.inner.objects.delete(object_name(user, m)).await;
        Ok(())
    }

    /// Appends the erasure event; the generation key in use is dropped after it.
    pub(super) async fn write_erasure(
        &self,
        user: &UserId,
        target: &ErasureTarget,
    ) -> Result<Receipt> {
        let body = EventBody::MemoryErased {
            target: target.clone(),
        };
        self.write(user, body, None, None, true, None).await
    }
}

impl Ledger {
    /// Applies again every erasure `user`'s chain records (in chain order), destroying any
    /// key that came back: after a key bucket was restored from a backup older than an
    /// erasure, the chain (the record of erasures) wins. Keys already destroyed are left
    /// alone; returns how many keys were destroyed now (0 when nothing came back).
    pub async fn reapply_erasures(&self, user: &UserId) -> Result<usize> {
        let mut erasures: Vec<(Seq, Option<Vec<MemoryId>>)> = Vec::new();
        let mut r = self.read(user, Seq::FIRST).await?;
        while let Some(e) = r.next().await? {
            match &e.event.body {
                EventBody::MemoryErased {
                    target: ErasureTarget::Memory(m),
                } => erasures.push((e.event.seq, Some(vec![*m]))),
                EventBody::MemoryErased {
                    target: ErasureTarget::All,
                } => erasures.push((e.event.seq, None)),
                EventBody::LineageErased {
                    memory, closure, ..
                } => {
                    let mut all = vec![*memory];
                    all.extend(closure.iter().copied());
                    erasures.push((e.event.seq, Some(all)));
                }
                _ => {}
            }
        }
        drop(r);
        let mut destroyed = 0;
        for (seq, target) in erasures {
            match target {
                None => destroyed += self.inner.keys.shred_user(user, seq.0).await?,
                Some(memories) => {
                    for m in memories {
                        let stored = self.memory_event(user, &m).await?;
                        let (generation, _) = parse_sealed(&stored.sealed)?;
                        if !matches!(
                            self.inner.keys.memory_key(user, generation, &m).await?,
                            MemoryKey::Erased
                        ) {
                            self.shred_one(user, &m, seq).await?;
                            destroyed += 1;
                        }
                    }
                }
            }
        }
        if destroyed > 0 {
            tracing::warn!(%user, keys = destroyed, "erasures applied again: keys had come back (a restored key bucket?)");
        }
        Ok(destroyed)
    }

    /// Every user with a chain on this server (for maintenance: one stream listing, or
    /// one subject listing per shard).
    pub async fn chain_users(&self) -> Result<Vec<UserId>> {
        use mnemo_core::names::{CHAIN_STREAM_PREFIX, Layout, chain_subject_user};
        let mut users = Vec::new();
        match &self.inner.cfg.layout {
            Layout::PerUser => {
                let prefix = format!("{CHAIN_STREAM_PREFIX}-");
                let mut names = self.inner.js.stream_names();
                while let Some(n) = names.next().await {
                    let n = n.map_err(|e| LedgerError::nats("list streams", e))?;
                    if let Some(u) = n.strip_prefix(&prefix).and_then(|u| UserId::new(u).ok()) {
                        users.push(u);
                    }
                }
            }
            Layout::Sharded { .. } => {
                for (name, subjects) in self.inner.cfg.layout.shared_streams() {
                    let Some(s) = self.stream(&name).await? else {
                        continue;
                    };
                    let mut listed = s
                        .info_with_subjects(&subjects)
                        .await
                        .map_err(|e| LedgerError::nats("list chains", e))?;
                    while let Some(item) = listed.next().await {
                        let (subject, _) = item.map_err(|e| LedgerError::nats("list chains", e))?;
                        users.extend(chain_subject_user(&subject));
                    }
                }
            }
        }
        users.sort();
        Ok(users)
    }
}
