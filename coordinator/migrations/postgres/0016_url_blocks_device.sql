-- A mail host's own blocks, read when its agent connects and after each
-- block or unblock (the agent checks the links of the mail it scans).
CREATE INDEX url_blocks_device ON url_blocks (device_id, removed_at);
