//! The session around the server: which software it runs with (`[[slurm.environments]]`:
//! Lmod modules, a venv or conda prefix, or a container image), what opens
//! (`[[slurm.interfaces]]`: the server's default URL) and where it starts
//! (`[[slurm.directories]]`: its root directory and the job's working directory).
//!
//! Each is a form field (`environment`, `interface`, `directory`) whose values are the
//! configured names; what reaches the job script is the configured values, each quoted by
//! [`shell_quote`], never what the user typed.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::slurm::config::{is_slurm_name, SlurmConfig};
use crate::slurm::script::shell_quote;
use crate::{Choice, FieldError, FieldKind, FormField, SpawnError, ValidatedOptions};

/// The program an environment runs: in the prefix's `bin`, on the `PATH` the modules set, or
/// on the image's `PATH`.
pub(crate) const SERVER_PROGRAM: &str = "jupyterhub-singleuser";

/// `[[slurm.environments]]`: the software a server runs with; exactly one of `modules`,
/// `prefix` and `container`.
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct EnvironmentConfig {
    /// The value of `user_options.environment`.
    pub name: String,
    /// What the form shows; `""`: the name.
    pub title: String,
    pub description: String,
    /// Lmod modules loaded (in this order) before the server starts.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub modules: Vec<String>,
    /// A venv or conda prefix: its `bin/jupyterhub-singleuser` runs, its `bin` first on `PATH`.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub prefix: String,
    /// A container image the server runs in.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub container: Option<ContainerConfig>,
    /// With `modules`: users may add modules of the system (`user_options.modules`, checked
    /// against what `module -t avail` lists there).
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub add_modules: bool,
}

/// `[slurm.environments.container]`.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ContainerConfig {
    /// The image: a file (`.sif`) or a directory (Charliecloud), or a name podman knows.
    pub image: String,
    pub runtime: ContainerRuntime,
}

/// The container runtimes the job script knows how to call.
#[derive(Clone, Copy, Debug, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum ContainerRuntime {
    Apptainer,
    Singularity,
    Charliecloud,
    Podman,
}

impl ContainerRuntime {
    /// The program the job runs.
    pub fn program(self) -> &'static str {
        match self {
            ContainerRuntime::Apptainer => "apptainer",
            ContainerRuntime::Singularity => "singularity",
            ContainerRuntime::Charliecloud => "ch-run",
            ContainerRuntime::Podman => "podman",
        }
    }
}

/// `[[slurm.interfaces]]`: what opens when the user goes to their server.
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct InterfaceConfig {
    /// The value of `user_options.interface`.
    pub name: String,
    pub title: String,
    /// The server's default URL, below its prefix: `/lab`, `/tree`, `/vscode/`.
    pub url: String,
    /// Only with these environments (the ones that provide it); empty: with any.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub environments: Vec<String>,
}

/// `[[slurm.directories]]`: where the server starts.
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct DirectoryConfig {
    /// The value of `user_options.directory`.
    pub name: String,
    pub title: String,
    /// An absolute path; `{username}`, `{home}` and `{account}` (the job's account) replaced.
    pub path: String,
}

/// The placeholders a directory's path may have.
const PATH_PLACEHOLDERS: [&str; 3] = ["{username}", "{home}", "{account}"];

