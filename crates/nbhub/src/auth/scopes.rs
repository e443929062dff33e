//! JupyterHub-compatible RBAC scopes.
//!
//! Scopes are strings `name` or `name!filter=value`. Roles and tokens carry *raw* scopes, which may
//! use metascopes (`self`, `inherit`) and bare filters (`!user`, `!server`, `!service`) that refer
//! to the owner. Before any check they are *expanded*: metascopes resolved, bare filters replaced by
//! concrete values and every scope completed with its subscopes (see [`subscopes`]). A [`ScopeSet`]
//! holds such an expanded set, keyed by scope name; an unfiltered entry ([`Access::All`]) absorbs
//! every filtered entry of the same name, exactly like JupyterHub's `reduce_scopes`.
//!
//! Filter hierarchy when checking access: a `server` resource is covered by its own
//! `!server=user/name`, by `!user=user` and by `!group=g` when the user is a member of `g`; a
//! `user` resource by `!user=` and `!group=`. Group membership is asked from the caller through a
//! `groups_of(user) -> Vec<String>` callback, so this module has no database dependency.
//!
//! The semantics follow JupyterHub 5/6 `jupyterhub/scopes.py` and `jupyterhub/roles.py`.

use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

// ---------------------------------------------------------------------------------------------
// Scope definitions
// ---------------------------------------------------------------------------------------------

struct ScopeDef {
    name: &'static str,
    description: &'static str,
    subscopes: &'static [&'static str],
}

const fn def(
    name: &'static str,
    description: &'static str,
    subscopes: &'static [&'static str],
) -> ScopeDef {
    ScopeDef {
        name,
        description,
        subscopes,
    }
}

/// Every scope JupyterHub defines (6.x), with its direct subscopes.
const SCOPE_DEFS: &[ScopeDef] = &[
    def("(no_scope)", "Identify the owner of the token.", &[]),
    def("self", "Your own resources.", &[]),
    def("inherit", "Everything the token owner can access.", &[]),
    def("admin-ui", "Open the admin page.", &[]),
    def(
        "admin:users",
        "Create, modify and delete users and their authentication state (not their servers or tokens).",
        &["admin:auth_state", "users", "read:roles:users", "delete:users"],
    ),
    def("admin:auth_state", "Read a user's authentication state.", &[]),
    def(
        "users",
        "Read and modify user models (not servers, tokens or authentication state).",
        &["read:users", "list:users", "users:activity"],
    ),
    def("delete:users", "Delete users.", &[]),
    def("list:users", "List users and their names.", &["read:users:name"]),
    def(
        "read:users",
        "Read user models.",
        &["read:users:name", "read:users:groups", "read:users:activity"],
    ),
    def("read:users:name", "Read user names.", &[]),
    def("read:users:groups", "Read the groups a user belongs to.", &[]),
    def("read:users:activity", "Read when a user was last active.", &[]),
    def(
        "read:roles",
        "Read role assignments.",
        &["read:roles:users", "read:roles:services", "read:roles:groups"],
    ),
    def("read:roles:users", "Read the roles of users.", &[]),
    def("read:roles:services", "Read the roles of services.", &[]),
    def("read:roles:groups", "Read the roles of groups.", &[]),
    def(
        "users:activity",
        "Report user activity.",
        &["read:users:activity"],
    ),
    def(
        "admin:servers",
        "Read, start, stop, create and delete servers and their state.",
        &["admin:server_state", "servers"],
    ),
    def("admin:server_state", "Read and modify the state of servers.", &[]),
    def(
        "servers",
        "Start and stop servers.",
        &["read:servers", "start:servers", "delete:servers"],
    ),
    def(
        "read:servers",
        "Read server models (not their state) and user names.",
        &["read:users:name"],
    ),
    def("start:servers", "Start and edit servers.", &[]),
    def("delete:servers", "Stop and delete servers.", &[]),
    def(
        "tokens",
        "Read, create and delete tokens.",
        &["read:tokens"],
    ),
    def("read:tokens", "Read tokens.", &[]),
    def(
        "admin:groups",
        "Create, modify and delete groups.",
        &["groups", "read:roles:groups", "delete:groups"],
    ),
    def(
        "groups",
        "Read and modify groups, including their members.",
        &["read:groups", "list:groups"],
    ),
    def("list:groups", "List groups and their names.", &["read:groups:name"]),
    def("read:groups", "Read group models.", &["read:groups:name"]),
    def("read:groups:name", "Read group names.", &[]),
    def("delete:groups", "Delete groups.", &[]),
    def(
        "admin:services",
        "Create, read, modify and delete services (except those defined in the configuration).",
        &["list:services", "read:services", "read:roles:services"],
    ),
    def(
        "list:services",
        "List services and their names.",
        &["read:services:name"],
    ),
    def(
        "read:services",
        "Read service models.",
        &["read:services:name"],
    ),
    def("read:services:name", "Read service names.", &[]),
    def("read:hub", "Read detailed information about the hub.", &[]),
    def("access:servers", "Use servers through the API or a browser.", &[]),
    def("access:services", "Use services through the API or a browser.", &[]),
    def(
        "users:shares",
        "Read and revoke a user's access to shared servers.",
        &["read:users:shares"],
    ),
    def("read:users:shares", "Read the servers shared with a user.", &[]),
    def(
        "groups:shares",
        "Read and revoke a group's access to shared servers.",
        &["read:groups:shares"],
    ),
    def("read:groups:shares", "Read the servers shared with a group.", &[]),
    def("read:shares", "Read who has shared access to servers.", &[]),
    def(
        "shares",
        "Manage shared access to servers.",
        &["access:servers", "read:shares", "users:shares", "groups:shares"],
    ),
    def(
        "proxy",
        "Read the proxy's routing table and synchronise the hub with the proxy.",
        &[],
    ),
    def("shutdown", "Shut down the hub.", &[]),
    def("read:metrics", "Read Prometheus metrics.", &[]),
    // nbhub's own (docs/usage.md): not JupyterHub's, in the admin role by default.
    def(
        "read:usage",
        "Read the usage report: server hours, CPU and GPU hours per user, group, account and system.",
        &[],
    ),
    def(
        "admin:announcements",
        "Set and delete the announcements every page shows.",
        &[],
    ),
];

/// Scopes that are resolved by [`ScopeSet::expand`] rather than granted as such.
const METASCOPES: &[&str] = &["self", "inherit", "(no_scope)"];

/// What `self` stands for (each with `!user=<me>` after subscope expansion).
const SELF_SCOPES: &[&str] = &[
    "read:users",
    "users:shares",
    "read:shares",
    "users:activity",
    "servers",
    "tokens",
    "access:servers",
];

const ADMIN_ROLE: &[&str] = &[
    "admin-ui",
    "admin:users",
    "admin:servers",
    "admin:services",
    "tokens",
    "admin:groups",
    "list:services",
    "read:services",
    "read:hub",
    "proxy",
    "shutdown",
    "access:services",
    "access:servers",
    "read:roles",
    "read:metrics",
    "shares",
    "read:usage",
    "admin:announcements",
];

/// Names of JupyterHub's built-in roles.
pub const BUILTIN_ROLES: &[&str] = &["user", "admin", "server", "token"];

fn scope_def(name: &str) -> Option<&'static ScopeDef> {
    SCOPE_DEFS.iter().find(|d| d.name == name)
}

