-- Offboarded devices keep their history until the retention ends.
ALTER TABLE devices ADD COLUMN offboarded_at BIGINT;
