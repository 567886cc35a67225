-- Time-of-click protection (DESIGN.md "Email"): the URL blocklist the click
-- listener checks, and the log of clicks on wrapped links.
CREATE TABLE url_blocks (
    -- The block_url action's id.
    id          TEXT PRIMARY KEY,
    -- The mail host whose wrapped links it applies to.
    device_id   TEXT NOT NULL,
    -- exact | domain | prefix
    match_kind  TEXT NOT NULL,
    value       TEXT NOT NULL,
    comment     TEXT NOT NULL,
    created_by  TEXT NOT NULL,
    created_at  BIGINT NOT NULL,
    -- Unix ms; NULL: until removed.
    expires_at  BIGINT,
    removed_at  BIGINT,
    removed_by  TEXT
);
CREATE INDEX url_blocks_removed ON url_blocks (removed_at);

CREATE TABLE url_clicks (
    id          TEXT PRIMARY KEY,
    at          BIGINT NOT NULL,
    -- The mail host whose key signed the link.
    device_id   TEXT NOT NULL,
    recipient   TEXT NOT NULL,
    message_id  TEXT NOT NULL,
    url         TEXT NOT NULL,
    -- allowed | blocked
    verdict     TEXT NOT NULL,
    block_id    TEXT,
    client      TEXT NOT NULL
);
CREATE INDEX url_clicks_url ON url_clicks (url, at);
CREATE INDEX url_clicks_recipient ON url_clicks (recipient, at);
CREATE INDEX url_clicks_at ON url_clicks (at);
