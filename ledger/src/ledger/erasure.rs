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
            if let Some(memory) = e.event.body.new_memory()
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