/// Checks of `[slurm]`'s session keys; the message names the key.
pub(crate) fn validate_config(config: &SlurmConfig) -> Result<(), String> {
    let names = |key: &str, list: Vec<&str>| -> Result<(), String> {
        for (i, name) in list.iter().enumerate() {
            if !is_slurm_name(name) {
                return Err(format!(
                    "key `slurm.{key}[{i}].name`: '{name}' must be 1 to 64 letters, digits, '_', '-' or '.'"
                ));
            }
            if list[..i].contains(name) {
                return Err(format!(
                    "key `slurm.{key}[{i}].name`: '{name}' is already the name of another entry"
                ));
            }
        }
        Ok(())
    };
    names(
        "environments",
        config
            .environments
            .iter()
            .map(|e| e.name.as_str())
            .collect(),
    )?;
    names(
        "interfaces",
        config.interfaces.iter().map(|e| e.name.as_str()).collect(),
    )?;
    names(
        "directories",
        config.directories.iter().map(|e| e.name.as_str()).collect(),
    )?;
    for (i, e) in config.environments.iter().enumerate() {
        let key = format!("slurm.environments[{i}]");
        let kinds = usize::from(!e.modules.is_empty())
            + usize::from(!e.prefix.is_empty())
            + usize::from(e.container.is_some());
        if kinds != 1 {
            return Err(format!(
                "key `{key}`: environment '{}' needs exactly one of modules, prefix and container",
                e.name
            ));
        }
        if e.title.chars().any(char::is_control) {
            return Err(format!("key `{key}.title`: must be one line"));
        }
        if e.add_modules && e.modules.is_empty() {
            return Err(format!(
                "key `{key}.add_modules`: only an environment of modules can take more modules"
            ));
        }
        for m in &e.modules {
            if !is_module_name(m) {
                return Err(format!(
                    "key `{key}.modules`: '{m}' is not a module name (letters, digits, '_', '-', '.', '/', '+')"
                ));
            }
        }
        if !e.prefix.is_empty() && !is_plain_path(&e.prefix) {
            return Err(format!(
                "key `{key}.prefix`: '{}' must be an absolute path without control characters",
                e.prefix
            ));
        }
        if let Some(c) = &e.container {
            if c.image.is_empty() || c.image.chars().any(char::is_control) {
                return Err(format!(
                    "key `{key}.container.image`: must name an image (one line)"
                ));
            }
        }
    }
    for (i, f) in config.interfaces.iter().enumerate() {
        let key = format!("slurm.interfaces[{i}]");
        if !f.url.starts_with('/')
            || f.url.starts_with("//")
            || f.url
                .chars()
                .any(|c| c.is_control() || c.is_whitespace() || c == '\\')
        {
            return Err(format!(
                "key `{key}.url`: '{}' must be a path below the server such as /lab or /tree",
                f.url
            ));
        }
        for env in &f.environments {
            if !config.environments.iter().any(|e| &e.name == env) {
                return Err(format!(
                    "key `{key}.environments`: '{env}' is not the name of a [[slurm.environments]] entry"
                ));
            }
        }
    }
    for (i, d) in config.directories.iter().enumerate() {
        let key = format!("slurm.directories[{i}].path");
        // The path as it could be filled in (a home is absolute).
        let mut bare = d.path.replace("{home}", "/home/x");
        for p in PATH_PLACEHOLDERS {
            bare = bare.replace(p, "x");
        }
        if bare.contains(['{', '}']) {
            return Err(format!(
                "key `{key}`: '{}' may use only {}",
                d.path,
                PATH_PLACEHOLDERS.join(", ")
            ));
        }
        if !is_plain_path(&bare) {
            return Err(format!(
                "key `{key}`: '{}' must be an absolute path (or start with {{home}}), without ':' ',' or control characters",
                d.path
            ));
        }
    }
    Ok(())
}

/// An Lmod module name such as `Python/3.11.3-GCCcore-12.3.0`.
fn is_module_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 128
        && !s.starts_with('-')
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"_-./+".contains(&b))
}

/// An absolute path a container runtime's bind option can name (`:` and `,` separate its
/// parts there) and a shell word can carry.
fn is_plain_path(s: &str) -> bool {
    s.starts_with('/') && !s.chars().any(|c| c.is_control() || c == ':' || c == ',')
}

fn title_or_name<'a>(title: &'a str, name: &'a str) -> &'a str {
    if title.is_empty() {
        name
    } else {
        title
    }
}

/// What the `modules` field says: how many modules the system has, with a few examples.
fn modules_help(available: Option<&Available>) -> String {
    const WHAT: &str = "Modules of the system to load as well, separated by spaces";
    match available {
        Some(Ok(list)) => {
            let examples: Vec<&str> = list
                .iter()
                .filter(|m| m.contains('/'))
                .take(3)
                .map(String::as_str)
                .collect();
            let examples = if examples.is_empty() {
                String::new()
            } else {
                format!(", e.g. {}", examples.join(", "))
            };
            format!("{WHAT} ({} available{examples}).", list.len())
        }
        Some(Err(why)) => format!("The system's modules cannot be listed now: {why}"),
        None => format!("{WHAT}."),
    }
}

/// The form's `environment`, `interface` and `directory` fields (each only when configured).
pub(crate) fn form_fields(config: &SlurmConfig, available: Option<&Available>) -> Vec<FormField> {
    let mut fields = Vec::new();
    let select = |name: &str, label: &str, help: &str, choices: Vec<Choice>| {
        let mut field = FormField::new(name, label, FieldKind::Select { choices });
        if let FieldKind::Select { choices } = &field.kind {
            field.default = choices.first().map(|c| Value::from(c.value.clone()));
        }
        field.required = true;
        field.help = Some(help.to_owned());
        field
    };
    if !config.environments.is_empty() {
        let choices = config
            .environments
            .iter()
            .map(|e| {
                let mut c = Choice::new(&e.name, title_or_name(&e.title, &e.name));
                c.info = (!e.description.is_empty()).then(|| e.description.clone());
                c
            })
            .collect();
        fields.push(select(
            "environment",
            "Software environment",
            "The software the server runs with.",
            choices,
        ));
    }
    let adding: Vec<String> = config
        .environments
        .iter()
        .filter(|e| e.add_modules)
        .map(|e| e.name.clone())
        .collect();
    if !adding.is_empty() {
        let mut field = FormField::new(
            "modules",
            "More modules",
            FieldKind::Text {
                max_len: Some(1000),
                pattern: None,
            },
        );
        field.help = Some(modules_help(available));
        field.visible_when = Some(crate::VisibleWhen {
            field: "environment".into(),
            values: adding,
        });
        fields.push(field);
    }
    if !config.interfaces.is_empty() {
        let choices = config
            .interfaces
            .iter()
            .map(|f| {
                let mut c = Choice::new(&f.name, title_or_name(&f.title, &f.name));
                if !f.environments.is_empty() {
                    let mut data = Map::new();
                    data.insert("environments".into(), f.environments.clone().into());
                    c.data = data;
                    c.info = Some(format!("with {}", f.environments.join(", ")));
                }
                c
            })
            .collect();
        fields.push(select(
            "interface",
            "Interface",
            "What opens when you go to your server.",
            choices,
        ));
    }
    if !config.directories.is_empty() {
        let choices = config
            .directories
            .iter()
            .map(|d| {
                let mut c = Choice::new(&d.name, title_or_name(&d.title, &d.name));
                c.info = Some(d.path.clone());
                c
            })
            .collect();
        fields.push(select(
            "directory",
            "Directory",
            "Where the server starts: its file browser shows this directory.",
            choices,
        ));
    }
    fields
}

