//! The canonical encoding of an event's body (docs/FORMAT.md §4): one kind tag, then the
//! kind's fields, and its decoding. The envelope around it is in `event.rs`.

use super::*;

impl EventBody {
    pub(super) fn encode(&self, w: &mut Writer) {
        w.u8(self.tag());
        match self {
            Self::KeyAdded { key, role } => {
                w.fixed(&key.to_bytes());
                w.u8(role.tag());
            }
            Self::KeyRotated { old, new } => {
                w.fixed(&old.0);
                w.fixed(&new.to_bytes());
            }
            Self::KeyRevoked { key } => w.fixed(&key.0),
            Self::MemoryIngested { memory, capture } => {
                w.fixed(&memory.0);
                if let Some(c) = capture {
                    w.str(&c.stream);
                    w.u64(c.counter);
                }
            }
            Self::MemoryErased { target } => match target {
                ErasureTarget::Memory(m) => {
                    w.u8(1);
                    w.fixed(&m.0);
                }
                ErasureTarget::All => w.u8(2),
            },
            Self::MemoryDerived {
                memory,
                grant,
                version,
                inputs,
                signature,
            } => {
                w.fixed(&memory.0);
                w.fixed(&grant.0);
                w.str(version);
                ids(w, inputs);
                w.fixed(&signature.to_bytes());
            }
            Self::LineageErased {
                memory,
                reason,
                closure,
            } => {
                w.fixed(&memory.0);
                w.str(reason);
                ids(w, closure);
            }
            Self::ProcessingGranted {
                grant,
                processor,
                version,
                key,
                conditions,
                expires_at,
            } => {
                w.fixed(&grant.0);
                w.str(processor.as_str());
                w.bool(version.is_some());
                if let Some(v) = version {
                    w.str(v);
                }
                w.fixed(&key.to_bytes());
                conditions_encode(w, conditions);
                opt_ts(w, *expires_at);
            }
            Self::InputsFetched { grant, memories } => {
                w.fixed(&grant.0);
                ids(w, memories);
            }
            Self::QuestionAsked {
                question,
                asker,
                grant,
                model,
                cited,
            } => {
                w.fixed(&question.0);
                w.str(asker.as_str());
                w.fixed(&grant.0);
                w.fixed(&model.0);
                ids(w, cited);
            }
            Self::ModelTrained {
                model,
                grant,
                version,
                artifact,
                set_root,
                set_count,
                set,
                signature,
            } => {
                w.fixed(&model.0);
                w.fixed(&grant.0);
                w.str(version);
                w.fixed(&artifact.0);
                w.fixed(&set_root.0);
                match set {
                    // 0x41: the count is the list's length.
                    Some(seqs) => {
                        w.len(seqs.len());
                        for s in seqs {
                            w.u64(s.0);
                        }
                    }
                    None => w.u64(*set_count),
                }
                w.fixed(&signature.to_bytes());
            }
            Self::GrantCreated {
                grant,
                grantee,
                capabilities,
                conditions,
                expires_at,
                not_before,
            } => {
                w.fixed(&grant.0);
                w.str(grantee.as_str());
                w.u32(capabilities.bits());
                conditions_encode(w, conditions);
                opt_ts(w, *expires_at);
                // 0x23: the time capsule's opening.
                if let Some(t) = not_before {
                    w.i64(t.0);
                }
            }
            Self::GrantRevoked { grant } => w.fixed(&grant.0),
            Self::AccessRecorded {
                accessor,
                grant,
                action,
                memories,
            } => {
                w.str(accessor.as_str());
                w.fixed(&grant.0);
                w.u8(action.tag());
                w.len(memories.len());
                for m in memories {
                    w.fixed(&m.0);
                }
            }
        }
    }

