-- Verdicts from the coordinator's own knowledge, not the device's word:
-- the severity of each rule of a bundle as the coordinator's check
-- compiled it; every path an alert covers, each with the investigation
-- that handles it; alerts a device sent past its rate, counted.
ALTER TABLE rule_bundles ADD COLUMN severities TEXT NOT NULL DEFAULT '{}';
CREATE TABLE alert_paths (
    alert_id          TEXT NOT NULL,
    path              TEXT NOT NULL,
    first_seen        BIGINT NOT NULL,
    last_seen         BIGINT NOT NULL,
    investigation_id  TEXT,
    PRIMARY KEY (alert_id, path)
);
INSERT INTO alert_paths (alert_id, path, first_seen, last_seen, investigation_id)
    SELECT a.id, a.path, a.first_seen, a.last_seen,
           (SELECT i.id FROM investigations i WHERE i.alert_id = a.id ORDER BY i.created_at DESC LIMIT 1)
    FROM alerts a;
CREATE INDEX alert_paths_pending ON alert_paths (investigation_id, first_seen);
ALTER TABLE devices ADD COLUMN alerts_dropped BIGINT NOT NULL DEFAULT 0;
