-- Maintenance notices an admin set per system (admin page, PUT /hub/api/systems/{name}/maintenance):
-- a start there is refused with the message until `until` (RFC 3339; NULL: until cleared).
-- `system` is `[[systems]] name`, or "default" for a hub without [[systems]]. Notices from
-- `[hub] maintenance_file` are not stored: the file is their record.
CREATE TABLE maintenance_notices (
    system TEXT PRIMARY KEY,
    message TEXT NOT NULL,
    until TEXT,
    set_by TEXT NOT NULL,
    set_at BIGINT NOT NULL
);