/// Is `name` a valid `custom:` scope name? Same rule as JupyterHub:
/// `custom:` then lowercase ASCII letters, digits and `-_:*`, starting with a letter or digit,
/// not ending with `-` or `:`, at least three characters after `custom:`.
fn is_valid_custom_scope(name: &str) -> bool {
    let Some(rest) = name.strip_prefix("custom:") else {
        return false;
    };
    let bytes = rest.as_bytes();
    if bytes.len() < 3 {
        return false;
    }
    let middle_ok = |b: u8| {
        b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'_' | b'-' | b'*' | b':')
    };
    let first = bytes[0];
    let last = bytes[bytes.len() - 1];
    (first.is_ascii_lowercase() || first.is_ascii_digit())
        && (last.is_ascii_lowercase() || last.is_ascii_digit() || matches!(last, b'_' | b'*'))
        && bytes.iter().all(|&b| middle_ok(b))
}

/// Is `name` (without filter) a scope name: one of JupyterHub's scopes, a metascope
/// (`self`, `inherit`, `(no_scope)`) or a well-formed `custom:` scope.
pub fn is_known_scope(name: &str) -> bool {
    scope_def(name).is_some() || is_valid_custom_scope(name)
}

/// Is `name` a metascope (`self`, `inherit`, `(no_scope)`)?
pub fn is_metascope(name: &str) -> bool {
    METASCOPES.contains(&name)
}

/// Direct subscopes of a scope (empty for unknown, custom and leaf scopes).
pub fn subscopes(name: &str) -> &'static [&'static str] {
    scope_def(name).map_or(&[], |d| d.subscopes)
}

/// All names `name` implies, itself included (transitive subscopes), in tree order.
pub fn expand_scope_name(name: &str) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    let mut stack: Vec<String> = vec![name.to_owned()];
    while let Some(n) = stack.pop() {
        if out.contains(&n) {
            continue;
        }
        for sub in subscopes(&n).iter().rev() {
            stack.push((*sub).to_owned());
        }
        out.push(n);
    }
    out
}

/// A short human description of a scope (for the token page and the OAuth authorize page).
/// Empty for unknown scopes.
pub fn scope_description(name: &str) -> &'static str {
    match scope_def(name) {
        Some(d) => d.description,
        None if is_valid_custom_scope(name) => "Custom scope.",
        None => "",
    }
}

/// Raw scopes of a built-in role: `user`, `admin`, `server`, `token`.
pub fn builtin_role_scopes(role: &str) -> Option<&'static [&'static str]> {
    match role {
        "user" => Some(&["self"]),
        "admin" => Some(ADMIN_ROLE),
        "server" => Some(&["users:activity!user", "access:servers!server"]),
        "token" => Some(&["inherit"]),
        _ => None,
    }
}

/// Description of a built-in role.
pub fn builtin_role_description(role: &str) -> Option<&'static str> {
    match role {
        "user" => Some("Standard user privileges"),
        "admin" => Some("Elevated privileges (can do anything)"),
        "server" => Some("Post activity only"),
        "token" => Some("Token with same permissions as its owner"),
        _ => None,
    }
}

/// JupyterHub's role-name rule: 3-255 characters, lowercase ASCII letters, digits and `-_~.`,
/// starting with a letter, ending with a letter or digit.
pub fn is_valid_role_name(name: &str) -> bool {
    let b = name.as_bytes();
    if b.len() < 3 || b.len() > 255 {
        return false;
    }
    let first = b[0];
    let last = b[b.len() - 1];
    first.is_ascii_lowercase()
        && (last.is_ascii_lowercase() || last.is_ascii_digit())
        && b.iter().all(|&c| {
            c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, b'-' | b'_' | b'~' | b'.')
        })
}

// ---------------------------------------------------------------------------------------------
// Filters, resources, owners, errors
// ---------------------------------------------------------------------------------------------

/// A concrete scope filter. Displayed without the leading `!`: `user=alice`, `server=alice/`
/// (default server: empty server name), `server=alice/foo`, `group=g`, `service=s`.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Filter {
    User(String),
    Server { user: String, server: String },
    Group(String),
    Service(String),
}

impl Filter {
    /// The filter kind: `user`, `server`, `group` or `service`.
    pub fn kind(&self) -> &'static str {
        match self {
            Filter::User(_) => "user",
            Filter::Server { .. } => "server",
            Filter::Group(_) => "group",
            Filter::Service(_) => "service",
        }
    }

    /// Parse a concrete filter, without the leading `!` (`user=alice`, `server=alice/foo`, …).
    /// `scope` is only used in error messages.
    fn parse_in(filter: &str, scope: &str) -> Result<Filter, ScopeError> {
        let Some((kind, value)) = filter.split_once('=') else {
            return Err(match filter {
                "user" | "server" | "service" => ScopeError::BareFilter {
                    scope: scope.to_owned(),
                },
                _ => ScopeError::UnknownFilter {
                    scope: scope.to_owned(),
                    filter: filter.to_owned(),
                },
            });
        };
        if !matches!(kind, "user" | "server" | "group" | "service") {
            return Err(ScopeError::UnknownFilter {
                scope: scope.to_owned(),
                filter: filter.to_owned(),
            });
        }
        if value.is_empty() {
            return Err(ScopeError::EmptyFilterValue {
                scope: scope.to_owned(),
                kind: kind.to_owned(),
            });
        }
        Ok(match kind {
            "user" => Filter::User(value.to_owned()),
            "group" => Filter::Group(value.to_owned()),
            "service" => Filter::Service(value.to_owned()),
            _ => match value.split_once('/') {
                Some((user, server)) if !user.is_empty() => Filter::Server {
                    user: user.to_owned(),
                    server: server.to_owned(),
                },
                _ => {
                    return Err(ScopeError::BadServerFilter {
                        scope: scope.to_owned(),
                    })
                }
            },
        })
    }

    /// Parse a concrete filter, with or without the leading `!`.
    pub fn parse(filter: &str) -> Result<Filter, ScopeError> {
        let f = filter.strip_prefix('!').unwrap_or(filter);
        Filter::parse_in(f, filter)
    }
}

impl fmt::Display for Filter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Filter::User(u) => write!(f, "user={u}"),
            Filter::Server { user, server } => write!(f, "server={user}/{server}"),
            Filter::Group(g) => write!(f, "group={g}"),
            Filter::Service(s) => write!(f, "service={s}"),
        }
    }
}

