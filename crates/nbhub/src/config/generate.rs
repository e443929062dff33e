//! `nbhub generate-config`: a complete, commented configuration with every key at its
//! default (saved unchanged it is a valid config: a test checks that, and that no key is
//! missing).

use super::*;

/// A complete, commented configuration with every key at its default. Saved unchanged it is a
/// valid config (a test checks that, and that no key is missing).
pub fn generate_config() -> String {
    let d = Config::default();
    let (h, a, px) = (&d.hub, &d.authenticator, &d.proxy);
    let list = |v: &[String]| format!("{v:?}");
    format!(
        r#"# nbhub configuration. Every key is shown with its default value.
# Keys are JupyterHub's trait names in snake case, grouped by class. Any key can be overridden by
# an environment variable NBHUB_<SECTION>__<KEY>, e.g. NBHUB_HUB__BIND_URL=http://0.0.0.0:8000

[hub]
# The public URL: the proxy listens here and users browse to it.
bind_url = "{bind_url}"
# Where the hub itself listens, behind the proxy.
hub_bind_url = "{hub_bind_url}"
# URL prefix of the whole site, e.g. "/jupyter/".
base_url = "{base_url}"
# The database (SQLite), cookie secret and proxy token live here.
data_dir = "{data_dir}"
# "" = SQLite file nbhub.sqlite in data_dir; or "postgresql://user:password@host/dbname".
db_url = "{db_url}"
# How long a login is remembered.
cookie_max_age_days = {cookie_max_age_days}
# Page size of paginated API lists, and the largest a client may ask for.
api_page_default_limit = {api_page_default_limit}
api_page_max_limit = {api_page_max_limit}
# error | warn | info | debug | trace (RUST_LOG overrides).
log_level = "{log_level}"
# How single-user servers reach the hub API; "" = hub_bind_url. Set it when servers run on
# other machines (e.g. Slurm compute nodes): "http://login-node.example:8081".
hub_connect_url = "{hub_connect_url}"
# Let users run several servers, each with a name (/user/<name>/<server>/).
allow_named_servers = {allow_named_servers}
# Most named servers per user; 0 = no limit.
named_server_limit_per_user = {named_server_limit_per_user}
# Most servers starting at once (more wait in the spawn queue, first come, first served);
# 0 = no limit.
concurrent_spawn_limit = {concurrent_spawn_limit}
# Most starts waiting in the spawn queue (more get 429); 0 = no queue: 429 at the limit.
spawn_queue_limit = {spawn_queue_limit}
# Most servers running at once (more get 429); 0 = no limit.
active_server_limit = {active_server_limit}
# Seconds the start/stop API calls wait before answering 202 (still in progress).
slow_spawn_timeout = {slow_spawn_timeout}
slow_stop_timeout = {slow_stop_timeout}
# Stop every user server when the hub stops (by default servers keep running and the next hub
# adopts them).
cleanup_servers = {cleanup_servers}
# After login, go straight to the user's running server.
redirect_to_server = {redirect_to_server}
# /hub/metrics (Prometheus) needs a token with the read:metrics scope; false = open to anyone.
authenticate_prometheus = {authenticate_prometheus}
# Folders searched for page templates first (page.html, login.html, …; Jinja syntax, JupyterHub's
# names and blocks); an override can {{% extends "templates/page.html" %}}.
template_paths = []
# An image for the navigation bar's logo; "" = the built-in one.
logo_file = ""
# Extra variables for every page template, e.g. {{ announcement = "Maintenance on Friday" }}.
template_vars = {{}}
# Seconds a client of the hub's own listener (hub_bind_url) has to send a request's head, the
# wait for it on a kept-alive connection included, and its body (at most 2 MiB); then the
# connection is closed (with a 408 for a late body), so that slow clients cannot hold it.
# 0 = no limit. Keep the head's above 40: nbhub-proxy reuses idle connections for up to 37 s.
request_header_timeout = {request_header_timeout}
request_body_timeout = {request_body_timeout}
# A file of maintenance notices the hub re-reads when it changes (docs/maintenance.md): one
# table per system, [juwels] message = "…", until = "2026-12-08T12:00:00Z" (optional); a start
# on a system with a notice is refused with it. "" = none (notices set on the admin page or
# through the API still apply).
maintenance_file = "{maintenance_file}"
# JupyterHub 5.1's token_expires_in_max_seconds: the longest expiry of a token users request
# (API and token page); a request above it gets 400, one without an expiry gets this one.
# 0 = no limit. Server and OAuth tokens are not affected.
token_expires_in_max_seconds = {token_expires_in_max_seconds}
# CORS for /hub/api: "*" or one origin ("https://lab.example.org") whose pages may call the API
# with a token (Access-Control-Allow-Origin; preflight OPTIONS answered). "" = none (only
# /hub/api/ itself, the version, allows any origin).
allow_origin = "{allow_origin}"
# Upper bounds (seconds) of the buckets of jupyterhub_server_spawn_duration_seconds and
# jupyterhub_server_stop_seconds; [] = JupyterHub's defaults. JupyterHub's environment variables
# JUPYTERHUB_SERVER_SPAWN_DURATION_SECONDS_BUCKETS / ..._STOP_... ("1,10,60") win over these.
server_spawn_duration_seconds_buckets = []
server_stop_duration_seconds_buckets = []

[authenticator]
# dummy (a shared password: demos and tests only) | shared-password (user_password and
# admin_password below) | native (accounts in the hub's database) |
# pam (the machine's Unix accounts; the hub must run as root or be able to read /etc/shadow) |
# generic-oauth (an OpenID Connect identity provider; keys below).
kind = "{kind}"
# dummy: the shared password; "" accepts any password.
password = "{password}"
# shared-password (JupyterHub's SharedPasswordAuthenticator): the password of every user not
# in admin_users (8 characters at least) and the one of admin_users only (32 at least, not the
# same); "" = that kind of user cannot log in. Anyone with user_password can log in as any
# non-admin user: for workshops and short-lived hubs.
user_password = ""
admin_password = ""
# These users are admins.
admin_users = {admin_users}
# Who may log in. Empty, with allow_all = false: only admin_users and users already in the database.
allowed_users = {allowed_users}
# Let anyone who authenticates log in.
allow_all = {allow_all}
# Never let these users log in.
blocked_users = {blocked_users}
# pam: the PAM service (a file in /etc/pam.d).
pam_service = "{pam_service}"
# native: offer a sign-up page at /hub/signup.
enable_signup = {enable_signup}
# native: approve sign-ups at once; otherwise an admin approves them at /hub/authorize.
open_signup = {open_signup}
# native: the shortest password accepted at sign-up.
minimum_password_length = {minimum_password_length}
# Failed logins of one client (address) for one name after which that client must wait before
# trying the name again, longer each time. Other clients are never delayed by its failures.
failed_login_threshold = {failed_login_threshold}
# generic-oauth (alias oidc): sign-in through an OpenID Connect provider, with the keys of
# OAuthenticator's GenericOAuthenticator. The client registered at the provider:
client_id = ""
client_secret = ""
# A file holding the client secret instead (wins over client_secret).
client_secret_file = ""
# Where the provider sends the browser back; "" = the URL the browser uses, with
# <base_url>hub/oauth_callback (behind a proxy: its X-Forwarded-Proto/-Host).
oauth_callback_url = ""
# The provider's issuer URL; the three URLs below then come from its
# /.well-known/openid-configuration. Or leave it "" and give the three URLs.
issuer = ""
authorize_url = ""
token_url = ""
userdata_url = ""
scope = {scope}
# The claim (a dotted path such as "attributes.uid") that is the hub user name.
username_claim = "{username_claim}"
# The label of the login button: "Sign in with …".
login_service = "{login_service}"
# Members of these provider groups may sign in; members of admin_groups are admins.
allowed_groups = []
admin_groups = []
# Where the groups are in the ID token or userinfo claims (a dotted path).
claim_groups_key = "{claim_groups_key}"
# Or OAuthenticator 16's spelling, "oauth_user.groups" (oauth_user = the userinfo claims);
# wins over claim_groups_key when set.
auth_state_groups_key = ""
# Make the hub's groups of a user follow the provider's groups at each sign-in.
manage_groups = false
# Let users already in the hub's database sign in even if no allow rule names them.
allow_existing_users = false
# Send the client secret with HTTP Basic auth (client_secret_basic); false: in the form body.
basic_auth = {basic_auth}
# After logout, send the browser here (the provider's end-session endpoint); id_token_hint and
# client_id are added.
logout_redirect_url = ""
# Skip the login page and go straight to the provider.
auto_login = false
# More parameters for the provider's authorization request, e.g. {{ prompt = "login" }}.
extra_authorize_params = {{}}
# The user name claim's @domain is stripped for these domains ("*": any), e.g. ["uni.example"].
username_strip_domains = []
# Provider names (after the rules above) that become other hub names, e.g. {{ "a.smith" = "asmith" }}.
username_map = {{}}
# Keep the provider's tokens and userinfo (auth_state), encrypted with the key(s) in the
# environment variable JUPYTERHUB_CRYPT_KEY (`openssl rand -hex 32`; several, ';'-separated,
# for rotation: the first encrypts). The hub does not start without a usable key.
enable_auth_state = false
# Refresh the tokens before a spawn when they are older than auth_refresh_age.
refresh_pre_spawn = false
# Seconds after which tokens are refreshed, at a signed-in user's next request (with a cookie
# or an API token) or spawn; 0: never at requests, at every spawn with refresh_pre_spawn.
auth_refresh_age = {auth_refresh_age}
# Environment variables for a user's server from their auth_state, opt-in, e.g.
# {{ OIDC_ACCESS_TOKEN = "access_token", OIDC_EMAIL = "oauth_user.email" }}.
auth_state_env = {{}}
# Refresh the tokens before a server stops (JupyterHub's refresh_pre_stop, for spawners that
# need valid tokens to stop); a user whose sign-in cannot be refreshed must sign in again to
# stop the server themselves (403); an admin's or a service's stop goes on.
refresh_pre_stop = false

{spawner}
{local}
{slurm}
{systems}
[proxy]
# managed: the hub runs nbhub-proxy itself (kept running across hub restarts);
# external: a proxy you run (nbhub-proxy or configurable-http-proxy).
kind = "{px_kind}"
# The proxy's REST API.
api_url = "{px_api_url}"
# external: the proxy's CONFIGPROXY_AUTH_TOKEN; managed: "" = generated, kept in data_dir.
auth_token = ""
# managed: the proxy command; [] = nbhub-proxy next to the nbhub binary.
command = []
# Seconds between checks that the proxy runs and has every route.
check_running_interval = {px_check}
# Stop the managed proxy when the hub stops.
cleanup = {px_cleanup}
# managed: seconds a request for /hub/ waits at the proxy while the hub restarts (it does
# not listen), then the 503 it would get at once; 0 = no wait.
hub_wait = {px_hub_wait}
# managed: requests that may wait for the hub at a time; more get the 503 at once.
hub_wait_max = {px_hub_wait_max}
# external: several proxies (behind a load balancer or a floating address), each kept with
# every route, instead of api_url: api_urls = ["http://10.0.0.1:8001", "http://10.0.0.2:8001"]
# (one auth_token for all of them).
api_urls = []

# External services with a fixed API token, e.g. an idle culler:
# [[services]]
# name = "culler"
# api_token = "a-long-random-secret"   # at least 8 characters; stored hashed
# admin = false
# url = ""                             # where it listens; routed at /services/<name>/
# display = true
# info = {{}}
# command = []                         # a managed service: the hub starts and restarts it
# environment = {{}}
# cwd = ""
# oauth_no_confirm = false

# Roles give scopes (JupyterHub's scope names) to users, groups and services:
# [[roles]]
# name = "culler-role"
# description = "cull idle servers"
# scopes = ["list:users", "read:users:activity", "read:servers", "delete:servers"]
# users = []
# groups = []
# services = ["culler"]
"#,
        bind_url = h.bind_url,
        hub_bind_url = h.hub_bind_url,
        base_url = h.base_url.as_str(),
        data_dir = h.data_dir.display(),
        db_url = h.db_url,
        cookie_max_age_days = h.cookie_max_age_days,
        api_page_default_limit = h.api_page_default_limit,
        api_page_max_limit = h.api_page_max_limit,
        log_level = h.log_level.as_str(),
        kind = a.kind.as_str(),
        password = a.password,
        admin_users = list(&a.admin_users),
        allowed_users = list(&a.allowed_users),
        allow_all = a.allow_all,
        blocked_users = list(&a.blocked_users),
        pam_service = a.pam_service,
        enable_signup = a.enable_signup,
        open_signup = a.open_signup,
        minimum_password_length = a.minimum_password_length,
        failed_login_threshold = a.failed_login_threshold,
        scope = list(&a.scope),
        username_claim = a.username_claim,
        login_service = a.login_service,
        claim_groups_key = a.claim_groups_key,
        basic_auth = a.basic_auth,
        auth_refresh_age = a.auth_refresh_age,
        hub_connect_url = h.hub_connect_url,
        allow_named_servers = h.allow_named_servers,
        named_server_limit_per_user = h.named_server_limit_per_user,
        concurrent_spawn_limit = h.concurrent_spawn_limit,
        spawn_queue_limit = h.spawn_queue_limit,
        active_server_limit = h.active_server_limit,
        slow_spawn_timeout = h.slow_spawn_timeout,
        slow_stop_timeout = h.slow_stop_timeout,
        cleanup_servers = h.cleanup_servers,
        redirect_to_server = h.redirect_to_server,
        authenticate_prometheus = h.authenticate_prometheus,
        request_header_timeout = h.request_header_timeout,
        request_body_timeout = h.request_body_timeout,
        maintenance_file = h.maintenance_file.display(),
        token_expires_in_max_seconds = h.token_expires_in_max_seconds,
        allow_origin = h.allow_origin,
        spawner = d.spawner.to_commented_toml(),
        local = d.local.to_commented_toml(),
        slurm = d.slurm.to_commented_toml(),
        systems = nbhub_spawner::commented_systems_example(),
        px_kind = "managed",
        px_api_url = px.api_url,
        px_check = px.check_running_interval,
        px_cleanup = px.cleanup,
        px_hub_wait = px.hub_wait,
        px_hub_wait_max = px.hub_wait_max,
    )
}