/// What the form cannot check alone: an interface limited to some environments (one that
/// was not asked for becomes the first one the environment has), and a directory whose path
/// needs an account. `options` passed the form's own checks.
pub(crate) fn validate_options(
    config: &SlurmConfig,
    submitted: &Value,
    options: &mut ValidatedOptions,
    errors: &mut Vec<FieldError>,
    available: Option<&Available>,
) {
    let environment = options.get_str("environment").map(str::to_owned);
    if let Some(text) = options.get_str("modules").map(str::to_owned) {
        let names: Vec<&str> = text
            .split(|c: char| c.is_whitespace() || c == ',')
            .filter(|m| !m.is_empty())
            .collect();
        let adds = config
            .environments
            .iter()
            .find(|e| Some(&e.name) == environment.as_ref())
            .is_some_and(|e| e.add_modules);
        let problem = match available {
            _ if names.is_empty() => None,
            _ if !adds => Some(format!(
                "environment '{}' takes no more modules",
                environment.as_deref().unwrap_or("")
            )),
            Some(Ok(list)) => names
                .iter()
                .find(|m| !list.iter().any(|a| a == *m))
                .map(|m| format!("'{m}' is not a module of this system")),
            Some(Err(why)) => Some(format!("the system's modules cannot be listed now: {why}")),
            None => Some("the system's modules cannot be listed now".into()),
        };
        match problem {
            Some(p) => errors.push(FieldError::new("modules", p)),
            None if names.is_empty() => {
                options.0.remove("modules");
            }
            None => {
                options.0.insert("modules".into(), names.into());
            }
        }
    }
    let fits = |f: &InterfaceConfig| {
        f.environments.is_empty()
            || environment
                .as_deref()
                .is_some_and(|e| f.environments.iter().any(|x| x == e))
    };
    let asked = submitted
        .get("interface")
        .is_some_and(|v| !matches!(v, Value::Null) && v.as_str() != Some(""));
    if let Some(name) = options.get_str("interface").map(str::to_owned) {
        let chosen = config.interfaces.iter().find(|f| f.name == name);
        match chosen {
            Some(f) if !fits(f) => match config.interfaces.iter().find(|f| fits(f)) {
                Some(other) if !asked => {
                    options
                        .0
                        .insert("interface".into(), other.name.clone().into());
                }
                _ => errors.push(FieldError::new(
                    "interface",
                    format!(
                        "'{name}' is not available with environment '{}' (only with {})",
                        environment.as_deref().unwrap_or(""),
                        f.environments.join(", ")
                    ),
                )),
            },
            _ => {}
        }
    }
    if let Some(d) = options
        .get_str("directory")
        .and_then(|name| config.directories.iter().find(|d| d.name == name))
    {
        if d.path.contains("{account}") && options.get_str("account").is_none_or(str::is_empty) {
            errors.push(FieldError::new(
                "directory",
                format!("'{}' is a project directory: choose an account", d.name),
            ));
        }
    }
}

/// What `module -t avail` lists on the system for a user, or why it cannot be asked.
pub(crate) type Available = Result<std::sync::Arc<Vec<String>>, String>;

/// `"modules"` as the REST API may give it (a list of names) turned into the form's text, so
/// that one check serves both.
pub(crate) fn modules_as_text(submitted: &Value) -> std::borrow::Cow<'_, Value> {
    match submitted.get("modules") {
        Some(Value::Array(items)) if items.len() != 1 && items.iter().all(Value::is_string) => {
            let mut copy = submitted.clone();
            let text: Vec<&str> = items.iter().filter_map(Value::as_str).collect();
            copy["modules"] = Value::from(text.join(" "));
            std::borrow::Cow::Owned(copy)
        }
        _ => std::borrow::Cow::Borrowed(submitted),
    }
}