/// A resource being accessed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Resource<'a> {
    User(&'a str),
    /// A server; `server` is `""` for the default server.
    Server {
        user: &'a str,
        server: &'a str,
    },
    Group(&'a str),
    Service(&'a str),
    /// For scopes with no resource (read:hub, proxy, shutdown, …), and for "unrestricted" checks.
    Global,
}

/// The owner of a role or token: resolves `self`, `!user` and `!service`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Owner<'a> {
    User { name: &'a str },
    Service { name: &'a str },
}

/// Errors of scope validation. Messages are meant to be shown to people (API 400s, config errors).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ScopeError {
    #[error("unknown scope \"{0}\"")]
    UnknownScope(String),
    #[error("the draft scope \"all\" is now called \"inherit\"")]
    AllIsNowInherit,
    #[error(
        "invalid custom scope \"{0}\": custom scopes are \"custom:\" followed by lowercase letters, \
         digits and -_:* (starting with a letter or digit, not ending with - or :)"
    )]
    InvalidCustomScope(String),
    #[error(
        "unknown filter \"!{filter}\" in scope \"{scope}\"; filters are !user=<name>, \
         !server=<user>/<server>, !group=<name>, !service=<name> (and the bare forms !user, \
         !server, !service in role and token definitions)"
    )]
    UnknownFilter { scope: String, filter: String },
    #[error("empty value for the {kind} filter in scope \"{scope}\"")]
    EmptyFilterValue { scope: String, kind: String },
    #[error(
        "invalid server filter in scope \"{scope}\": it must be !server=<user>/<server name>, \
         e.g. !server=alice/ for alice's default server"
    )]
    BadServerFilter { scope: String },
    #[error("the metascope \"{scope}\" cannot have a filter")]
    FilteredMetascope { scope: String },
    #[error(
        "scope \"{scope}\" has a filter without a value; expanded scopes need a concrete value \
         (e.g. !user=alice)"
    )]
    BareFilter { scope: String },
}

/// Split `name!filter` into (`name`, `Some(filter)`) at the first `!`.
fn split_scope(raw: &str) -> (&str, Option<&str>) {
    match raw.split_once('!') {
        Some((name, filter)) => (name, Some(filter)),
        None => (raw, None),
    }
}

fn check_name(name: &str) -> Result<(), ScopeError> {
    if is_known_scope(name) {
        Ok(())
    } else if name == "all" {
        Err(ScopeError::AllIsNowInherit)
    } else if name.starts_with("custom:") {
        Err(ScopeError::InvalidCustomScope(name.to_owned()))
    } else {
        Err(ScopeError::UnknownScope(name.to_owned()))
    }
}

/// Validate a raw scope as found in role definitions and token requests:
/// `name`, `name!<kind>=<value>` or `name!user` / `name!server` / `name!service` (the bare forms,
/// meaning "the owner"). A bare `!group` is not allowed. Any filter is accepted on any scope,
/// as in JupyterHub, but metascopes take none.
pub fn validate_scope(raw: &str) -> Result<(), ScopeError> {
    let (name, filter) = split_scope(raw);
    check_name(name)?;
    match filter {
        None => Ok(()),
        Some(_) if is_metascope(name) => Err(ScopeError::FilteredMetascope {
            scope: raw.to_owned(),
        }),
        Some("user" | "server" | "service") => Ok(()),
        Some(f) => Filter::parse_in(f, raw).map(|_| ()),
    }
}

/// Does a list of raw scopes contain the `inherit` metascope?
pub fn contains_inherit<S: AsRef<str>>(raw: &[S]) -> bool {
    raw.iter().any(|s| s.as_ref() == "inherit")
}

/// The access scope of a server: `access:servers!server=<user>/<server>` (server `""` = default).
pub fn server_access_scope(user: &str, server: &str) -> String {
    format!("access:servers!server={user}/{server}")
}

/// The access scope of a service: `access:services!service=<name>`.
pub fn service_access_scope(service: &str) -> String {
    format!("access:services!service={service}")
}

/// The identify scopes every token gets for `GET /hub/api/user`:
/// users: `read:users:name!user=<me>`, `read:users:groups!user=<me>`;
/// services: `read:services:name!service=<me>`.
pub fn identify_scopes(owner: &Owner) -> ScopeSet {
    let mut set = ScopeSet::default();
    match *owner {
        Owner::User { name } => {
            set.add("read:users:name", Some(Filter::User(name.to_owned())));
            set.add("read:users:groups", Some(Filter::User(name.to_owned())));
        }
        Owner::Service { name } => {
            set.add("read:services:name", Some(Filter::Service(name.to_owned())));
        }
    }
    set
}

// ---------------------------------------------------------------------------------------------
// Access and ScopeSet
// ---------------------------------------------------------------------------------------------

/// How a scope is held: for everything, or only for the resources matching some filters.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Access {
    All,
    Filters(BTreeSet<Filter>),
}

/// Group-membership lookups memoised for the duration of one operation.
struct Groups<'a> {
    groups_of: &'a dyn Fn(&str) -> Vec<String>,
    cache: RefCell<BTreeMap<String, Vec<String>>>,
}

impl<'a> Groups<'a> {
    fn new(groups_of: &'a dyn Fn(&str) -> Vec<String>) -> Self {
        Groups {
            groups_of,
            cache: RefCell::new(BTreeMap::new()),
        }
    }

    /// Is `user` a member of any group named by a `!group=` filter in `filters`?
    fn user_in_any(&self, user: &str, filters: &BTreeSet<Filter>) -> bool {
        let mut wanted = filters.iter().filter_map(|f| match f {
            Filter::Group(g) => Some(g.as_str()),
            _ => None,
        });
        let Some(first) = wanted.next() else {
            return false;
        };
        let mut cache = self.cache.borrow_mut();
        let groups = cache
            .entry(user.to_owned())
            .or_insert_with(|| (self.groups_of)(user));
        std::iter::once(first)
            .chain(wanted)
            .any(|g| groups.iter().any(|have| have == g))
    }
}

/// Does the filter set `have` cover the filter `f`? Identical filters; `!user=u` covers
/// `!server=u/*`; `!group=g` covers `!user=u` and `!server=u/*` when `u` is in `g`.
fn filters_cover(have: &BTreeSet<Filter>, f: &Filter, groups: &Groups) -> bool {
    if have.contains(f) {
        return true;
    }
    match f {
        Filter::Server { user, .. } => {
            have.iter()
                .any(|h| matches!(h, Filter::User(u) if u == user))
                || groups.user_in_any(user, have)
        }
        Filter::User(user) => groups.user_in_any(user, have),
        Filter::Group(_) | Filter::Service(_) => false,
    }
}

impl Access {
    /// Is this access unfiltered?
    pub fn is_all(&self) -> bool {
        matches!(self, Access::All)
    }

    /// The filters, if filtered.
    pub fn filters(&self) -> Option<&BTreeSet<Filter>> {
        match self {
            Access::All => None,
            Access::Filters(f) => Some(f),
        }
    }

    /// Does this access cover `resource`? (For filtering list endpoints item by item.)
    /// Filtered access never covers [`Resource::Global`].
    pub fn allows(&self, resource: &Resource, groups_of: &dyn Fn(&str) -> Vec<String>) -> bool {
        self.allows_with(resource, &Groups::new(groups_of))
    }

    fn allows_with(&self, resource: &Resource, groups: &Groups) -> bool {
        let fs = match self {
            Access::All => return true,
            Access::Filters(fs) => fs,
        };
        match *resource {
            Resource::Global => false,
            Resource::User(name) => {
                fs.iter().any(|f| matches!(f, Filter::User(u) if u == name))
                    || groups.user_in_any(name, fs)
            }
            Resource::Server { user, server } => {
                fs.iter().any(|f| match f {
                    Filter::Server { user: u, server: s } => u == user && s == server,
                    Filter::User(u) => u == user,
                    _ => false,
                }) || groups.user_in_any(user, fs)
            }
            Resource::Group(name) => fs
                .iter()
                .any(|f| matches!(f, Filter::Group(g) if g == name)),
            Resource::Service(name) => fs
                .iter()
                .any(|f| matches!(f, Filter::Service(s) if s == name)),
        }
    }
}

