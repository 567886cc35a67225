-- How a person classified an alert, and detections suppressed after a false positive.
ALTER TABLE alerts ADD COLUMN classification TEXT;
CREATE TABLE suppressions (
    sha256      TEXT NOT NULL,
    rule        TEXT NOT NULL,
    alert_id    TEXT NOT NULL,
    created_by  TEXT NOT NULL,
    created_at  BIGINT NOT NULL,
    PRIMARY KEY (sha256, rule)
);
