-- nbhub schema, PostgreSQL (same as the SQLite one but for the id columns). Timestamps are microseconds since the Unix epoch (UTC); JSON is TEXT;
-- booleans are 0/1, so that one set of queries serves SQLite and PostgreSQL alike.
CREATE TABLE users (
    id BIGSERIAL PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    admin BIGINT NOT NULL DEFAULT 0,
    created BIGINT NOT NULL,
    last_activity BIGINT,
    cookie_id TEXT NOT NULL,
    user_info TEXT,
    auth_state TEXT,
    password_hash TEXT,
    approved BIGINT NOT NULL DEFAULT 1
);
CREATE TABLE groups (
    id BIGSERIAL PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    properties TEXT NOT NULL DEFAULT '{}'
);
CREATE TABLE user_groups (
    user_id BIGINT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    group_id BIGINT NOT NULL REFERENCES groups(id) ON DELETE CASCADE,
    PRIMARY KEY (user_id, group_id)
);
CREATE TABLE services (
    id BIGSERIAL PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    admin BIGINT NOT NULL DEFAULT 0,
    url TEXT NOT NULL DEFAULT '',
    display BIGINT NOT NULL DEFAULT 1,
    info TEXT NOT NULL DEFAULT '{}'
);
CREATE TABLE roles (
    id BIGSERIAL PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    description TEXT NOT NULL DEFAULT '',
    scopes TEXT NOT NULL DEFAULT '[]'
);
CREATE TABLE user_roles (
    user_id BIGINT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    role_id BIGINT NOT NULL REFERENCES roles(id) ON DELETE CASCADE,
    PRIMARY KEY (user_id, role_id)
);
CREATE TABLE group_roles (
    group_id BIGINT NOT NULL REFERENCES groups(id) ON DELETE CASCADE,
    role_id BIGINT NOT NULL REFERENCES roles(id) ON DELETE CASCADE,
    PRIMARY KEY (group_id, role_id)
);
CREATE TABLE service_roles (
    service_id BIGINT NOT NULL REFERENCES services(id) ON DELETE CASCADE,
    role_id BIGINT NOT NULL REFERENCES roles(id) ON DELETE CASCADE,
    PRIMARY KEY (service_id, role_id)
);
-- One row per (user, server name): the spawner's record. ip/port are set while it runs.
CREATE TABLE servers (
    id BIGSERIAL PRIMARY KEY,
    user_id BIGINT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    name TEXT NOT NULL DEFAULT '',
    display_name TEXT NOT NULL DEFAULT '',
    state TEXT NOT NULL DEFAULT '{}',
    user_options TEXT NOT NULL DEFAULT '{}',
    started BIGINT,
    last_activity BIGINT,
    ip TEXT,
    port BIGINT,
    UNIQUE (user_id, name)
);
CREATE TABLE api_tokens (
    id BIGSERIAL PRIMARY KEY,
    prefix TEXT NOT NULL,
    hashed TEXT NOT NULL,
    user_id BIGINT REFERENCES users(id) ON DELETE CASCADE,
    service_id BIGINT REFERENCES services(id) ON DELETE CASCADE,
    client_id TEXT NOT NULL DEFAULT 'jupyterhub',
    session_id TEXT,
    note TEXT NOT NULL DEFAULT '',
    scopes TEXT NOT NULL DEFAULT '[]',
    created BIGINT NOT NULL,
    expires_at BIGINT,
    last_activity BIGINT
);
CREATE INDEX api_tokens_prefix ON api_tokens (prefix);
CREATE TABLE oauth_clients (
    id BIGSERIAL PRIMARY KEY,
    identifier TEXT NOT NULL UNIQUE,
    description TEXT NOT NULL DEFAULT '',
    secret TEXT NOT NULL DEFAULT '',
    redirect_uri TEXT NOT NULL DEFAULT '',
    allowed_scopes TEXT NOT NULL DEFAULT '[]'
);
CREATE TABLE oauth_codes (
    id BIGSERIAL PRIMARY KEY,
    client_id TEXT NOT NULL,
    code_hash TEXT NOT NULL UNIQUE,
    expires_at BIGINT NOT NULL,
    redirect_uri TEXT NOT NULL,
    session_id TEXT,
    user_id BIGINT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    scopes TEXT NOT NULL DEFAULT '[]',
    code_challenge TEXT,
    code_challenge_method TEXT
);
