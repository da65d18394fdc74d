-- mnemo projections: views built from the custody chains. Every row here can be thrown
-- away and rebuilt from the chains (`mnemo projections rebuild`).

-- One row per user chain seen: the chain's verified tip and the chain tree's frontier
-- (peaks of the RFC 9162 tree, 32 bytes each, largest first), so checkpoint roots are
-- computed incrementally.
CREATE TABLE users (
    user_id     text PRIMARY KEY,
    last_seq    bigint NOT NULL,
    head_hash   bytea NOT NULL,
    frontier    bytea NOT NULL,
    root        bytea NOT NULL,
    created_at  timestamptz NOT NULL,
    updated_at  timestamptz NOT NULL
);

-- Keys each chain added, to verify signatures without replaying the chain.
CREATE TABLE user_keys (
    user_id     text NOT NULL,
    key_id      bytea NOT NULL,
    public_key  bytea NOT NULL,
    role        text NOT NULL,
    added_seq   bigint NOT NULL,
    retired_seq bigint,
    PRIMARY KEY (user_id, key_id)
);

CREATE TABLE events (
    user_id     text NOT NULL,
    seq         bigint NOT NULL,
    hash        bytea NOT NULL,
    prev        bytea NOT NULL,
    kind        text NOT NULL,
    ts          timestamptz NOT NULL,
    signer      bytea NOT NULL,
    stream      text NOT NULL,
    stream_seq  bigint NOT NULL,
    PRIMARY KEY (user_id, seq)
);

CREATE TABLE memories (
    user_id       text NOT NULL,
    memory_id     bytea NOT NULL,
    seq           bigint NOT NULL,
    kind          text NOT NULL,
    tags          text[] NOT NULL,
    captured_at   timestamptz,
    source        text,
    content_type  text NOT NULL,
    size          bigint NOT NULL,
    storage       text NOT NULL,
    ingested_at   timestamptz NOT NULL,
    erased_seq    bigint,
    erased_at     timestamptz,
    -- the text of text memories while their key exists; NULL once erased
    body          text,
    search        tsvector GENERATED ALWAYS AS (to_tsvector('simple', coalesce(body, ''))) STORED,
    PRIMARY KEY (user_id, memory_id)
);
CREATE INDEX memories_by_user_seq ON memories (user_id, seq);
CREATE INDEX memories_tags ON memories USING gin (tags);
CREATE INDEX memories_search ON memories USING gin (search);

CREATE TABLE grants (
    user_id       text NOT NULL,
    grant_id      bytea NOT NULL,
    grantee       text NOT NULL,
    can_metadata  boolean NOT NULL,
    can_content   boolean NOT NULL,
    conditions    jsonb NOT NULL,
    expires_at    timestamptz,
    created_seq   bigint NOT NULL,
    revoked_seq   bigint,
    PRIMARY KEY (user_id, grant_id)
);
CREATE INDEX grants_by_grantee ON grants (grantee);

CREATE TABLE access_log (
    user_id     text NOT NULL,
    seq         bigint NOT NULL,
    accessor    text NOT NULL,
    grant_id    bytea NOT NULL,
    action      text NOT NULL,
    memories    bytea[] NOT NULL,
    ts          timestamptz NOT NULL,
    PRIMARY KEY (user_id, seq)
);

CREATE TABLE anchors (
    epoch         bigint PRIMARY KEY,
    root          bytea NOT NULL,
    prev_root     bytea NOT NULL,
    leaf_count    bigint NOT NULL,
    chain_id      bigint NOT NULL,
    contract      bytea NOT NULL,
    tx_hash       bytea NOT NULL,
    block_number  bigint NOT NULL,
    block_hash    bytea NOT NULL,
    recorded_at   timestamptz NOT NULL
);

-- Where each view stands in each chain stream; moved in the same transaction as the rows.
CREATE TABLE projector_checkpoints (
    view        text NOT NULL,
    stream      text NOT NULL,
    stream_seq  bigint NOT NULL,
    updated_at  timestamptz NOT NULL,
    PRIMARY KEY (view, stream)
);