/// How long a user's list of the system's modules is reused.
const MODULES_TTL: std::time::Duration = std::time::Duration::from_secs(600);

/// The shell lines that give a shell Lmod's `module` and list the modules tersely.
fn avail_script() -> String {
    format!(
        "set +u; if ! type module >/dev/null 2>&1; then for f in {}; do if [ -r \"$f\" ]; then . \"$f\"; break; fi; done; fi; module -t avail 2>&1",
        crate::slurm::setup::LMOD_INIT.join(" ")
    )
}

/// The names `module -t avail` prints: `dir:` headers skipped, a family's `name/` kept as
/// `name` (it loads the default version), marks such as `(D)` dropped.
pub(crate) fn parse_avail(out: &str) -> Vec<String> {
    let mut names: Vec<String> = out
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.ends_with(':'))
        .map(|l| {
            l.split('(')
                .next()
                .unwrap_or(l)
                .trim()
                .trim_end_matches('/')
        })
        .filter(|l| is_module_name(l))
        .map(str::to_owned)
        .collect();
    names.sort();
    names.dedup();
    names
}

/// The system's modules per user, asked (as the user, with the jobs' `MODULEPATH` and
/// `LMOD_*` variables) at most once per [`MODULES_TTL`]; one question at a time.
#[derive(Default)]
pub(crate) struct ModuleLists {
    cache: tokio::sync::Mutex<std::collections::HashMap<String, (tokio::time::Instant, Available)>>,
}

impl ModuleLists {
    pub async fn of(
        &self,
        commands: &crate::slurm::commands::Commands,
        user: &str,
        env: &std::collections::BTreeMap<String, String>,
    ) -> Available {
        let mut cache = self.cache.lock().await;
        if let Some((at, list)) = cache.get(user) {
            if at.elapsed() < MODULES_TTL {
                return list.clone();
            }
        }
        let env: std::collections::BTreeMap<String, String> = env
            .iter()
            .filter(|(k, _)| k.starts_with("MODULEPATH") || k.starts_with("LMOD_"))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        let script = avail_script();
        let list = match commands
            .program_as_user_env(user, &["/bin/bash", "-c", &script], &env)
            .await
        {
            Ok(out) if out.ok => Ok(std::sync::Arc::new(parse_avail(&out.stdout))),
            Ok(out) => Err(format!(
                "module -t avail failed: {}",
                out.stdout
                    .lines()
                    .chain(out.stderr.lines())
                    .next()
                    .unwrap_or("")
                    .trim()
            )),
            Err(e) => Err(e.to_string()),
        };
        if cache.len() > 4096 {
            cache.clear();
        }
        cache.insert(user.to_owned(), (tokio::time::Instant::now(), list.clone()));
        list
    }
}

/// The session of one start, from validated options, looked up in the config again (the last
/// guard before the job script).
#[derive(Debug, Default)]
pub(crate) struct Session<'a> {
    pub environment: Option<&'a EnvironmentConfig>,
    /// Modules the user added (an environment with `add_modules`).
    pub added_modules: Vec<String>,
    /// The server's default URL (`JUPYTERHUB_DEFAULT_URL`).
    pub default_url: Option<&'a str>,
    /// The server's root directory and the job's working directory, filled in.
    pub directory: Option<String>,
    /// The user's home, bound into a container.
    pub home: String,
}

impl<'a> Session<'a> {
    pub fn resolve(
        config: &'a SlurmConfig,
        options: &ValidatedOptions,
        username: &str,
        home: &str,
        account: Option<&str>,
    ) -> Result<Self, SpawnError> {
        let bad = |field: &str, why: String| {
            SpawnError::InvalidOptions(vec![FieldError::new(field, why)])
        };
        let pick = |field: &str| -> Result<Option<&str>, SpawnError> {
            match options.get(field) {
                None | Some(Value::Null) => Ok(None),
                Some(Value::String(s)) => Ok(Some(s.as_str())),
                Some(_) => Err(bad(field, "is not a valid value".into())),
            }
        };
        let unknown = |field: &str, name: &str| bad(field, format!("'{name}' is not configured"));
        let environment = match pick("environment")? {
            None => None,
            Some(n) => Some(
                config
                    .environments
                    .iter()
                    .find(|e| e.name == n)
                    .ok_or_else(|| unknown("environment", n))?,
            ),
        };
        let added_modules = match options.get("modules") {
            None | Some(Value::Null) => Vec::new(),
            Some(Value::Array(items)) if environment.is_some_and(|e| e.add_modules) => items
                .iter()
                .map(|m| match m.as_str() {
                    Some(m) if is_module_name(m) => Ok(m.to_owned()),
                    _ => Err(bad("modules", "is not a list of module names".into())),
                })
                .collect::<Result<_, _>>()?,
            Some(_) => return Err(bad("modules", "are not taken by this environment".into())),
        };
        let default_url = match pick("interface")? {
            None => None,
            Some(n) => Some(
                config
                    .interfaces
                    .iter()
                    .find(|f| f.name == n)
                    .ok_or_else(|| unknown("interface", n))?
                    .url
                    .as_str(),
            ),
        };
        let directory = match pick("directory")? {
            None => None,
            Some(n) => {
                let d = config
                    .directories
                    .iter()
                    .find(|d| d.name == n)
                    .ok_or_else(|| unknown("directory", n))?;
                let path = d
                    .path
                    .replace("{username}", username)
                    .replace("{home}", home.trim_end_matches('/'))
                    .replace("{account}", account.unwrap_or(""));
                if !is_plain_path(&path) {
                    return Err(bad("directory", format!("'{path}' is not a usable path")));
                }
                Some(path)
            }
        };
        Ok(Self {
            environment,
            added_modules,
            default_url,
            directory,
            home: home.to_owned(),
        })
    }

