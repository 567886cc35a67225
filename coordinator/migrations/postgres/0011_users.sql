-- Named users of the console (and the people API tokens speak for):
-- Argon2id password hashes in PHC form, a role, and when they were
-- disabled. Console sessions are stored by the SHA-256 of their cookie,
-- never the cookie itself, with the CSRF token that goes with them.
CREATE TABLE users (
    name TEXT PRIMARY KEY,
    role TEXT NOT NULL,
    password_hash TEXT NOT NULL,
    created_by TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    password_changed_at BIGINT NOT NULL,
    disabled_at BIGINT
);

CREATE TABLE console_sessions (
    id_hash TEXT PRIMARY KEY,
    user_name TEXT NOT NULL REFERENCES users (name),
    csrf_token TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    last_seen_at BIGINT NOT NULL,
    ended_at BIGINT,
    address TEXT NOT NULL
);
CREATE INDEX console_sessions_user ON console_sessions (user_name, ended_at);