/// A set of expanded scopes: scope name → [`Access`]. Always reduced (an unfiltered entry
/// absorbs the filtered ones) and always complete (every scope comes with its subscopes).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ScopeSet {
    scopes: BTreeMap<String, Access>,
}

impl ScopeSet {
    /// An empty set.
    pub fn new() -> Self {
        Self::default()
    }

    /// Expand raw role/token scopes for `owner`.
    ///
    /// * `self`: for a user, `read:users`, `users:shares`, `read:shares`, `users:activity`,
    ///   `servers`, `tokens`, `access:servers`, all `!user=<me>` (with subscopes); for a service,
    ///   nothing (services are identified by [`identify_scopes`], which callers add).
    /// * `inherit`: the union of `inherit` if given (the owner's full expanded set); ignored (with
    ///   a warning) when `None`. See also [`contains_inherit`] and [`token_scopes`].
    /// * `(no_scope)`: nothing (identify only).
    /// * bare `!user` ⇒ `!user=<owner>` (user owners only), `!service` ⇒ `!service=<owner>`
    ///   (service owners only), `!server` ⇒ `!server=<user>/<server>` from `owner_server` (a
    ///   server's own/OAuth token). A bare filter with nothing to resolve it is dropped (with a
    ///   warning), like JupyterHub does: it never widens to an unfiltered scope.
    /// * every scope is completed with its subscopes; with a `!server=` filter, the `read:users*`
    ///   subscopes are left out (JupyterHub: `read:servers!server=x` does not give
    ///   `read:users:name!server=x`).
    ///
    /// Errors on unknown scopes and malformed filters (see [`validate_scope`]).
    pub fn expand<S: AsRef<str>>(
        raw: &[S],
        owner: &Owner,
        owner_server: Option<(&str, &str)>,
        inherit: Option<&ScopeSet>,
    ) -> Result<ScopeSet, ScopeError> {
        let mut set = ScopeSet::default();
        for raw_scope in raw {
            let raw_scope = raw_scope.as_ref();
            validate_scope(raw_scope)?;
            let (name, filter) = split_scope(raw_scope);
            match name {
                "inherit" => match inherit {
                    Some(inherited) => set.union(inherited),
                    None => tracing::warn!("not expanding 'inherit' without the owner's scopes"),
                },
                "self" => match *owner {
                    Owner::User { name: me } => {
                        for s in SELF_SCOPES {
                            set.add(s, Some(Filter::User(me.to_owned())));
                        }
                    }
                    Owner::Service { .. } => {}
                },
                "(no_scope)" => {}
                _ => {
                    let filter = match filter {
                        None => None,
                        Some("user") => match *owner {
                            Owner::User { name: me } => Some(Filter::User(me.to_owned())),
                            Owner::Service { .. } => {
                                tracing::warn!("not expanding {raw_scope}: owner is not a user");
                                continue;
                            }
                        },
                        Some("service") => match *owner {
                            Owner::Service { name: me } => Some(Filter::Service(me.to_owned())),
                            Owner::User { .. } => {
                                tracing::warn!("not expanding {raw_scope}: owner is not a service");
                                continue;
                            }
                        },
                        Some("server") => match owner_server {
                            Some((user, server)) => Some(Filter::Server {
                                user: user.to_owned(),
                                server: server.to_owned(),
                            }),
                            None => {
                                tracing::warn!("not expanding {raw_scope}: no owning server");
                                continue;
                            }
                        },
                        Some(f) => Some(Filter::parse_in(f, raw_scope)?),
                    };
                    set.add(name, filter);
                }
            }
        }
        Ok(set)
    }

    /// Parse already expanded scope strings (concrete filters only, no metascopes), e.g. from the
    /// database or `JUPYTERHUB_OAUTH_ACCESS_SCOPES`. Subscopes are added.
    pub fn from_expanded<S: AsRef<str>>(scopes: &[S]) -> Result<ScopeSet, ScopeError> {
        let mut set = ScopeSet::default();
        for s in scopes {
            let s = s.as_ref();
            let (name, filter) = split_scope(s);
            check_name(name)?;
            if is_metascope(name) {
                return Err(ScopeError::UnknownScope(s.to_owned()));
            }
            let filter = filter.map(|f| Filter::parse_in(f, s)).transpose()?;
            set.add(name, filter);
        }
        Ok(set)
    }

    /// Add one scope (with its subscopes). `None` = unfiltered. Metascopes are ignored (use
    /// [`ScopeSet::expand`]); unknown names are stored as they are, without subscopes.
    pub fn add(&mut self, scope: &str, filter: Option<Filter>) {
        if is_metascope(scope) {
            tracing::warn!("ignoring metascope {scope} in ScopeSet::add");
            return;
        }
        let server_filter = matches!(filter, Some(Filter::Server { .. }));
        for name in expand_scope_name(scope) {
            if server_filter && name.starts_with("read:user") {
                continue;
            }
            self.insert_one(name, filter.clone());
        }
    }

    fn insert_one(&mut self, name: String, filter: Option<Filter>) {
        match filter {
            None => {
                self.scopes.insert(name, Access::All);
            }
            Some(f) => match self.scopes.entry(name) {
                std::collections::btree_map::Entry::Vacant(e) => {
                    e.insert(Access::Filters(BTreeSet::from([f])));
                }
                std::collections::btree_map::Entry::Occupied(mut e) => {
                    if let Access::Filters(fs) = e.get_mut() {
                        fs.insert(f);
                    }
                }
            },
        }
    }

    /// Add everything in `other`.
    pub fn union(&mut self, other: &ScopeSet) {
        for (name, access) in &other.scopes {
            match access {
                Access::All => {
                    self.scopes.insert(name.clone(), Access::All);
                }
                Access::Filters(fs) => {
                    for f in fs {
                        self.insert_one(name.clone(), Some(f.clone()));
                    }
                }
            }
        }
    }

    /// Intersection, as JupyterHub's `_intersect_expanded_scopes` with group resolution: for each
    /// scope held by both, an unfiltered side yields the other side; otherwise a filter survives
    /// if the other side covers it (identical filter; `!user=u` covers `!server=u/…`; `!group=g`
    /// covers `!user=u` and `!server=u/…` for members `u` of `g`), which keeps the narrower
    /// filter of each covered pair.
    pub fn intersect(&self, other: &ScopeSet, groups_of: &dyn Fn(&str) -> Vec<String>) -> ScopeSet {
        let groups = Groups::new(groups_of);
        let mut out = ScopeSet::default();
        for (name, a) in &self.scopes {
            let Some(b) = other.scopes.get(name) else {
                continue;
            };
            let access = match (a, b) {
                (Access::All, x) | (x, Access::All) => x.clone(),
                (Access::Filters(fa), Access::Filters(fb)) => {
                    let mut common: BTreeSet<Filter> = fa
                        .iter()
                        .filter(|f| filters_cover(fb, f, &groups))
                        .cloned()
                        .collect();
                    common.extend(fb.iter().filter(|f| filters_cover(fa, f, &groups)).cloned());
                    if common.is_empty() {
                        continue;
                    }
                    Access::Filters(common)
                }
            };
            out.scopes.insert(name.clone(), access);
        }
        out
    }

