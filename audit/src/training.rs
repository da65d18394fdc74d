//! Training-set proofs (FORMAT.md §15.4): whether a memory was, or was not, in a model's
//! training set, checked offline. With the owner's custody bundle, the model's commitment
//! (`set_root`, `set_count`) and the memory's event (`seq`, `event_hash`) are taken from the
//! verified chain: the proof is then trusted as far as the bundle is. Without one, only the
//! proof's own consistency is checked (self-asserted).

use mnemo_core::custody::BundleItem;
use mnemo_core::{Event, EventBody, Hash32, ModelId, Seq, TrainingSetProof};
use serde::{Deserialize, Serialize};

use crate::{ItemError, Options};

/// What `GET /v1/models/{id}/training-set/{memory}` answers.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct TrainingAnswer {
    /// Whose model.
    pub user: mnemo_core::UserId,
    /// Which model.
    pub model: ModelId,
    /// The proof.
    pub proof: TrainingSetProof,
}

/// A training-set proof's verdict.
#[derive(Clone, Debug, Serialize)]
pub struct TrainingVerdict {
    /// `true`: in the set; `false`: not in it.
    pub included: bool,
    /// `bundle` (commitment and event from a verified custody bundle) or `self-asserted`.
    pub trust: &'static str,
}

/// Why a training-set proof is refused: a FORMAT.md §9 code and what failed.
#[derive(Clone, Debug, Serialize)]
pub struct TrainingRefusal {
    /// The code.
    pub code: String,
    /// What failed.
    pub message: String,
}

fn refuse(code: &str, message: impl Into<String>) -> TrainingRefusal {
    TrainingRefusal {
        code: code.into(),
        message: message.into(),
    }
}

/// Checks `answer`, against the custody bundle's items when given.
pub fn verify_training<I, J>(
    answer: &TrainingAnswer,
    bundle: Option<(I, J)>,
    opts: &Options,
) -> Result<TrainingVerdict, TrainingRefusal>
where
    I: Iterator<Item = Result<BundleItem, ItemError>>,
    J: Iterator<Item = Result<BundleItem, ItemError>>,
{
    let p = &answer.proof;
    let (root, count, trust) = match bundle {
        None => (p.root, p.count, "self-asserted"),
        Some((check, read)) => {
            let outcome = crate::verify_items(check, opts)
                .map_err(|e| refuse("structure", format!("reading the bundle: {e}")))?;
            if let Some(f) = outcome.failure {
                return Err(refuse(
                    &f.code,
                    format!("the custody bundle is invalid: {}", f.message),
                ));
            }
            let mut commitment: Option<(Hash32, u64, Option<Vec<Seq>>)> = None;
            let mut member: Option<Hash32> = None;
            for item in read {
                let Ok(BundleItem::Event { wire }) = item else {
                    continue;
                };
                let Ok((e, hash)) = Event::from_wire(&wire.0) else {
                    continue;
                };
                if e.seq == p.member.seq {
                    member = Some(hash);
                }
                if let EventBody::ModelTrained {
                    model,
                    set_root,
                    set_count,
                    set,
                    ..
                } = &e.body
                    && *model == answer.model
                {
                    commitment = Some((*set_root, *set_count, set.clone()));
                }
            }
            let (root, count, published) = commitment.ok_or_else(|| {
                refuse(
                    "mismatch",
                    format!("the bundle records no model {}", answer.model),
                )
            })?;
            // The proof's own checks first (§15.4), then the member against the chain.
            let included = p
                .verify(&root, count)
                .map_err(|e| refuse(e.code(), e.to_string()))?;
            if member != Some(p.member.event_hash) {
                return Err(refuse(
                    "mismatch",
                    format!(
                        "the bundle's event at seq {} is not the one the proof names",
                        p.member.seq
                    ),
                ));
            }
            // The set the chain publishes (tag 0x41, its root checked with the bundle)
            // decides; a model recorded without it (0x40) cannot show an exclusion.
            match published {
                Some(seqs) if seqs.binary_search(&p.member.seq).is_ok() != included => {
                    return Err(refuse(
                        "mismatch",
                        format!(
                            "the chain's published training set {} seq {}",
                            if included { "does not hold" } else { "holds" },
                            p.member.seq
                        ),
                    ));
                }
                None if !included => {
                    return Err(refuse(
                        "mismatch",
                        "the model's record (tag 0x40) does not publish its training set, so \
                         the chain cannot show an exclusion",
                    ));
                }
                _ => {}
            }
            return Ok(TrainingVerdict {
                included,
                trust: "bundle",
            });
        }
    };
    p.verify(&root, count)
        .map(|included| TrainingVerdict { included, trust })
        .map_err(|e| refuse(e.code(), e.to_string()))
}

/// Reads a training-set proof file (docs/FORMAT.md §15.4): the endpoint's answer
/// `{"user", "model", "proof"}`, or the bare proof object, then named by `model` (needed
/// with a bundle, which must hold that model).
pub fn read_training_file(
    text: &[u8],
    model: Option<ModelId>,
) -> Result<TrainingAnswer, TrainingRefusal> {
    if let Ok(a) = serde_json::from_slice::<TrainingAnswer>(text) {
        if model.is_some_and(|m| m != a.model) {
            return Err(refuse(
                "mismatch",
                "--model names another model than the file",
            ));
        }
        return Ok(a);
    }
    let proof: TrainingSetProof = serde_json::from_slice(text)
        .map_err(|e| refuse("structure", format!("not a training-set proof: {e}")))?;
    Ok(TrainingAnswer {
        user: mnemo_core::UserId::new("unknown").expect("a valid id"),
        model: model.unwrap_or(ModelId([0; 16])),
        proof,
    })
}
