-- Whether a device is isolated or code-restricted is read from its action
-- history (the latest succeeded isolate / release, restrict / release):
-- this index answers that for the whole fleet without reading every action.
CREATE INDEX actions_containment ON actions (kind, status, device_id, updated_at);