    /// The variables the server reads: its default URL and root directory (over `[spawner]
    /// default_url` and `notebook_dir`).
    pub fn apply_env(&self, env: &mut std::collections::BTreeMap<String, String>) {
        if let Some(url) = self.default_url {
            env.insert("JUPYTERHUB_DEFAULT_URL".into(), url.to_owned());
        }
        if let Some(dir) = &self.directory {
            env.insert("JUPYTERHUB_ROOT_DIR".into(), dir.clone());
        }
    }

    /// The job script's lines before the server starts: enter the directory (as the user:
    /// one they cannot enter ends the job with a message that names it), load the modules or
    /// put the prefix first on `PATH`. Each failure prints a line starting `nbhub: error: `,
    /// which the hub shows first when the job ends.
    pub fn setup_lines(&self) -> String {
        let mut out = String::new();
        if let Some(dir) = &self.directory {
            out.push_str(&format!(
                "# The directory the server starts in, entered as the user.\n\
                 NBHUB_DIR={dir}\n\
                 cd -- \"$NBHUB_DIR\" || {{ echo \"nbhub: error: cannot enter directory $NBHUB_DIR as $(id -un)\"; exit 1; }}\n",
                dir = shell_quote(dir)
            ));
        }
        let Some(env) = self.environment else {
            return out;
        };
        if !env.modules.is_empty() {
            let all: Vec<&String> = env.modules.iter().chain(&self.added_modules).collect();
            let modules: Vec<String> = all.iter().map(|m| shell_quote(m)).collect();
            out.push_str(&format!(
                "# Environment {name}: Lmod's modules (a batch job's shell may not know `module` yet).\n\
                 set +u\n\
                 if ! type module >/dev/null 2>&1; then\n  \
                   for f in {init}; do\n    \
                     if [ -r \"$f\" ]; then . \"$f\"; break; fi\n  \
                   done\n\
                 fi\n\
                 module load {list} || {{ echo \"nbhub: error: could not load the modules of environment \"{name}\": \"{text}; exit 1; }}\n\
                 set -u\n",
                name = shell_quote(&env.name),
                list = modules.join(" "),
                text = shell_quote(
                    &all.iter().map(|m| m.as_str()).collect::<Vec<_>>().join(" ")
                ),
                init = crate::slurm::setup::LMOD_INIT.join(" "),
            ));
        } else if !env.prefix.is_empty() {
            let prefix = env.prefix.trim_end_matches('/');
            out.push_str(&format!(
                "# Environment {name}: the prefix's programs first.\n\
                 PATH={bin}:\"${{PATH:-/usr/bin:/bin}}\"\n\
                 export PATH\n\
                 [ -x {server} ] || {{ echo \"nbhub: error: \"{server}\" is not a program you can run (environment \"{name}\")\"; exit 1; }}\n",
                name = shell_quote(&env.name),
                bin = shell_quote(&format!("{prefix}/bin")),
                server = shell_quote(&format!("{prefix}/bin/{SERVER_PROGRAM}")),
            ));
        }
        out
    }

