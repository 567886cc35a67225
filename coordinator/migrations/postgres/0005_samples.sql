-- Samples uploaded by request_sample, content-addressed.
CREATE TABLE samples (
    sha256      TEXT PRIMARY KEY,
    size        BIGINT NOT NULL,
    device_id   TEXT NOT NULL,
    path        TEXT NOT NULL,
    action_id   TEXT NOT NULL,
    created_at  BIGINT NOT NULL
);
CREATE INDEX samples_created ON samples (created_at, sha256);
