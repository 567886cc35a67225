-- Device groups with their automation level, and automated investigations.
CREATE TABLE device_groups (
    name              TEXT PRIMARY KEY,
    automation_level  TEXT NOT NULL,
    description       TEXT NOT NULL DEFAULT '',
    created_at        BIGINT NOT NULL
);
INSERT INTO device_groups (name, automation_level, description, created_at)
    VALUES ('default', 'full', 'Devices enrolled without a group', 0);

CREATE TABLE investigations (
    id          TEXT PRIMARY KEY,
    device_id   TEXT NOT NULL REFERENCES devices(id),
    alert_id    TEXT,
    status      TEXT NOT NULL,
    title       TEXT NOT NULL,
    subject     TEXT NOT NULL,
    evidence    TEXT NOT NULL DEFAULT 'null',
    created_by  TEXT NOT NULL,
    created_at  BIGINT NOT NULL,
    updated_at  BIGINT NOT NULL
);
CREATE INDEX investigations_status ON investigations (status, updated_at);
CREATE INDEX investigations_device ON investigations (device_id, created_at);

CREATE TABLE investigation_events (
    id                BIGSERIAL PRIMARY KEY,
    investigation_id  TEXT NOT NULL,
    at                BIGINT NOT NULL,
    actor             TEXT NOT NULL,
    event             TEXT NOT NULL,
    detail            TEXT NOT NULL DEFAULT ''
);
CREATE INDEX investigation_events_inv ON investigation_events (investigation_id, id);
