-- Browser sessions ended by a logout. The login cookie names its session, so a copy of the
-- cookie taken before the logout signs no one in afterwards. A row can go once the cookie
-- it ended would have expired anyway (expires_at, microseconds).
CREATE TABLE ended_sessions (
    session_id TEXT PRIMARY KEY,
    expires_at BIGINT NOT NULL
);
