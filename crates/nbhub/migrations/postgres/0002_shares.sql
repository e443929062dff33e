-- Server sharing: a share gives one user or one group some scopes on one server; a share code
-- is a secret (stored hashed) that a user exchanges for such a share until it expires.
-- Scopes are stored without their filter: the filter is always the server's own
-- (`!server=<owner>/<server>`), computed from the server row, so that a rename keeps them.
CREATE TABLE shares (
    id BIGSERIAL PRIMARY KEY,
    server_id BIGINT NOT NULL REFERENCES servers(id) ON DELETE CASCADE,
    user_id BIGINT REFERENCES users(id) ON DELETE CASCADE,
    group_id BIGINT REFERENCES groups(id) ON DELETE CASCADE,
    scopes TEXT NOT NULL DEFAULT '[]',
    created BIGINT NOT NULL,
    UNIQUE (server_id, user_id),
    UNIQUE (server_id, group_id)
);
CREATE INDEX shares_user ON shares (user_id);
CREATE INDEX shares_group ON shares (group_id);
CREATE TABLE share_codes (
    id BIGSERIAL PRIMARY KEY,
    server_id BIGINT NOT NULL REFERENCES servers(id) ON DELETE CASCADE,
    prefix TEXT NOT NULL,
    hashed TEXT NOT NULL,
    scopes TEXT NOT NULL DEFAULT '[]',
    created BIGINT NOT NULL,
    expires_at BIGINT NOT NULL,
    exchange_count BIGINT NOT NULL DEFAULT 0,
    last_exchanged_at BIGINT
);
CREATE INDEX share_codes_prefix ON share_codes (prefix);
