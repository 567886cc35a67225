-- The action center: every remediation action and each of its transitions,
-- and the delivery cursors of the event sinks.
ALTER TABLE devices ADD COLUMN capabilities TEXT NOT NULL DEFAULT '';

CREATE TABLE actions (
    id                TEXT PRIMARY KEY,
    kind              TEXT NOT NULL,
    params            TEXT NOT NULL,
    device_id         TEXT NOT NULL REFERENCES devices(id),
    source            TEXT NOT NULL,
    requestor         TEXT NOT NULL,
    comment           TEXT NOT NULL,
    investigation_id  TEXT,
    status            TEXT NOT NULL,
    dedupe_key        TEXT NOT NULL,
    decided_by        TEXT,
    decision_comment  TEXT,
    progress_phase    TEXT,
    progress_percent  BIGINT,
    result            TEXT,
    error             TEXT,
    failure_reason    TEXT,
    undoes            TEXT,
    undone_by         TEXT,
    created_at        BIGINT NOT NULL,
    updated_at        BIGINT NOT NULL,
    queued_at         BIGINT,
    expires_at        BIGINT
);
-- At most one live action per (kind, params, device): the dedupe rule.
CREATE UNIQUE INDEX actions_one_live ON actions (dedupe_key)
    WHERE status IN ('pending_approval', 'approved', 'queued', 'sent', 'running');
CREATE INDEX actions_device_status ON actions (device_id, status);
CREATE INDEX actions_status_expires ON actions (status, expires_at);
CREATE INDEX actions_created ON actions (created_at, id);

CREATE TABLE action_events (
    id         BIGSERIAL PRIMARY KEY,
    action_id  TEXT NOT NULL,
    from_status TEXT,
    status     TEXT NOT NULL,
    at         BIGINT NOT NULL,
    actor      TEXT NOT NULL,
    comment    TEXT NOT NULL DEFAULT ''
);
CREATE INDEX action_events_action ON action_events (action_id, id);

CREATE TABLE sink_cursors (
    sink        TEXT PRIMARY KEY,
    last_event  BIGINT NOT NULL
);