    pub(super) fn decode(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        let at = r.pos();
        let tag = r.u8("kind")?;
        Ok(match tag {
            0x01 => {
                let key = public_key(r, "key")?;
                let at = r.pos();
                let role = KeyRole::from_tag(r.u8("role")?).ok_or(DecodeError::Invalid {
                    offset: at,
                    what: "role",
                })?;
                Self::KeyAdded { key, role }
            }
            0x02 => Self::KeyRotated {
                old: KeyId(r.array("old key id")?),
                new: public_key(r, "new key")?,
            },
            0x03 => Self::KeyRevoked {
                key: KeyId(r.array("key id")?),
            },
            0x10 => Self::MemoryIngested {
                memory: MemoryId(r.array("memory id")?),
                capture: None,
            },
            0x14 => Self::MemoryIngested {
                memory: MemoryId(r.array("memory id")?),
                capture: Some(Capture {
                    stream: r.str("capture stream")?.to_owned(),
                    counter: r.u64("capture counter")?,
                }),
            },
            0x11 => {
                let at = r.pos();
                let target = match r.u8("erasure scope")? {
                    1 => ErasureTarget::Memory(MemoryId(r.array("memory id")?)),
                    2 => ErasureTarget::All,
                    _ => {
                        return Err(DecodeError::Invalid {
                            offset: at,
                            what: "erasure scope",
                        });
                    }
                };
                Self::MemoryErased { target }
            }
            0x20 | 0x23 => {
                let grant = GrantId(r.array("grant id")?);
                let grantee = user_id(r, "grantee")?;
                let at = r.pos();
                let capabilities = Capabilities::from_bits(r.u32("capabilities")?).ok_or(
                    DecodeError::Invalid {
                        offset: at,
                        what: "capabilities",
                    },
                )?;
                let conditions = conditions_decode(r)?;
                let expires_at = read_opt_ts(r, "expires_at")?;
                let not_before = if tag == 0x23 {
                    Some(TimestampMs(r.i64("not_before")?))
                } else {
                    None
                };
                Self::GrantCreated {
                    grant,
                    grantee,
                    capabilities,
                    conditions,
                    expires_at,
                    not_before,
                }
            }
            0x12 => Self::MemoryDerived {
                memory: MemoryId(r.array("memory id")?),
                grant: GrantId(r.array("grant id")?),
                version: r.str("version")?.to_owned(),
                inputs: read_ids(r, "inputs")?,
                signature: Sig::from_bytes(&r.array("processor signature")?),
            },
            0x13 => Self::LineageErased {
                memory: MemoryId(r.array("memory id")?),
                reason: r.str("reason")?.to_owned(),
                closure: read_ids(r, "closure")?,
            },
            0x22 => {
                let grant = GrantId(r.array("grant id")?);
                let at = r.pos();
                let processor =
                    ProcessorId::new(r.str("processor")?).map_err(|_| DecodeError::Invalid {
                        offset: at,
                        what: "processor",
                    })?;
                let version = if r.bool("version flag")? {
                    Some(r.str("version")?.to_owned())
                } else {
                    None
                };
                let key = public_key(r, "processor key")?;
                let conditions = conditions_decode(r)?;
                let expires_at = read_opt_ts(r, "expires_at")?;
                Self::ProcessingGranted {
                    grant,
                    processor,
                    version,
                    key,
                    conditions,
                    expires_at,
                }
            }
            0x32 => Self::QuestionAsked {
                question: MemoryId(r.array("question id")?),
                asker: user_id(r, "asker")?,
                grant: GrantId(r.array("grant id")?),
                model: ModelId(r.array("model id")?),
                cited: read_ids(r, "cited")?,
            },
            0x31 => Self::InputsFetched {
                grant: GrantId(r.array("grant id")?),
                memories: read_ids(r, "memories")?,
            },
            tag @ (0x40 | 0x41) => {
                let model = ModelId(r.array("model id")?);
                let grant = GrantId(r.array("grant id")?);
                let version = r.str("version")?.to_owned();
                let artifact = Hash32(r.array("artifact")?);
                let set_root = Hash32(r.array("set root")?);
                // 0x40 states the count; 0x41 publishes the members, the count is theirs.
                let (set_count, set) = if tag == 0x40 {
                    (r.u64("set count")?, None)
                } else {
                    let n = r.count(8, "training set")?;
                    let seqs = (0..n)
                        .map(|_| r.u64("member seq").map(Seq))
                        .collect::<Result<Vec<_>, _>>()?;
                    (seqs.len() as u64, Some(seqs))
                };
                Self::ModelTrained {
                    model,
                    grant,
                    version,
                    artifact,
                    set_root,
                    set_count,
                    set,
                    signature: Sig::from_bytes(&r.array("processor signature")?),
                }
            }
            0x21 => Self::GrantRevoked {
                grant: GrantId(r.array("grant id")?),
            },
            0x30 => {
                let accessor = user_id(r, "accessor")?;
                let grant = GrantId(r.array("grant id")?);
                let at = r.pos();
                let action =
                    AccessAction::from_tag(r.u8("action")?).ok_or(DecodeError::Invalid {
                        offset: at,
                        what: "action",
                    })?;
                let n = r.count(16, "memories")?;
                let memories = (0..n)
                    .map(|_| r.array("memory id").map(MemoryId))
                    .collect::<Result<_, _>>()?;
                Self::AccessRecorded {
                    accessor,
                    grant,
                    action,
                    memories,
                }
            }
            _ => {
                return Err(DecodeError::Invalid {
                    offset: at,
                    what: "kind",
                });
            }
        })
    }
}

