-- A mail host's internal domains, comma-separated as it last declared them
-- (NULL: the device is not a mail host).
ALTER TABLE devices ADD COLUMN mail_domains TEXT;
