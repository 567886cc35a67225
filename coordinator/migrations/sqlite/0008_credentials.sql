-- Credentials: the person an API token speaks for (the two-person rule
-- compares people, not token names), whether it is a person's or an
-- integration's (the source of the actions it requests), and its expiry;
-- the identity behind each action's request; enrollment tokens suspended
-- when a device they enrolled is revoked.
ALTER TABLE api_tokens ADD COLUMN user_name TEXT;
ALTER TABLE api_tokens ADD COLUMN kind TEXT NOT NULL DEFAULT 'user';
ALTER TABLE api_tokens ADD COLUMN expires_at BIGINT;
ALTER TABLE actions ADD COLUMN requestor_identity TEXT NOT NULL DEFAULT '';
ALTER TABLE enrollment_tokens ADD COLUMN suspended_at BIGINT;
ALTER TABLE enrollment_tokens ADD COLUMN suspended_reason TEXT;
