-- Each server's recent sessions (docs/sessions.md, "Relaunch and history"): one row per start,
-- written by the supervisor when the start is requested (the validated options, the system),
-- when the spawner names its job, and when the session ends (when, and how: `reason` is one
-- of a fixed set of words, `message` the words the user read). Only the last few per server
-- are kept; a deleted server takes its history with it.
CREATE TABLE server_sessions (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    server_id BIGINT NOT NULL REFERENCES servers(id) ON DELETE CASCADE,
    user_options TEXT NOT NULL DEFAULT '{}',
    system TEXT NOT NULL DEFAULT '',
    job_id TEXT,
    started BIGINT NOT NULL,
    ended BIGINT,
    reason TEXT,
    message TEXT
);
CREATE INDEX server_sessions_server ON server_sessions (server_id, id);
