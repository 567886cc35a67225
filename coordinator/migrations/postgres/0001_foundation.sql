-- Devices, enrollment tokens, API tokens and the audit trail.
-- Times are Unix milliseconds (BIGINT) so both backends share one row shape.
CREATE TABLE devices (
    id              TEXT PRIMARY KEY,
    hostname        TEXT NOT NULL,
    os              TEXT NOT NULL DEFAULT '',
    kernel          TEXT NOT NULL DEFAULT '',
    agent_version   TEXT NOT NULL DEFAULT '',
    group_name      TEXT NOT NULL,
    ip              TEXT NOT NULL DEFAULT '',
    cert_serial     TEXT NOT NULL,
    cert_not_after  BIGINT NOT NULL,
    status          TEXT NOT NULL CHECK (status IN ('active', 'revoked', 'offboarded')),
    enrolled_at     BIGINT NOT NULL,
    enrollment_token_id TEXT NOT NULL,
    first_seen      BIGINT,
    last_seen       BIGINT
);

CREATE TABLE enrollment_tokens (
    id          TEXT PRIMARY KEY,
    token_hash  TEXT NOT NULL UNIQUE,
    group_name  TEXT NOT NULL,
    created_by  TEXT NOT NULL,
    created_at  BIGINT NOT NULL,
    expires_at  BIGINT NOT NULL,
    max_uses    BIGINT NOT NULL,
    uses_left   BIGINT NOT NULL,
    revoked_at  BIGINT
);

CREATE TABLE api_tokens (
    id          TEXT PRIMARY KEY,
    name        TEXT NOT NULL UNIQUE,
    token_hash  TEXT NOT NULL UNIQUE,
    role        TEXT NOT NULL CHECK (role IN ('viewer', 'responder', 'approver', 'admin')),
    created_by  TEXT NOT NULL,
    created_at  BIGINT NOT NULL,
    revoked_at  BIGINT
);

CREATE TABLE audit (
    id      BIGSERIAL PRIMARY KEY,
    at      BIGINT NOT NULL,
    actor   TEXT NOT NULL,
    action  TEXT NOT NULL,
    target  TEXT NOT NULL,
    result  TEXT NOT NULL,
    detail  TEXT NOT NULL DEFAULT ''
);