    /// The scopes of `self` not covered by `owner` (for refusing to issue a token with more
    /// permissions than its owner: JupyterHub's "Not assigning requested scopes …").
    /// Empty when `self` ⊆ `owner`.
    pub fn excess_over(
        &self,
        owner: &ScopeSet,
        groups_of: &dyn Fn(&str) -> Vec<String>,
    ) -> Vec<String> {
        let kept: BTreeSet<String> = self
            .intersect(owner, groups_of)
            .to_strings()
            .into_iter()
            .collect();
        self.to_strings()
            .into_iter()
            .filter(|s| !kept.contains(s))
            .collect()
    }

    /// Does this set grant `scope` on `resource`? Honours server ⊂ user ⊂ group. For
    /// [`Resource::Global`] only an unfiltered entry counts.
    pub fn allows(
        &self,
        scope: &str,
        resource: &Resource,
        groups_of: &dyn Fn(&str) -> Vec<String>,
    ) -> bool {
        self.scopes
            .get(scope)
            .is_some_and(|a| a.allows_with(resource, &Groups::new(groups_of)))
    }

    /// Is `scope` held at all, for some resource? With [`ScopeSet::allows`] this tells a 403
    /// ("Action is not authorized with current scopes; requires any of [...]": none of the
    /// required scopes is held) from a 404 ("No access to resources or resources not found":
    /// held, but only for other resources).
    pub fn has_any(&self, scope: &str) -> bool {
        self.scopes.contains_key(scope)
    }

    /// How `scope` is held, for list endpoints: `None` = not held, `Some(Access::All)` = all,
    /// `Some(Access::Filters(..))` = only matching items (use [`Access::allows`] per item).
    pub fn access(&self, scope: &str) -> Option<&Access> {
        self.scopes.get(scope)
    }

    /// Fully expanded, concrete, sorted strings, e.g.
    /// `["access:servers!server=alice/", "read:users:name!user=alice"]`. Never bare filters.
    pub fn to_strings(&self) -> Vec<String> {
        let mut out = Vec::new();
        for (name, access) in &self.scopes {
            match access {
                Access::All => out.push(name.clone()),
                Access::Filters(fs) => out.extend(fs.iter().map(|f| format!("{name}!{f}"))),
            }
        }
        out.sort();
        out
    }

    /// The scope names held (sorted).
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.scopes.keys().map(String::as_str)
    }

    /// (name, access) pairs, sorted by name.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &Access)> {
        self.scopes.iter().map(|(k, v)| (k.as_str(), v))
    }

    pub fn is_empty(&self) -> bool {
        self.scopes.is_empty()
    }

    /// Number of scope names held.
    pub fn len(&self) -> usize {
        self.scopes.len()
    }
}

/// Serialized as the sorted list of [`ScopeSet::to_strings`].
impl serde::Serialize for ScopeSet {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_seq(self.to_strings())
    }
}

/// Effective scopes of a token, as JupyterHub's `get_scopes_for(token)`:
///
/// * `inherit` among the token's raw scopes ⇒ exactly `owner_scopes`;
/// * otherwise expand(token raw scopes) ∪ `client_access` (the access scope of the issuing OAuth
///   client, e.g. [`server_access_scope`]; `None` for plain API tokens) ∪ [`identify_scopes`],
///   intersected with `owner_scopes`.
///
/// `owner_scopes` is the owner's full expanded set (roles of the owner and, for users, of their
/// groups, plus shares). `owner_server` resolves bare `!server` (the server whose OAuth client
/// issued the token).
pub fn token_scopes<S: AsRef<str>>(
    raw: &[S],
    owner: &Owner,
    owner_server: Option<(&str, &str)>,
    client_access: Option<&ScopeSet>,
    owner_scopes: &ScopeSet,
    groups_of: &dyn Fn(&str) -> Vec<String>,
) -> Result<ScopeSet, ScopeError> {
    if contains_inherit(raw) {
        for s in raw {
            validate_scope(s.as_ref())?;
        }
        return Ok(owner_scopes.clone());
    }
    let mut token = ScopeSet::expand(raw, owner, owner_server, None)?;
    if let Some(access) = client_access {
        token.union(access);
    }
    token.union(&identify_scopes(owner));
    Ok(token.intersect(owner_scopes, groups_of))
}

// ---------------------------------------------------------------------------------------------
// Tests
// ---------------------------------------------------------------------------------------------

#[cfg(test)]
mod tests {
    use super::*;

    fn no_groups(_: &str) -> Vec<String> {
        Vec::new()
    }

    fn groups(user: &str) -> Vec<String> {
        match user {
            "alice" => vec!["physics".into(), "staff".into()],
            "bob" => vec!["physics".into()],
            _ => vec![],
        }
    }

