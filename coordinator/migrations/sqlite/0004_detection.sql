-- Detection content and alerts: rule bundles, SHA-256 indicators, alerts
-- (one per device, SHA-256 and rule), the reports that raised them, and the
-- alert event log the sinks read.
ALTER TABLE devices ADD COLUMN rules_version TEXT NOT NULL DEFAULT '';
ALTER TABLE devices ADD COLUMN indicators_version TEXT NOT NULL DEFAULT '';
ALTER TABLE devices ADD COLUMN rules_error TEXT;

CREATE TABLE rule_bundles (
    version       TEXT PRIMARY KEY,
    files         TEXT NOT NULL,
    file_count    BIGINT NOT NULL,
    rule_count    BIGINT NOT NULL,
    errors        TEXT NOT NULL,
    created_by    TEXT NOT NULL,
    created_at    BIGINT NOT NULL,
    activated_at  BIGINT NOT NULL
);

CREATE TABLE indicators (
    sha256      TEXT PRIMARY KEY,
    action      TEXT NOT NULL,
    comment     TEXT NOT NULL,
    created_by  TEXT NOT NULL,
    created_at  BIGINT NOT NULL,
    expires_at  BIGINT
);

CREATE TABLE alerts (
    id          TEXT PRIMARY KEY,
    device_id   TEXT NOT NULL REFERENCES devices(id),
    sha256      TEXT NOT NULL,
    rule        TEXT NOT NULL,
    namespace   TEXT NOT NULL,
    severity    TEXT NOT NULL,
    path        TEXT NOT NULL,
    size        BIGINT NOT NULL,
    source      TEXT NOT NULL,
    status      TEXT NOT NULL,
    count       BIGINT NOT NULL,
    first_seen  BIGINT NOT NULL,
    last_seen   BIGINT NOT NULL
);
CREATE UNIQUE INDEX alerts_dedupe ON alerts (device_id, sha256, rule);
CREATE INDEX alerts_last_seen ON alerts (last_seen, id);

CREATE TABLE alert_reports (
    report_id    TEXT PRIMARY KEY,
    device_id    TEXT NOT NULL,
    received_at  BIGINT NOT NULL
);

CREATE TABLE alert_events (
    id        INTEGER PRIMARY KEY AUTOINCREMENT,
    alert_id  TEXT NOT NULL,
    kind      TEXT NOT NULL,
    status    TEXT NOT NULL,
    at        BIGINT NOT NULL,
    actor     TEXT NOT NULL,
    comment   TEXT NOT NULL DEFAULT ''
);
CREATE INDEX alert_events_alert ON alert_events (alert_id, id);
