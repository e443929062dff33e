-- Usage (docs/usage.md): one row per server session, kept for reports. Unlike
-- server_sessions (the last few per server, gone with the server), these rows are neither
-- pruned nor deleted with the server or its user, so a report covers every session: user and
-- server are names, not references. Written by the supervisor when the start is requested
-- (the validated options: system, account, partition, nodes, GPUs per node), when the
-- spawner names the job, when the server is ready and when the session ends; with Slurm
-- accounting, sacct's figures for the job once it ended (`accounted` set).
CREATE TABLE usage_sessions (
    id BIGSERIAL PRIMARY KEY,
    server_id BIGINT NOT NULL,
    session_id BIGINT,
    user_name TEXT NOT NULL,
    server_name TEXT NOT NULL DEFAULT '',
    system TEXT NOT NULL DEFAULT '',
    account TEXT NOT NULL DEFAULT '',
    partition TEXT NOT NULL DEFAULT '',
    nodes BIGINT NOT NULL DEFAULT 1,
    gpus BIGINT NOT NULL DEFAULT 0,
    job_id TEXT,
    started BIGINT NOT NULL,
    ready BIGINT,
    ended BIGINT,
    cpus BIGINT,
    elapsed BIGINT,
    job_gpus BIGINT,
    accounted BIGINT
);
CREATE INDEX usage_sessions_server ON usage_sessions (server_id, ended);
CREATE INDEX usage_sessions_time ON usage_sessions (started, ended);
CREATE INDEX usage_sessions_unaccounted ON usage_sessions (accounted, ended);
