-- One active projector per view: the instance holding the session advisory lock of the
-- view bumps `epoch` when it takes over, and every batch it commits checks the epoch in the
-- same transaction (a fencing token): a stale leader can never write.
CREATE TABLE projector_leaders (
    view    text PRIMARY KEY,
    epoch   bigint NOT NULL,
    holder  text NOT NULL,
    since   timestamptz NOT NULL
);