fn ids(w: &mut Writer, ids: &[MemoryId]) {
    w.len(ids.len());
    for m in ids {
        w.fixed(&m.0);
    }
}

fn read_ids(r: &mut Reader<'_>, what: &'static str) -> Result<Vec<MemoryId>, DecodeError> {
    let n = r.count(16, what)?;
    (0..n).map(|_| r.array("memory id").map(MemoryId)).collect()
}

fn conditions_encode(w: &mut Writer, c: &GrantConditions) {
    w.len(c.tags.len());
    for t in &c.tags {
        w.str(t);
    }
    w.len(c.kinds.len());
    for k in &c.kinds {
        w.str(k);
    }
    opt_ts(w, c.from);
    opt_ts(w, c.until);
    ids(w, &c.memories);
}

fn conditions_decode(r: &mut Reader<'_>) -> Result<GrantConditions, DecodeError> {
    let n = r.count(4, "tags")?;
    let tags = (0..n)
        .map(|_| r.str("tag").map(str::to_owned))
        .collect::<Result<_, _>>()?;
    let n = r.count(4, "kinds")?;
    let kinds = (0..n)
        .map(|_| r.str("kind filter").map(str::to_owned))
        .collect::<Result<_, _>>()?;
    let from = read_opt_ts(r, "from")?;
    let until = read_opt_ts(r, "until")?;
    let memories = read_ids(r, "memories")?;
    Ok(GrantConditions {
        tags,
        kinds,
        from,
        until,
        memories,
    })
}

fn opt_ts(w: &mut Writer, t: Option<TimestampMs>) {
    w.bool(t.is_some());
    if let Some(t) = t {
        w.i64(t.0);
    }
}

fn read_opt_ts(r: &mut Reader<'_>, what: &'static str) -> Result<Option<TimestampMs>, DecodeError> {
    Ok(if r.bool(what)? {
        Some(TimestampMs(r.i64(what)?))
    } else {
        None
    })
}

fn public_key(r: &mut Reader<'_>, what: &'static str) -> Result<PublicKey, DecodeError> {
    let at = r.pos();
    PublicKey::from_bytes(&r.array(what)?).ok_or(DecodeError::Invalid { offset: at, what })
}

pub(super) fn user_id(r: &mut Reader<'_>, what: &'static str) -> Result<UserId, DecodeError> {
    let at = r.pos();
    UserId::new(r.str(what)?).map_err(|_| DecodeError::Invalid { offset: at, what })
}
