-- The mail explorer: one search across mail hosts is one mail_search action
-- per host; this row ties them together (`actions`: a JSON list of
-- {"device_id", "action_id"}) with what was asked and by whom.
CREATE TABLE mail_searches (
    id TEXT PRIMARY KEY,
    created_by TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    criteria TEXT NOT NULL,
    actions TEXT NOT NULL
);
CREATE INDEX mail_searches_created ON mail_searches (created_at);