    fn alice() -> Owner<'static> {
        Owner::User { name: "alice" }
    }

    fn s(v: &[&str]) -> Vec<String> {
        v.iter().map(|x| (*x).to_owned()).collect()
    }

    fn expand_user(raw: &[&str], user: &str) -> ScopeSet {
        ScopeSet::expand(&s(raw), &Owner::User { name: user }, None, None).unwrap()
    }

    #[test]
    fn definitions_are_consistent() {
        for d in SCOPE_DEFS {
            for sub in d.subscopes {
                assert!(
                    scope_def(sub).is_some(),
                    "{} has unknown subscope {sub}",
                    d.name
                );
            }
        }
        for role in BUILTIN_ROLES {
            for sc in builtin_role_scopes(role).unwrap() {
                validate_scope(sc).unwrap();
            }
            assert!(builtin_role_description(role).is_some());
        }
        for sc in SELF_SCOPES {
            assert!(scope_def(sc).is_some());
        }
        let mut names: Vec<_> = SCOPE_DEFS.iter().map(|d| d.name).collect();
        names.sort();
        names.dedup();
        assert_eq!(names.len(), SCOPE_DEFS.len(), "duplicate scope definition");
        assert!(SCOPE_DEFS.iter().all(|d| !d.description.is_empty()));
    }

    #[test]
    fn subscope_tree() {
        let mut e = expand_scope_name("admin:users");
        e.sort();
        assert_eq!(
            e,
            s(&[
                "admin:auth_state",
                "admin:users",
                "delete:users",
                "list:users",
                "read:roles:users",
                "read:users",
                "read:users:activity",
                "read:users:groups",
                "read:users:name",
                "users",
                "users:activity",
            ])
        );
        let mut e = expand_scope_name("admin:servers");
        e.sort();
        assert_eq!(
            e,
            s(&[
                "admin:server_state",
                "admin:servers",
                "delete:servers",
                "read:servers",
                "read:users:name",
                "servers",
                "start:servers",
            ])
        );
        assert!(!e.contains(&"access:servers".to_owned()));
        let mut e = expand_scope_name("admin:groups");
        e.sort();
        assert_eq!(
            e,
            s(&[
                "admin:groups",
                "delete:groups",
                "groups",
                "list:groups",
                "read:groups",
                "read:groups:name",
                "read:roles:groups",
            ])
        );
        let mut e = expand_scope_name("shares");
        e.sort();
        assert_eq!(
            e,
            s(&[
                "access:servers",
                "groups:shares",
                "read:groups:shares",
                "read:shares",
                "read:users:shares",
                "shares",
                "users:shares",
            ])
        );
        let mut e = expand_scope_name("admin:services");
        e.sort();
        assert_eq!(
            e,
            s(&[
                "admin:services",
                "list:services",
                "read:roles:services",
                "read:services",
                "read:services:name",
            ])
        );
        assert_eq!(subscopes("list:users"), &["read:users:name"]);
        assert_eq!(subscopes("read:servers"), &["read:users:name"]);
        assert_eq!(subscopes("list:groups"), &["read:groups:name"]);
        assert_eq!(subscopes("read:groups"), &["read:groups:name"]);
        assert_eq!(subscopes("users:activity"), &["read:users:activity"]);
        assert_eq!(subscopes("tokens"), &["read:tokens"]);
        assert_eq!(
            subscopes("read:roles"),
            &[
                "read:roles:users",
                "read:roles:services",
                "read:roles:groups"
            ]
        );
        assert_eq!(subscopes("custom:foo:bar"), &[] as &[&str]);
        assert_eq!(expand_scope_name("read:hub"), s(&["read:hub"]));
    }

    #[test]
    fn user_role_expands_self() {
        let set =
            ScopeSet::expand(builtin_role_scopes("user").unwrap(), &alice(), None, None).unwrap();
        assert_eq!(
            set.to_strings(),
            s(&[
                "access:servers!user=alice",
                "delete:servers!user=alice",
                "read:servers!user=alice",
                "read:shares!user=alice",
                "read:tokens!user=alice",
                "read:users!user=alice",
                "read:users:activity!user=alice",
                "read:users:groups!user=alice",
                "read:users:name!user=alice",
                "read:users:shares!user=alice",
                "servers!user=alice",
                "start:servers!user=alice",
                "tokens!user=alice",
                "users:activity!user=alice",
                "users:shares!user=alice",
            ])
        );
        // `self` for a service is nothing
        let svc =
            ScopeSet::expand(&["self"], &Owner::Service { name: "cull" }, None, None).unwrap();
        assert!(svc.is_empty());
    }

    #[test]
    fn admin_role_expansion() {
        let set =
            ScopeSet::expand(builtin_role_scopes("admin").unwrap(), &alice(), None, None).unwrap();
        let names: Vec<&str> = set.names().collect();
        assert_eq!(
            names,
            vec![
                "access:servers",
                "access:services",
                "admin-ui",
                "admin:announcements",
                "admin:auth_state",
                "admin:groups",
                "admin:server_state",
                "admin:servers",
                "admin:services",
                "admin:users",
                "delete:groups",
                "delete:servers",
                "delete:users",
                "groups",
                "groups:shares",
                "list:groups",
                "list:services",
                "list:users",
                "proxy",
                "read:groups",
                "read:groups:name",
                "read:groups:shares",
                "read:hub",
                "read:metrics",
                "read:roles",
                "read:roles:groups",
                "read:roles:services",
                "read:roles:users",
                "read:servers",
                "read:services",
                "read:services:name",
                "read:shares",
                "read:tokens",
                "read:usage",
                "read:users",
                "read:users:activity",
                "read:users:groups",
                "read:users:name",
                "read:users:shares",
                "servers",
                "shares",
                "shutdown",
                "start:servers",
                "tokens",
                "users",
                "users:activity",
                "users:shares",
            ]
        );
        assert!(set.iter().all(|(_, a)| a.is_all()));
        assert_eq!(set.to_strings().len(), set.len());
    }

    #[test]
    fn server_role_expansion_and_strings() {
        let raw = builtin_role_scopes("server").unwrap();
        let set = ScopeSet::expand(raw, &alice(), Some(("alice", "")), None).unwrap();
        assert_eq!(
            set.to_strings(),
            s(&[
                "access:servers!server=alice/",
                "read:users:activity!user=alice",
                "users:activity!user=alice",
            ])
        );
        let named = ScopeSet::expand(raw, &alice(), Some(("alice", "foo")), None).unwrap();
        assert!(named
            .to_strings()
            .contains(&"access:servers!server=alice/foo".to_owned()));
        // without an owning server, the bare !server is dropped: never widened
        let set = ScopeSet::expand(raw, &alice(), None, None).unwrap();
        assert_eq!(
            set.to_strings(),
            s(&[
                "read:users:activity!user=alice",
                "users:activity!user=alice"
            ])
        );
        assert!(!set.has_any("access:servers"));
    }

    #[test]
    fn token_role_and_inherit() {
        let owner = expand_user(&["self"], "alice");
        let raw = builtin_role_scopes("token").unwrap();
        assert!(contains_inherit(raw));
        let t = ScopeSet::expand(raw, &alice(), None, Some(&owner)).unwrap();
        assert_eq!(t, owner);
        // without the owner's set, inherit expands to nothing
        let t = ScopeSet::expand(raw, &alice(), None, None).unwrap();
        assert!(t.is_empty());
        // token_scopes short-circuits
        let eff = token_scopes(raw, &alice(), None, None, &owner, &no_groups).unwrap();
        assert_eq!(eff, owner);
    }

    #[test]
    fn bare_filters() {
        let set = expand_user(&["read:users!user", "tokens!user"], "bob");
        assert_eq!(
            set.to_strings(),
            s(&[
                "read:tokens!user=bob",
                "read:users!user=bob",
                "read:users:activity!user=bob",
                "read:users:groups!user=bob",
                "read:users:name!user=bob",
                "tokens!user=bob",
            ])
        );
        let svc = Owner::Service { name: "cull" };
        let set = ScopeSet::expand(
            &["access:services!service", "read:users!user", "list:users"],
            &svc,
            None,
            None,
        )
        .unwrap();
        assert_eq!(
            set.to_strings(),
            s(&[
                "access:services!service=cull",
                "list:users",
                "read:users:name"
            ])
        );
        // !service for a user owner is dropped
        assert!(expand_user(&["access:services!service"], "bob").is_empty());
        // no output string ever has a bare filter
        for x in set.to_strings() {
            if let Some((_, f)) = x.split_once('!') {
                assert!(f.contains('='), "{x}");
            }
        }
    }

    #[test]
    fn server_filter_skips_read_users_subscopes() {
        let set = expand_user(&["read:servers!server=alice/foo"], "x");
        assert_eq!(set.to_strings(), s(&["read:servers!server=alice/foo"]));
        let set = expand_user(&["servers!server=alice/"], "x");
        assert_eq!(
            set.to_strings(),
            s(&[
                "delete:servers!server=alice/",
                "read:servers!server=alice/",
                "servers!server=alice/",
                "start:servers!server=alice/",
            ])
        );
        // but a user filter keeps them
        let set = expand_user(&["read:servers!user=alice"], "x");
        assert_eq!(
            set.to_strings(),
            s(&["read:servers!user=alice", "read:users:name!user=alice"])
        );
    }

    #[test]
    fn unfiltered_absorbs_filtered() {
        let set = expand_user(&["read:users!user=bob", "list:users"], "x");
        // read:users:name is unfiltered (from list:users), the rest filtered
        assert_eq!(set.access("read:users:name"), Some(&Access::All));
        assert!(set.access("read:users:groups").is_some_and(|a| !a.is_all()));
        let mut a = expand_user(&["access:servers!user=bob"], "x");
        a.union(&expand_user(&["access:servers"], "x"));
        assert_eq!(a.to_strings(), s(&["access:servers"]));
        let mut b = expand_user(&["access:servers"], "x");
        b.add("access:servers", Some(Filter::User("bob".into())));
        assert_eq!(b.to_strings(), s(&["access:servers"]));
    }

    #[test]
    fn concrete_filters_and_union() {
        let mut set = expand_user(
            &[
                "read:groups!group=physics",
                "access:services!service=grader",
                "access:servers!server=bob/",
            ],
            "x",
        );
        set.union(&expand_user(&["access:servers!server=carol/nb"], "x"));
        assert_eq!(
            set.to_strings(),
            s(&[
                "access:servers!server=bob/",
                "access:servers!server=carol/nb",
                "access:services!service=grader",
                "read:groups!group=physics",
                "read:groups:name!group=physics",
            ])
        );
    }

    #[test]
    fn intersect_user_token_with_owner() {
        let owner = expand_user(&["self"], "alice");
        let token = expand_user(&["read:users!user=alice"], "alice");
        let i = token.intersect(&owner, &no_groups);
        assert_eq!(i, token);
        // a token asking for more than the owner has is cut down
        let token = expand_user(
            &["read:users", "admin:users", "read:users!user=bob"],
            "alice",
        );
        let i = token.intersect(&owner, &no_groups);
        assert_eq!(
            i.to_strings(),
            s(&[
                "read:users!user=alice",
                "read:users:activity!user=alice",
                "read:users:groups!user=alice",
                "read:users:name!user=alice",
                "users:activity!user=alice",
            ])
        );
        let excess = token.excess_over(&owner, &no_groups);
        assert!(excess.contains(&"admin:users".to_owned()));
        assert!(excess.contains(&"read:users".to_owned()));
        assert!(expand_user(&["read:users!user=alice"], "alice")
            .excess_over(&owner, &no_groups)
            .is_empty());
        // symmetric
        assert_eq!(owner.intersect(&token, &no_groups), i);
    }

    #[test]
    fn intersect_admin_narrowed() {
        let admin =
            ScopeSet::expand(builtin_role_scopes("admin").unwrap(), &alice(), None, None).unwrap();
        let token = expand_user(&["read:users:name", "access:servers!server=bob/"], "alice");
        let i = token.intersect(&admin, &no_groups);
        assert_eq!(i, token);
        let i = admin.intersect(&token, &no_groups);
        assert_eq!(
            i.to_strings(),
            s(&["access:servers!server=bob/", "read:users:name"])
        );
    }

    #[test]
    fn intersect_hierarchy() {
        // !user=u covers !server=u/*, the narrower survives
        let a = expand_user(&["access:servers!user=alice"], "x");
        let b = expand_user(
            &["access:servers!server=alice/", "access:servers!server=bob/"],
            "x",
        );
        assert_eq!(
            a.intersect(&b, &no_groups).to_strings(),
            s(&["access:servers!server=alice/"])
        );
        assert_eq!(
            b.intersect(&a, &no_groups).to_strings(),
            s(&["access:servers!server=alice/"])
        );
        // group filter covers members' user and server filters
        let g = expand_user(&["access:servers!group=physics"], "x");
        let u = expand_user(
            &[
                "access:servers!user=bob",
                "access:servers!user=carol",
                "access:servers!server=alice/nb",
                "access:servers!server=dave/",
            ],
            "x",
        );
        assert_eq!(
            g.intersect(&u, &groups).to_strings(),
            s(&["access:servers!server=alice/nb", "access:servers!user=bob"])
        );
        assert_eq!(u.intersect(&g, &groups), g.intersect(&u, &groups));
        // without membership information the group covers nobody
        assert!(g.intersect(&u, &no_groups).is_empty());
        // identical group filters match; different ones don't
        let g2 = expand_user(
            &["access:servers!group=physics", "access:servers!group=bio"],
            "x",
        );
        assert_eq!(
            g.intersect(&g2, &no_groups).to_strings(),
            s(&["access:servers!group=physics"])
        );
        // disjoint scopes vanish
        let t = expand_user(&["read:hub"], "x");
        assert!(t.intersect(&g, &groups).is_empty());
    }

    #[test]
    fn token_scopes_like_jupyterhub() {
        // OAuth cookie token of alice's default server: scopes [] + access + identify
        let owner = expand_user(&["self"], "alice");
        let access = ScopeSet::from_expanded(&[server_access_scope("alice", "")]).unwrap();
        let raw: [&str; 0] = [];
        let t = token_scopes(
            &raw,
            &alice(),
            Some(("alice", "")),
            Some(&access),
            &owner,
            &no_groups,
        )
        .unwrap();
        assert_eq!(
            t.to_strings(),
            s(&[
                "access:servers!server=alice/",
                "read:users:groups!user=alice",
                "read:users:name!user=alice",
            ])
        );
        // The server's own token (role "server")
        let raw = builtin_role_scopes("server").unwrap();
        let t = token_scopes(raw, &alice(), Some(("alice", "")), None, &owner, &no_groups).unwrap();
        assert_eq!(
            t.to_strings(),
            s(&[
                "access:servers!server=alice/",
                "read:users:activity!user=alice",
                "read:users:groups!user=alice",
                "read:users:name!user=alice",
                "users:activity!user=alice",
            ])
        );
        // bob's OAuth token for alice's server without access: the access scope is cut
        let bob_owner = expand_user(&["self"], "bob");
        let raw: [&str; 0] = [];
        let t = token_scopes(
            &raw,
            &Owner::User { name: "bob" },
            Some(("alice", "")),
            Some(&access),
            &bob_owner,
            &no_groups,
        )
        .unwrap();
        assert!(!t.has_any("access:servers"));
        // a service without roles: identify is not in its owner scopes
        let svc = Owner::Service { name: "cull" };
        let owner = ScopeSet::expand(&["list:users", "admin:servers"], &svc, None, None).unwrap();
        let t = token_scopes(&["inherit"], &svc, None, None, &owner, &no_groups).unwrap();
        assert_eq!(t, owner);
    }

    #[test]
    fn identify() {
        assert_eq!(
            identify_scopes(&alice()).to_strings(),
            s(&["read:users:groups!user=alice", "read:users:name!user=alice"])
        );
        assert_eq!(
            identify_scopes(&Owner::Service { name: "cull" }).to_strings(),
            s(&["read:services:name!service=cull"])
        );
        assert_eq!(
            server_access_scope("alice", ""),
            "access:servers!server=alice/"
        );
        assert_eq!(
            server_access_scope("alice", "foo"),
            "access:servers!server=alice/foo"
        );
        assert_eq!(
            service_access_scope("grader"),
            "access:services!service=grader"
        );
    }

    #[test]
    fn allows_hierarchy() {
        let set = expand_user(
            &[
                "access:servers!server=alice/nb",
                "read:users!user=bob",
                "servers!group=physics",
                "read:groups!group=physics",
                "access:services!service=grader",
                "read:hub",
            ],
            "x",
        );
        let srv = |user, server| Resource::Server { user, server };
        // server filter: only that server
        assert!(set.allows("access:servers", &srv("alice", "nb"), &groups));
        assert!(!set.allows("access:servers", &srv("alice", ""), &groups));
        assert!(!set.allows("access:servers", &Resource::User("alice"), &groups));
        // user filter covers the user and all their servers
        assert!(set.allows("read:users", &Resource::User("bob"), &no_groups));
        assert!(set.allows("read:users:name", &Resource::User("bob"), &no_groups));
        assert!(!set.allows("read:users", &Resource::User("carol"), &no_groups));
        // group filter covers members and their servers
        assert!(set.allows("servers", &Resource::User("alice"), &groups));
        assert!(set.allows("start:servers", &srv("bob", "x"), &groups));
        assert!(!set.allows("start:servers", &srv("carol", ""), &groups));
        assert!(!set.allows("start:servers", &srv("bob", ""), &no_groups));
        assert!(set.allows("read:groups", &Resource::Group("physics"), &groups));
        assert!(!set.allows("read:groups", &Resource::Group("bio"), &groups));
        assert!(set.allows("access:services", &Resource::Service("grader"), &no_groups));
        assert!(!set.allows("access:services", &Resource::Service("other"), &no_groups));
        // global resources need unfiltered scopes
        assert!(set.allows("read:hub", &Resource::Global, &no_groups));
        assert!(!set.allows("read:users", &Resource::Global, &no_groups));
        assert!(!set.allows("shutdown", &Resource::Global, &no_groups));
        // unfiltered covers everything
        let all = expand_user(&["admin:users"], "x");
        assert!(all.allows("read:users", &Resource::User("anyone"), &no_groups));
        assert!(all.allows("read:users", &Resource::Global, &no_groups));
        // Access::allows for list filtering
        let a = set.access("read:users").unwrap();
        assert!(a.allows(&Resource::User("bob"), &no_groups));
        assert!(!a.allows(&Resource::User("alice"), &no_groups));
        assert!(a.filters().is_some());
    }

    #[test]
    fn allows_asks_groups_lazily() {
        let calls = std::cell::Cell::new(0);
        let counting = |u: &str| {
            calls.set(calls.get() + 1);
            groups(u)
        };
        let set = expand_user(&["read:users!user=bob"], "x");
        assert!(set.allows("read:users", &Resource::User("bob"), &counting));
        assert!(!set.allows("read:users", &Resource::User("alice"), &counting));
        assert_eq!(calls.get(), 0, "no group filter, no lookup");
    }

    #[test]
    fn has_any_vs_allows_for_403_404() {
        let set = expand_user(&["self"], "alice");
        // holds read:users for alice only: other users => 404, not 403
        assert!(set.has_any("read:users"));
        assert!(!set.allows("read:users", &Resource::User("bob"), &no_groups));
        assert!(set.allows("read:users", &Resource::User("alice"), &no_groups));
        // does not hold admin:users at all => 403
        assert!(!set.has_any("admin:users"));
        assert!(!set.allows("admin:users", &Resource::User("alice"), &no_groups));
        // list:users not held (self has no list:users) => 403 on /users
        assert_eq!(set.access("list:users"), None);
        assert!(matches!(set.access("read:users"), Some(Access::Filters(_))));
    }

    #[test]
    fn validation() {
        for ok in [
            "read:users",
            "read:users!user",
            "access:servers!server",
            "access:services!service",
            "read:users!user=alice",
            "access:servers!server=alice/",
            "access:servers!server=alice/foo",
            "read:groups!group=g",
            "access:services!service=s",
            "read:hub!user=alice",
            "self",
            "inherit",
            "custom:jupyter_server:read:contents",
            "custom:myproject:*",
            "admin-ui",
            "read:metrics",
        ] {
            validate_scope(ok).unwrap_or_else(|e| panic!("{ok}: {e}"));
        }
        let err = |x: &str| validate_scope(x).unwrap_err();
        assert_eq!(
            err("read:everything"),
            ScopeError::UnknownScope("read:everything".into())
        );
        assert_eq!(err("all"), ScopeError::AllIsNowInherit);
        assert!(matches!(
            err("custom:Foo"),
            ScopeError::InvalidCustomScope(_)
        ));
        assert!(matches!(
            err("custom:ab-"),
            ScopeError::InvalidCustomScope(_)
        ));
        assert!(matches!(
            err("read:users!group"),
            ScopeError::UnknownFilter { .. }
        ));
        assert!(matches!(
            err("read:users!host=x"),
            ScopeError::UnknownFilter { .. }
        ));
        assert!(matches!(
            err("read:users!user="),
            ScopeError::EmptyFilterValue { .. }
        ));
        assert!(matches!(
            err("access:servers!server=alice"),
            ScopeError::BadServerFilter { .. }
        ));
        assert!(matches!(
            err("access:servers!server=/x"),
            ScopeError::BadServerFilter { .. }
        ));
        assert!(matches!(
            err("self!user=alice"),
            ScopeError::FilteredMetascope { .. }
        ));
        assert!(err("read:everything")
            .to_string()
            .contains("unknown scope \"read:everything\""));
        assert!(err("access:servers!server=alice")
            .to_string()
            .contains("alice/"));
        // expand reports the first error
        assert!(ScopeSet::expand(&["read:users", "nope"], &alice(), None, None).is_err());
        // from_expanded refuses bare filters and metascopes
        assert!(matches!(
            ScopeSet::from_expanded(&["read:users!user"]),
            Err(ScopeError::BareFilter { .. })
        ));
        assert!(ScopeSet::from_expanded(&["self"]).is_err());
        assert!(is_known_scope("custom:abc"));
        assert!(!is_known_scope("custom:ab"));
        assert!(is_known_scope("(no_scope)"));
        assert!(!is_known_scope("read:users!user=x"));
    }

    #[test]
    fn filters_parse_and_display() {
        for f in [
            "user=alice",
            "server=alice/",
            "server=alice/foo",
            "group=g",
            "service=s",
        ] {
            assert_eq!(Filter::parse(f).unwrap().to_string(), f);
            assert_eq!(Filter::parse(&format!("!{f}")).unwrap().to_string(), f);
        }
        assert_eq!(
            Filter::parse("server=alice/").unwrap(),
            Filter::Server {
                user: "alice".into(),
                server: String::new()
            }
        );
        assert_eq!(Filter::parse("!group=g").unwrap().kind(), "group");
        assert!(Filter::parse("user").is_err());
    }

    #[test]
    fn custom_scopes_and_descriptions() {
        let set = expand_user(&["custom:jupyter_server:read:*!user"], "alice");
        assert_eq!(
            set.to_strings(),
            s(&["custom:jupyter_server:read:*!user=alice"])
        );
        assert!(!scope_description("read:users").is_empty());
        assert!(!scope_description("custom:abc").is_empty());
        assert_eq!(scope_description("bogus"), "");
        assert!(is_valid_role_name("my-role.1"));
        assert!(!is_valid_role_name("My-role"));
        assert!(!is_valid_role_name("ab"));
        assert!(!is_valid_role_name("role-"));
    }

    #[test]
    fn from_expanded_and_serialize() {
        let set = ScopeSet::from_expanded(&[
            "access:servers!server=alice/",
            "read:users:name!user=alice",
        ])
        .unwrap();
        assert_eq!(
            serde_json::to_value(&set).unwrap(),
            serde_json::json!(["access:servers!server=alice/", "read:users:name!user=alice"])
        );
        // the singleuser's access check: any of these grants alice's default server
        for granted in [
            "access:servers",
            "access:servers!user=alice",
            "access:servers!server=alice/",
        ] {
            let set = ScopeSet::from_expanded(&[granted]).unwrap();
            assert!(set.allows(
                "access:servers",
                &Resource::Server {
                    user: "alice",
                    server: ""
                },
                &no_groups
            ));
        }
        // metascope in add is ignored
        let mut m = ScopeSet::new();
        m.add("self", None);
        assert!(m.is_empty());
    }
}
