-- Announcements (docs/usage.md, "Announcements"): what admins tell every user, shown on every
-- hub page and served at /services/announcement/latest. `system` '' is for everyone, else
-- one system's name; `ends` (microseconds) NULL means until deleted. Expired rows are
-- deleted when the next one is set.
CREATE TABLE announcements (
    id BIGSERIAL PRIMARY KEY,
    message TEXT NOT NULL,
    level TEXT NOT NULL DEFAULT 'info',
    system TEXT NOT NULL DEFAULT '',
    ends BIGINT,
    set_by TEXT NOT NULL,
    created BIGINT NOT NULL
);