    /// The server's command: `cmd` (`[spawner] cmd` + `args`) as it is without an
    /// environment; with one, its program is the environment's `jupyterhub-singleuser`
    /// (the prefix's, the one the modules put on `PATH`, the image's) and a container's
    /// runtime wraps it, with the home and the directory bound and `env_names` passed.
    pub fn command(&self, cmd: &[String], env_names: &[&str]) -> Vec<String> {
        let Some(env) = self.environment else {
            return cmd.to_vec();
        };
        let rest = cmd.iter().skip(1).cloned();
        if !env.prefix.is_empty() {
            let program = format!("{}/bin/{SERVER_PROGRAM}", env.prefix.trim_end_matches('/'));
            return std::iter::once(program).chain(rest).collect();
        }
        let server = std::iter::once(SERVER_PROGRAM.to_owned()).chain(rest);
        let Some(c) = &env.container else {
            return server.collect();
        };
        let home = self.home.trim_end_matches('/').to_owned();
        let mut binds = vec![home.clone()];
        binds.extend(self.directory.iter().filter(|d| **d != home).cloned());
        let workdir = self.directory.clone().unwrap_or(home);
        let mut out = vec![c.runtime.program().to_owned()];
        match c.runtime {
            ContainerRuntime::Apptainer | ContainerRuntime::Singularity => {
                out.push("exec".into());
                for b in &binds {
                    out.extend(["--bind".into(), b.clone()]);
                }
                out.extend(["--pwd".into(), workdir, c.image.clone()]);
            }
            ContainerRuntime::Charliecloud => {
                for b in &binds {
                    out.push(format!("--bind={b}:{b}"));
                }
                out.extend([format!("--cd={workdir}"), c.image.clone(), "--".into()]);
            }
            ContainerRuntime::Podman => {
                out.extend([
                    "run".into(),
                    "--rm".into(),
                    "--network=host".into(),
                    "--userns=keep-id".into(),
                ]);
                for b in &binds {
                    out.push(format!("--volume={b}:{b}"));
                }
                out.push(format!("--workdir={workdir}"));
                // podman passes no variable unless named; the job script sets these (the
                // limits from the job's allocation, for jupyter-resource-usage).
                let mut names: Vec<&str> =
                    env_names.iter().copied().filter(|n| *n != "PATH").collect();
                names.extend([
                    "JUPYTERHUB_API_TOKEN",
                    "JPY_API_TOKEN",
                    "JUPYTERHUB_SERVICE_URL",
                    "MEM_LIMIT",
                    "CPU_LIMIT",
                ]);
                names.sort_unstable();
                names.dedup();
                out.extend(names.into_iter().map(|n| format!("--env={n}")));
                out.push(c.image.clone());
            }
        }
        out.extend(server);
        out
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use serde_json::json;

    fn env(name: &str) -> EnvironmentConfig {
        EnvironmentConfig {
            name: name.into(),
            ..Default::default()
        }
    }

    pub(crate) fn config() -> SlurmConfig {
        SlurmConfig {
            environments: vec![
                EnvironmentConfig {
                    modules: vec!["Stages/2025".into(), "Python/3.12".into()],
                    ..env("python-2025")
                },
                EnvironmentConfig {
                    prefix: "/opt/envs/it's here/".into(),
                    ..env("venv")
                },
                EnvironmentConfig {
                    container: Some(ContainerConfig {
                        image: "/images/lab $(x).sif".into(),
                        runtime: ContainerRuntime::Apptainer,
                    }),
                    ..env("box")
                },
            ],
            interfaces: vec![
                InterfaceConfig {
                    name: "lab".into(),
                    url: "/lab".into(),
                    ..Default::default()
                },
                InterfaceConfig {
                    name: "vscode".into(),
                    url: "/vscode/".into(),
                    environments: vec!["box".into()],
                    ..Default::default()
                },
            ],
            directories: vec![
                DirectoryConfig {
                    name: "home".into(),
                    path: "{home}".into(),
                    ..Default::default()
                },
                DirectoryConfig {
                    name: "project".into(),
                    path: "/p/project/{account}/{username}".into(),
                    ..Default::default()
                },
            ],
            ..Default::default()
        }
    }

    #[test]
    fn config_errors_name_the_key() {
        assert_eq!(config().validate(), Ok(()));
        let bad = |f: &dyn Fn(&mut SlurmConfig), words: &str| {
            let mut c = config();
            f(&mut c);
            let err = c.validate().unwrap_err();
            assert!(err.contains(words), "{words}: {err}");
        };
        bad(
            &|c| c.environments[1].modules = vec!["x".into()],
            "key `slurm.environments[1]`: environment 'venv' needs exactly one of",
        );
        bad(
            &|c| c.environments[0].modules = vec![],
            "key `slurm.environments[0]`",
        );
        bad(
            &|c| c.environments[0].modules = vec!["x; rm -rf ~".into()],
            "key `slurm.environments[0].modules`",
        );
        bad(
            &|c| c.environments[1].prefix = "opt/venv".into(),
            "key `slurm.environments[1].prefix`",
        );
        bad(
            &|c| c.environments[2].name = "a b".into(),
            "key `slurm.environments[2].name`",
        );
        bad(
            &|c| c.environments[2].name = "venv".into(),
            "key `slurm.environments[2].name`: 'venv' is already",
        );
        bad(
            &|c| c.interfaces[0].url = "lab".into(),
            "key `slurm.interfaces[0].url`",
        );
        bad(
            &|c| c.interfaces[0].url = "/lab\n".into(),
            "key `slurm.interfaces[0].url`",
        );
        bad(
            &|c| c.interfaces[1].environments = vec!["nosuch".into()],
            "key `slurm.interfaces[1].environments`: 'nosuch'",
        );
        bad(
            &|c| c.directories[1].path = "/scratch/{user}".into(),
            "key `slurm.directories[1].path`: '/scratch/{user}' may use only",
        );
        bad(
            &|c| c.directories[1].path = "scratch".into(),
            "key `slurm.directories[1].path`",
        );
        bad(
            &|c| c.directories[1].path = "/a:b".into(),
            "key `slurm.directories[1].path`",
        );
        bad(
            &|c| {
                c.fields.push(crate::CustomField {
                    name: "environment".into(),
                    ..Default::default()
                })
            },
            "key `slurm.fields[0].name`: 'environment' is a built-in option",
        );
        // The TOML form: a container needs both keys, and a known runtime.
        #[derive(Deserialize)]
        #[allow(dead_code)]
        struct Wrap {
            slurm: SlurmConfig,
        }
        for (text, words) in [
            (
                "[[slurm.environments]]\nname = \"a\"\ncontainer = { image = \"/i\", runtime = \"docker\" }\n",
                "unknown variant `docker`",
            ),
            (
                "[[slurm.environments]]\nname = \"a\"\ncontainer = { image = \"/i\" }\n",
                "missing field `runtime`",
            ),
            (
                "[[slurm.environments]]\nname = \"a\"\nmodule = [\"x\"]\n",
                "unknown field `module`",
            ),
        ] {
            let err = toml::from_str::<Wrap>(text).err().unwrap().to_string();
            assert!(err.contains(words), "{text}: {err}");
        }
    }

    fn resolve<'a>(config: &'a SlurmConfig, options: Value) -> Session<'a> {
        Session::resolve(
            config,
            &ValidatedOptions(options.as_object().unwrap().clone()),
            "alice",
            "/home/alice",
            Some("proj1"),
        )
        .unwrap()
    }

    fn cmd() -> Vec<String> {
        vec![
            "/usr/local/bin/jupyterhub-singleuser".into(),
            "--debug".into(),
        ]
    }

    #[test]
    fn a_modules_environment_loads_them_quoted_before_the_server() {
        let mut config = config();
        config.environments[0].modules.push("R/4.4+x".into());
        let s = resolve(
            &config,
            json!({"environment": "python-2025", "directory": "project"}),
        );
        let lines = s.setup_lines();
        assert!(
            lines.contains(
                "\nNBHUB_DIR=/p/project/proj1/alice\ncd -- \"$NBHUB_DIR\" || { echo \"nbhub: error: cannot enter directory $NBHUB_DIR as $(id -un)\"; exit 1; }\n"
            ),
            "{lines}"
        );
        assert!(
            lines.contains("\nmodule load Stages/2025 Python/3.12 R/4.4+x || {"),
            "{lines}"
        );
        assert!(lines.contains(". \"$f\""), "{lines}");
        assert_eq!(
            s.command(&cmd(), &[]),
            ["jupyterhub-singleuser", "--debug"],
            "the modules' server, found on PATH"
        );
        let mut env = std::collections::BTreeMap::new();
        s.apply_env(&mut env);
        assert_eq!(env["JUPYTERHUB_ROOT_DIR"], "/p/project/proj1/alice");
        assert!(!env.contains_key("JUPYTERHUB_DEFAULT_URL"));
    }

    #[test]
    fn a_prefix_environment_runs_the_prefix_s_server() {
        let config = config();
        let s = resolve(
            &config,
            json!({"environment": "venv", "interface": "lab", "directory": "home"}),
        );
        let lines = s.setup_lines();
        assert!(
            lines.contains(
                "\nPATH='/opt/envs/it'\\''s here/bin':\"${PATH:-/usr/bin:/bin}\"\nexport PATH\n"
            ),
            "{lines}"
        );
        assert!(
            lines.contains("[ -x '/opt/envs/it'\\''s here/bin/jupyterhub-singleuser' ] || {"),
            "{lines}"
        );
        assert!(lines.contains("NBHUB_DIR=/home/alice\n"), "{lines}");
        assert_eq!(
            s.command(&cmd(), &[]),
            ["/opt/envs/it's here/bin/jupyterhub-singleuser", "--debug"]
        );
        let mut env = std::collections::BTreeMap::new();
        s.apply_env(&mut env);
        assert_eq!(env["JUPYTERHUB_DEFAULT_URL"], "/lab");
        assert_eq!(env["JUPYTERHUB_ROOT_DIR"], "/home/alice");
    }

    #[test]
    fn a_container_wraps_the_server_with_the_home_and_the_directory_bound() {
        let mut config = config();
        let expect = [
            (
                ContainerRuntime::Apptainer,
                vec![
                    "apptainer",
                    "exec",
                    "--bind",
                    "/home/alice",
                    "--bind",
                    "/p/project/proj1/alice",
                    "--pwd",
                    "/p/project/proj1/alice",
                    "/images/lab $(x).sif",
                    "jupyterhub-singleuser",
                    "--debug",
                ],
            ),
            (
                ContainerRuntime::Charliecloud,
                vec![
                    "ch-run",
                    "--bind=/home/alice:/home/alice",
                    "--bind=/p/project/proj1/alice:/p/project/proj1/alice",
                    "--cd=/p/project/proj1/alice",
                    "/images/lab $(x).sif",
                    "--",
                    "jupyterhub-singleuser",
                    "--debug",
                ],
            ),
            (
                ContainerRuntime::Podman,
                vec![
                    "podman",
                    "run",
                    "--rm",
                    "--network=host",
                    "--userns=keep-id",
                    "--volume=/home/alice:/home/alice",
                    "--volume=/p/project/proj1/alice:/p/project/proj1/alice",
                    "--workdir=/p/project/proj1/alice",
                    "--env=CPU_LIMIT",
                    "--env=HOME",
                    "--env=JPY_API_TOKEN",
                    "--env=JUPYTERHUB_API_TOKEN",
                    "--env=JUPYTERHUB_SERVICE_URL",
                    "--env=JUPYTERHUB_USER",
                    "--env=MEM_LIMIT",
                    "/images/lab $(x).sif",
                    "jupyterhub-singleuser",
                    "--debug",
                ],
            ),
        ];
        for (runtime, words) in expect {
            config.environments[2].container.as_mut().unwrap().runtime = runtime;
            let s = resolve(
                &config,
                json!({"environment": "box", "interface": "vscode", "directory": "project"}),
            );
            assert_eq!(
                s.command(&cmd(), &["HOME", "JUPYTERHUB_USER", "PATH"]),
                words,
                "{runtime:?}"
            );
            assert!(!s.setup_lines().contains("PATH="), "{runtime:?}");
        }
        // In the home: bound once.
        config.environments[2].container.as_mut().unwrap().runtime = ContainerRuntime::Singularity;
        let s = resolve(&config, json!({"environment": "box", "directory": "home"}));
        assert_eq!(
            s.command(&cmd(), &[])[..6],
            [
                "singularity",
                "exec",
                "--bind",
                "/home/alice",
                "--pwd",
                "/home/alice"
            ]
        );
    }

    #[test]
    fn resolving_refuses_what_the_config_does_not_have() {
        let config = config();
        for (options, field) in [
            (json!({"environment": "nosuch"}), "environment"),
            (json!({"interface": "x; rm -rf ~"}), "interface"),
            (json!({"directory": 3}), "directory"),
        ] {
            let err = Session::resolve(
                &config,
                &ValidatedOptions(options.as_object().unwrap().clone()),
                "alice",
                "/home/alice",
                None,
            )
            .unwrap_err();
            let SpawnError::InvalidOptions(errors) = err else {
                panic!("{options}")
            };
            assert_eq!(errors[0].field, field);
        }
        let none = resolve(&config, json!({}));
        assert_eq!(none.command(&cmd(), &[]), cmd());
        assert_eq!(none.setup_lines(), "");
    }

    #[test]
    fn added_modules_follow_the_environment_s_and_the_system_s_list_is_read_tersely() {
        let mut config = config();
        config.environments[0].add_modules = true;
        let options = |v: Value| ValidatedOptions(v.as_object().unwrap().clone());
        let s = Session::resolve(
            &config,
            &options(json!({"environment": "python-2025", "modules": ["R/4.4", "GCC"]})),
            "alice",
            "/home/alice",
            None,
        )
        .unwrap();
        assert!(
            s.setup_lines()
                .contains("\nmodule load Stages/2025 Python/3.12 R/4.4 GCC || {"),
            "{}",
            s.setup_lines()
        );
        for bad in [
            json!({"environment": "venv", "modules": ["R"]}),
            json!({"environment": "python-2025", "modules": ["x; rm -rf ~"]}),
            json!({"environment": "python-2025", "modules": "R"}),
        ] {
            let err = Session::resolve(&config, &options(bad.clone()), "a", "/h", None);
            assert!(
                matches!(&err, Err(SpawnError::InvalidOptions(e)) if e[0].field == "modules"),
                "{bad}: {err:?}"
            );
        }
        config.environments[1].add_modules = true;
        assert!(config
            .validate()
            .unwrap_err()
            .contains("key `slurm.environments[1].add_modules`"));
        let avail = "/etc/lmod/modules:\nGCC/\nGCC/12\nGCC/13 (D)\nR/4.4(default)\n\n/usr/share/lmod/lmod/modulefiles:\nCore/lmod\n";
        assert_eq!(
            parse_avail(avail),
            ["Core/lmod", "GCC", "GCC/12", "GCC/13", "R/4.4"]
        );
        assert!(avail_script().contains("module -t avail 2>&1"));
    }
}
