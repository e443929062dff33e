//! The job: `sbatch`'s arguments from validated options, and the job script from the template
//! (built-in, or the site's minijinja file).
//!
//! Every option goes to `sbatch` as its own argument, never into a `#SBATCH` line of the
//! script, so no value can add options or lines; values are checked once more here anyway.
//! Secrets (the API token) travel in sbatch's process environment, named by `--export`.

use std::collections::BTreeMap;

use minijinja::{AutoEscape, Environment};
use serde::Serialize;
use serde_json::Value;

use crate::slurm::config::{is_slurm_name, CustomField, CustomType, SlurmConfig};
use crate::slurm::session::Session;
use crate::{SpawnError, ValidatedOptions};

/// The built-in job script.
pub(crate) const DEFAULT_TEMPLATE: &str = r#"#!/bin/bash
# nbhub: the Jupyter server of {{ username }}{% if server %} ("{{ server }}"){% endif %} as a Slurm job.
# It picks a free port on this node, reports it to the hub, then runs the server (in the
# background and waited for when Slurm signals the job before its end: see the trap below).
{% for option in sbatch_options %}# sbatch {{ option }}
{% endfor -%}
set -u
# Everything the job prints goes to its log, in a folder of the user's made here as the user
# (sbatch's own --output must name a folder that exists before the job starts).
NBHUB_LOG={{ log_file }}
if (umask 077 && mkdir -p "$(dirname "$NBHUB_LOG")"); then exec >>"$NBHUB_LOG" 2>&1; fi
{% if end_signal -%}
# Slurm sends USR1 to this script ({{ end_signal }}) before the time limit, maybe while it
# starts (a short job): the trap, set first, tells the hub, whose home page then warns that
# the server will stop.
nbhub_ending() {
    echo "nbhub: Slurm says the job ends soon; telling the hub"
    {{ python }} - <<'NBHUB_ENDING' || true
import os, urllib.parse, urllib.request
user = urllib.parse.quote(os.environ["JUPYTERHUB_USER"], safe="@~")
server = os.environ.get("JUPYTERHUB_SERVER_NAME", "")
path = "/servers/%s/ending" % urllib.parse.quote(server, safe="@~") if server else "/server/ending"
url = os.environ["JUPYTERHUB_API_URL"].rstrip("/") + "/users/" + user + path
headers = {"Authorization": "token " + os.environ["JUPYTERHUB_API_TOKEN"]}
urllib.request.urlopen(urllib.request.Request(url, b"{}", headers, method="POST"), timeout=20).close()
NBHUB_ENDING
}
trap nbhub_ending USR1
{% endif -%}
{% if token_file -%}
# The server's API token: written by the hub as the user (mode 0600) just before sbatch, read
# once and removed, so that it is in no job script, no command line and no file left behind.
NBHUB_TOKEN_FILE={{ token_file }}
JUPYTERHUB_API_TOKEN=$(cat "$NBHUB_TOKEN_FILE") || exit 1
rm -f "$NBHUB_TOKEN_FILE"
export JUPYTERHUB_API_TOKEN JPY_API_TOKEN="$JUPYTERHUB_API_TOKEN"
{% endif -%}
{{ setup }}PORT=$({{ python }} -c 'import socket; s = socket.socket(); s.bind(("", 0)); print(s.getsockname()[1]); s.close()') || exit 1
export JUPYTERHUB_SERVICE_URL="http://{{ bind_ip }}:${PORT}${JUPYTERHUB_SERVICE_PREFIX}"
{{ python }} - "$PORT" <<'NBHUB_REPORT_PORT' || exit 1
import json, os, sys, time, urllib.error, urllib.request
url = os.environ["JUPYTERHUB_API_URL"].rstrip("/") + "/batchspawner"
body = json.dumps({"port": int(sys.argv[1])}).encode()
headers = {"Authorization": "token " + os.environ["JUPYTERHUB_API_TOKEN"],
           "Content-Type": "application/json"}
deadline, delay = time.time() + 300, 0.5
while True:
    try:
        urllib.request.urlopen(urllib.request.Request(url, body, headers, method="POST"), timeout=10).close()
        break
    except urllib.error.HTTPError as e:
        if e.code < 500:
            sys.exit("nbhub: the hub refused the port report: %s" % e)
        error = e
    except Exception as e:
        error = e
    if time.time() > deadline:
        sys.exit("nbhub: could not report the port to %s: %s" % (url, error))
    time.sleep(delay)
    delay = min(delay * 2, 10)
NBHUB_REPORT_PORT
# jupyter-resource-usage shows memory and CPU against these: what Slurm gave the job on this
# node (its memory in MB, per node or per CPU).
nbhub_number() { case $1 in '' | *[!0-9]*) return 1 ;; esac; }
if nbhub_number "${SLURM_MEM_PER_NODE:-}"; then
    export MEM_LIMIT=$((SLURM_MEM_PER_NODE * 1048576))
elif nbhub_number "${SLURM_MEM_PER_CPU:-}" && nbhub_number "${SLURM_CPUS_ON_NODE:-}"; then
    export MEM_LIMIT=$((SLURM_MEM_PER_CPU * SLURM_CPUS_ON_NODE * 1048576))
fi
if nbhub_number "${SLURM_CPUS_ON_NODE:-}"; then export CPU_LIMIT=$SLURM_CPUS_ON_NODE; fi
echo "nbhub: starting the server on ${SLURMD_NODENAME:-$(hostname)} port ${PORT}"
{% if end_signal -%}
# TERM (scancel, the time limit) is passed on to the server, so that it shuts down cleanly;
# bash runs a trap only between commands, so the server runs in the background, waited for.
trap 'if [ -n "${NBHUB_SERVER:-}" ]; then kill -TERM "$NBHUB_SERVER" 2>/dev/null; else exit 143; fi' TERM
{{ cmd }} &
NBHUB_SERVER=$!
while :; do
    wait "$NBHUB_SERVER"
    NBHUB_STATUS=$?
    # wait returns early (above 128) when a trap ran; the server may still be running.
    kill -0 "$NBHUB_SERVER" 2>/dev/null || exit "$NBHUB_STATUS"
done
{% else -%}
exec {{ cmd }}
{% endif -%}
"#;

/// A job request from validated options.
#[derive(Clone, Debug, Default, PartialEq)]
pub(crate) struct JobRequest {
    pub partition: String,
    pub nodes: u32,
    pub runtime_secs: u64,
    pub account: Option<String>,
    pub gpus: u32,
    pub reservation: Option<String>,
    /// Custom field name → (its sbatch option, value).
    pub custom: BTreeMap<String, Value>,
}

impl JobRequest {
    /// Reads validated options once more, refusing anything that is not a plain name, number
    /// or single line (the options came through `validate_options`; this is the last guard
    /// before a command line).
    pub fn from_options(
        options: &ValidatedOptions,
        fields: &[CustomField],
    ) -> Result<Self, SpawnError> {
        let bad = |field: &str| {
            SpawnError::InvalidOptions(vec![crate::FieldError::new(field, "is not a valid value")])
        };
        let name = |field: &str| -> Result<Option<String>, SpawnError> {
            match options.get(field) {
                None | Some(Value::Null) => Ok(None),
                Some(Value::String(s)) if s.is_empty() => Ok(None),
                Some(Value::String(s)) if is_slurm_name(s) => Ok(Some(s.clone())),
                Some(_) => Err(bad(field)),
            }
        };
        let count = |field: &str| -> Result<Option<u64>, SpawnError> {
            match options.get(field) {
                None | Some(Value::Null) => Ok(None),
                Some(v) => v.as_u64().map(Some).ok_or_else(|| bad(field)),
            }
        };
        let runtime_secs = match options.get("runtime") {
            Some(Value::String(s)) => {
                crate::parse_clock_duration(s).ok_or_else(|| bad("runtime"))?
            }
            Some(Value::Number(n)) => n.as_u64().ok_or_else(|| bad("runtime"))?,
            _ => 0,
        };
        let mut custom = BTreeMap::new();
        for f in fields {
            if let Some(v) = options.get(&f.name) {
                let fine = match v {
                    Value::String(s) => !s.chars().any(char::is_control),
                    Value::Number(_) | Value::Bool(_) | Value::Null => true,
                    _ => false,
                };
                if !fine {
                    return Err(bad(&f.name));
                }
                custom.insert(f.name.clone(), v.clone());
            }
        }
        Ok(Self {
            partition: name("partition")?.ok_or_else(|| bad("partition"))?,
            nodes: count("nodes")?
                .unwrap_or(1)
                .try_into()
                .map_err(|_| bad("nodes"))?,
            runtime_secs,
            account: name("account")?,
            gpus: count("gpus")?
                .unwrap_or(0)
                .try_into()
                .map_err(|_| bad("gpus"))?,
            reservation: name("reservation")?,
            custom,
        })
    }

    /// The sbatch options (without `--parsable`, `--export`, name, output, chdir).
    pub fn sbatch_options(&self, config: &SlurmConfig) -> Vec<String> {
        let mut out = vec![
            format!("--partition={}", self.partition),
            format!("--nodes={}", self.nodes),
        ];
        if self.runtime_secs > 0 {
            out.push(format!("--time={}", self.runtime_secs.div_ceil(60)));
        }
        if let Some(a) = &self.account {
            out.push(format!("--account={a}"));
        }
        if self.gpus > 0 {
            out.push(format!("--gres=gpu:{}", self.gpus));
        }
        if let Some(r) = &self.reservation {
            out.push(format!("--reservation={r}"));
        }
        for f in &config.fields {
            let (Some(value), false) = (self.custom.get(&f.name), f.sbatch.is_empty()) else {
                continue;
            };
            let text = match (f.kind, value) {
                (CustomType::Bool, Value::Bool(true)) => Some(f.sbatch.replace("{value}", "")),
                (CustomType::Bool, _) | (_, Value::Null) => None,
                (_, Value::String(s)) => Some(f.sbatch.replace("{value}", s)),
                (_, v) => Some(f.sbatch.replace("{value}", &v.to_string())),
            };
            out.extend(text);
        }
        out.extend(end_signal_option(config));
        out.extend(config.extra_sbatch.iter().cloned());
        out
    }
}

/// `--signal=B:USR1@N`: Slurm signals the job script (only: `B:`; the server would die of
/// USR1) N seconds before the time limit (`[slurm] end_signal_seconds`, 0: never).
pub(crate) fn end_signal_option(config: &SlurmConfig) -> Option<String> {
    (config.end_signal_seconds > 0)
        .then(|| format!("--signal=B:USR1@{}", config.end_signal_seconds))
}

/// What a template sees.
#[derive(Serialize)]
struct TemplateContext<'a> {
    /// The job's output file as one shell word (`%j` as `${SLURM_JOB_ID}`). A template that
    /// uses it sends the job's output there itself, and sbatch's `--output` is `/dev/null`.
    log_file: &'a str,
    /// The file the API token waits in, as one shell word; `""`: it comes in the environment.
    token_file: &'a str,
    username: &'a str,
    server: &'a str,
    job_name: &'a str,
    python: String,
    bind_ip: &'a str,
    /// The server command, each word shell-quoted (an environment's: its program, wrapped in
    /// its container runtime).
    cmd: String,
    /// The lines that enter the chosen directory and set up the chosen environment (modules,
    /// prefix), each value shell-quoted; `""` without them.
    setup: &'a str,
    /// The chosen directory as a shell word (`""`: none).
    directory: String,
    /// Slurm's signal before the end (`--signal=B:USR1@300`), `""`: none.
    end_signal: String,
    sbatch_options: &'a [String],
    env_names: Vec<&'a String>,
    options: &'a ValidatedOptions,
    #[serde(flatten)]
    custom: &'a BTreeMap<String, Value>,
}

/// The files a job script names, each as one shell word.
pub(crate) struct JobFiles<'a> {
    /// The job's output (see `TemplateContext::log_file`).
    pub log_file: &'a str,
    /// Where the API token waits (`""`: in the environment).
    pub token_file: &'a str,
}

/// Renders the job script.
#[allow(clippy::too_many_arguments)]
pub(crate) fn render_script(
    template: &str,
    config: &SlurmConfig,
    cmd: &[String],
    username: &str,
    server: &str,
    job_name: &str,
    job: &JobRequest,
    sbatch_options: &[String],
    env: &BTreeMap<String, String>,
    options: &ValidatedOptions,
    files: &JobFiles,
    session: &Session,
) -> Result<String, SpawnError> {
    let setup = session.setup_lines();
    let mut jinja = Environment::new();
    jinja.set_auto_escape_callback(|_| AutoEscape::None);
    jinja.set_keep_trailing_newline(true);
    jinja.add_filter("shquote", |s: String| shell_quote(&s));
    jinja
        .add_template("job", template)
        .map_err(|e| SpawnError::Config(format!("the job script template: {e}")))?;
    let ctx = TemplateContext {
        log_file: files.log_file,
        token_file: files.token_file,
        username,
        server,
        job_name,
        python: shell_quote(&config.python),
        bind_ip: &config.bind_ip,
        cmd: cmd
            .iter()
            .map(|w| shell_quote(w))
            .collect::<Vec<_>>()
            .join(" "),
        setup: &setup,
        directory: session
            .directory
            .as_deref()
            .map(shell_quote)
            .unwrap_or_default(),
        end_signal: end_signal_option(config).unwrap_or_default(),
        sbatch_options,
        env_names: env.keys().collect(),
        options,
        custom: &job.custom,
    };
    jinja
        .get_template("job")
        .and_then(|t| t.render(&ctx))
        .map_err(|e| SpawnError::Config(format!("the job script template: {e}")))
}

/// Whether a job script template sends the job's output to `log_file` itself.
pub(crate) fn template_writes_log(template: &str) -> bool {
    template_uses(template, "log_file")
}

/// Whether a job script template reads the API token from `token_file` (else the token comes
/// in the job's environment, as sbatch passes it).
pub(crate) fn template_reads_token(template: &str) -> bool {
    template_uses(template, "token_file")
}

fn template_uses(template: &str, variable: &str) -> bool {
    let jinja = Environment::new();
    jinja
        .template_from_str(template)
        .is_ok_and(|t| t.undeclared_variables(false).contains(variable))
}

/// A piece of Slurm's filename pattern: text, or the job id (`%j`).
enum OutputPart {
    Text(String),
    JobId,
}

/// Slurm's filename pattern (`[slurm] output`) in pieces, with `%u` (the user), `%x` (the
/// job name) and `%%` filled in; other `%` patterns are kept as they are.
fn output_parts(pattern: &str, user: &str, job_name: &str) -> Vec<OutputPart> {
    let mut parts = Vec::new();
    let mut text = String::new();
    let mut chars = pattern.chars();
    while let Some(c) = chars.next() {
        if c != '%' {
            text.push(c);
            continue;
        }
        match chars.next() {
            Some('j') => {
                parts.push(OutputPart::Text(std::mem::take(&mut text)));
                parts.push(OutputPart::JobId);
            }
            Some('u') => text.push_str(user),
            Some('x') => text.push_str(job_name),
            Some('%') => text.push('%'),
            Some(other) => {
                text.push('%');
                text.push(other);
            }
            None => text.push('%'),
        }
    }
    parts.push(OutputPart::Text(text));
    parts
}

/// The job's output file: `[slurm] output` with `%j`, `%u`, `%x` and `%%` filled in.
pub(crate) fn output_file(pattern: &str, user: &str, job_name: &str, job_id: &str) -> String {
    output_parts(pattern, user, job_name)
        .into_iter()
        .map(|p| match p {
            OutputPart::Text(t) => t,
            OutputPart::JobId => job_id.to_owned(),
        })
        .collect()
}

/// The job's output file as one shell word for the job script, the job id read from
/// `$SLURM_JOB_ID`.
pub(crate) fn output_shell_word(pattern: &str, user: &str, job_name: &str) -> String {
    output_parts(pattern, user, job_name)
        .into_iter()
        .filter(|p| !matches!(p, OutputPart::Text(t) if t.is_empty()))
        .map(|p| match p {
            OutputPart::Text(t) => shell_quote(&t),
            OutputPart::JobId => "\"${SLURM_JOB_ID}\"".to_owned(),
        })
        .collect()
}

/// `word` as one shell word.
pub(crate) fn shell_quote(word: &str) -> String {
    if !word.is_empty()
        && word
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"_-./=:,+@%".contains(&b))
    {
        word.to_owned()
    } else {
        format!("'{}'", word.replace('\'', r"'\''"))
    }
}

/// Whether `name` can be an environment variable name passed with `--export`.
pub(crate) fn is_env_name(name: &str) -> bool {
    let mut bytes = name.bytes();
    bytes
        .next()
        .is_some_and(|b| b.is_ascii_alphabetic() || b == b'_')
        && bytes.all(|b| b.is_ascii_alphanumeric() || b == b'_')
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn options(v: Value) -> ValidatedOptions {
        ValidatedOptions(v.as_object().unwrap().clone())
    }

    #[test]
    fn options_become_separate_sbatch_arguments() {
        let config = SlurmConfig {
            fields: vec![CustomField {
                name: "mem_gb".into(),
                kind: CustomType::Int,
                sbatch: "--mem={value}G".into(),
                ..Default::default()
            }],
            extra_sbatch: vec!["--qos=normal".into()],
            ..Default::default()
        };
        let job = JobRequest::from_options(
            &options(json!({"partition": "gpu", "nodes": 2, "runtime": "00:10:30", "gpus": 1, "mem_gb": 4})),
            &config.fields,
        )
        .unwrap();
        assert_eq!(
            job.sbatch_options(&config),
            [
                "--partition=gpu",
                "--nodes=2",
                "--time=11",
                "--gres=gpu:1",
                "--mem=4G",
                "--signal=B:USR1@300",
                "--qos=normal"
            ]
        );
        for bad in [
            json!({"partition": "devel\n#SBATCH --uid=0"}),
            json!({"partition": "devel", "nodes": "2; rm -rf ~"}),
            json!({"partition": "devel", "account": "a b"}),
        ] {
            assert!(JobRequest::from_options(&options(bad), &config.fields).is_err());
        }
    }

    #[test]
    fn the_output_pattern_is_filled_in_for_the_hub_and_the_script() {
        let pattern = "/home/a b/.nbhub/logs/%x-%j-%u-100%%.log";
        assert_eq!(
            output_file(pattern, "alice", "nbhub-alice", "42"),
            "/home/a b/.nbhub/logs/nbhub-alice-42-alice-100%.log"
        );
        assert_eq!(
            output_shell_word(pattern, "alice", "nbhub-alice"),
            "'/home/a b/.nbhub/logs/nbhub-alice-'\"${SLURM_JOB_ID}\"-alice-100%.log"
        );
        assert_eq!(output_file("%j", "u", "n", "7"), "7");
        assert_eq!(output_shell_word("%j", "u", "n"), "\"${SLURM_JOB_ID}\"");
        assert!(template_writes_log(DEFAULT_TEMPLATE));
        assert!(!template_writes_log("#!/bin/sh\nexec {{ cmd }}\n"));
    }

    #[test]
    fn the_script_runs_the_quoted_command_in_the_foreground() {
        let config = SlurmConfig {
            end_signal_seconds: 0,
            ..Default::default()
        };
        let job = JobRequest {
            partition: "devel".into(),
            nodes: 1,
            ..Default::default()
        };
        let env: BTreeMap<String, String> =
            [("JUPYTERHUB_API_TOKEN".to_owned(), "secret".to_owned())].into();
        let script = render_script(
            DEFAULT_TEMPLATE,
            &config,
            &[
                "/opt/venv/bin/jupyterhub-singleuser".into(),
                "--debug it".into(),
            ],
            "alice",
            "",
            "nbhub-alice",
            &job,
            &["--partition=devel".into()],
            &env,
            &ValidatedOptions::default(),
            &JobFiles {
                log_file: &output_shell_word(
                    "/home/alice/.nbhub/logs/nbhub-slurm-%j.log",
                    "alice",
                    "n",
                ),
                token_file: "'/home/alice/.nbhub/tokens/t 1'",
            },
            &Session::default(),
        )
        .unwrap();
        assert!(script.starts_with("#!/bin/bash\n"), "{script}");
        assert!(
            script.contains(
                "\nNBHUB_LOG=/home/alice/.nbhub/logs/nbhub-slurm-\"${SLURM_JOB_ID}\".log\n"
            ),
            "{script}"
        );
        assert!(
            script.contains("\nexec /opt/venv/bin/jupyterhub-singleuser '--debug it'\n"),
            "{script}"
        );
        assert!(script.contains("# sbatch --partition=devel\n"), "{script}");
        assert!(!script.contains("secret"), "{script}");
        assert!(
            script.contains("\nNBHUB_TOKEN_FILE='/home/alice/.nbhub/tokens/t 1'\n"),
            "{script}"
        );
        assert!(template_reads_token(DEFAULT_TEMPLATE));
        assert!(!template_reads_token("#!/bin/sh\nexec {{ cmd }}\n"));
        assert!(script.contains("/batchspawner"));
        assert_eq!(shell_quote("it's"), r"'it'\''s'");
        assert!(is_env_name("JUPYTERHUB_API_TOKEN") && !is_env_name("A-B") && !is_env_name("1A"));
    }

    /// The built-in script of alice's default server running `cmd`, with no job options,
    /// variables or token file.
    fn plain_script(
        config: &SlurmConfig,
        cmd: &[String],
        options: &ValidatedOptions,
        session: &Session,
    ) -> String {
        render_script(
            DEFAULT_TEMPLATE,
            config,
            cmd,
            "alice",
            "",
            "nbhub-alice",
            &JobRequest::default(),
            &[],
            &BTreeMap::new(),
            options,
            &JobFiles {
                log_file: "/dev/null",
                token_file: "",
            },
            session,
        )
        .unwrap()
    }

    /// With `end_signal_seconds`, the server runs in the background: USR1 (Slurm's warning)
    /// runs the trap and the script goes on waiting; TERM is passed on to the server, and
    /// the script ends with the server's status. A real bash runs the script's end.
    #[test]
    fn the_end_signal_is_trapped_and_term_reaches_the_server() {
        let config = SlurmConfig::default();
        assert_eq!(
            end_signal_option(&config).as_deref(),
            Some("--signal=B:USR1@300")
        );
        let dir = tempfile::tempdir().unwrap();
        let server = dir.path().join("server.sh");
        let marker = dir.path().join("server-got-TERM");
        std::fs::write(
            &server,
            format!(
                "#!/bin/bash\ntrap 'touch {}; exit 7' TERM\necho \"$MEM_LIMIT $CPU_LIMIT\" > {}/started\n\
                 while :; do sleep 0.05; done\n",
                shell_quote(&marker.display().to_string()),
                shell_quote(&dir.path().display().to_string()),
            ),
        )
        .unwrap();
        std::fs::set_permissions(&server, std::os::unix::fs::PermissionsExt::from_mode(0o755))
            .unwrap();
        let script = plain_script(
            &config,
            &[server.display().to_string()],
            &ValidatedOptions::default(),
            &Session::default(),
        );
        assert!(script.contains("\ntrap nbhub_ending USR1\n"), "{script}");
        // The trap (set first thing) and the script from the limits on: the port report
        // between them needs a hub.
        let trap_at = script.find("nbhub_ending() {").unwrap();
        let trap_end = script.find("\ntrap nbhub_ending USR1\n").unwrap() + 24;
        let tail = format!(
            "{}{}",
            &script[trap_at..trap_end],
            &script[script.find("nbhub_number()").unwrap()..]
        );
        assert!(
            trap_at < script.find("NBHUB_REPORT_PORT").unwrap(),
            "the trap is set before the job reports its port: {script}"
        );
        let log = dir.path().join("log");
        /// The script and its server in a process group of their own, killed whatever the
        /// test does.
        struct Group(std::process::Child);
        impl Drop for Group {
            fn drop(&mut self) {
                let _ = std::process::Command::new("kill")
                    .args(["-KILL", "--", &format!("-{}", self.0.id())])
                    .status();
                let _ = self.0.wait();
            }
        }
        use std::os::unix::process::CommandExt;
        let mut child = std::process::Command::new("bash")
            .args([
                "-c",
                &format!(
                    "set -u\nexec >{} 2>&1\n{tail}",
                    shell_quote(&log.display().to_string())
                ),
            ])
            .env("SLURM_MEM_PER_NODE", "300")
            .env("SLURM_CPUS_ON_NODE", "2")
            .env("PORT", "1")
            .env("JUPYTERHUB_USER", "alice")
            // Nothing listens there: the trap's report fails, and the job goes on.
            .env("JUPYTERHUB_API_URL", "http://127.0.0.1:9/hub/api")
            .env("JUPYTERHUB_API_TOKEN", "t")
            .process_group(0)
            .spawn()
            .map(Group)
            .unwrap();
        let pid = child.0.id().to_string();
        let until = |what: &mut dyn FnMut() -> bool| {
            let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
            while !what() {
                assert!(
                    std::time::Instant::now() < deadline,
                    "{}",
                    std::fs::read_to_string(&log).unwrap_or_default()
                );
                std::thread::sleep(std::time::Duration::from_millis(50));
            }
        };
        until(&mut || dir.path().join("started").exists());
        // 300 MB of memory, 2 CPUs: jupyter-resource-usage's MEM_LIMIT in bytes and CPU_LIMIT.
        until(&mut || {
            std::fs::read_to_string(dir.path().join("started")).unwrap_or_default()
                == "314572800 2\n"
        });
        let kill = |signal: &str| {
            assert!(std::process::Command::new("kill")
                .args([signal, &pid])
                .status()
                .unwrap()
                .success());
        };
        kill("-USR1");
        until(&mut || {
            std::fs::read_to_string(&log)
                .unwrap_or_default()
                .contains("Slurm says the job ends soon")
        });
        assert!(child.0.try_wait().unwrap().is_none(), "USR1 ended the job");
        kill("-TERM");
        let mut status = None;
        until(&mut || {
            status = child.0.try_wait().unwrap();
            status.is_some()
        });
        assert_eq!(
            status.and_then(|s| s.code()),
            Some(7),
            "the server's exit status: {}",
            std::fs::read_to_string(&log).unwrap()
        );
        assert!(marker.exists());
    }

    /// The built-in script with each kind of environment, nasty values in the config, is valid
    /// bash; its setup lines, run by a real bash, enter a directory whose name has quotes and
    /// a `$(…)`, and refuse one that is missing with the message the hub shows.
    #[test]
    fn the_script_with_each_environment_is_valid_bash_and_its_values_stay_words() {
        let dir = tempfile::tempdir().unwrap();
        let nasty = dir.path().join("it's $(touch pwned) \"x\"");
        std::fs::create_dir(&nasty).unwrap();
        let mut config = crate::slurm::session::tests::config();
        config.directories[0].path = format!("{}/{{username}}", dir.path().display());
        config.directories[1].path = nasty.display().to_string();
        for environment in ["python-2025", "venv", "box"] {
            for directory in ["home", "project"] {
                let options = ValidatedOptions(
                    json!({"environment": environment, "directory": directory})
                        .as_object()
                        .unwrap()
                        .clone(),
                );
                let session =
                    Session::resolve(&config, &options, "alice", "/home/alice", None).unwrap();
                let cmd = session.command(&["/bin/true".into()], &["HOME"]);
                let script = plain_script(&config, &cmd, &options, &session);
                let check = std::process::Command::new("bash")
                    .args(["-n", "-c", &script])
                    .output()
                    .unwrap();
                assert!(
                    check.status.success(),
                    "{environment} {directory}: {}\n{script}",
                    String::from_utf8_lossy(&check.stderr)
                );
                // Only the cd: the rest needs a job around it.
                let setup = session.setup_lines();
                let cd: String = setup
                    .lines()
                    .filter(|l| l.starts_with("NBHUB_DIR=") || l.starts_with("cd "))
                    .map(|l| format!("{l}\n"))
                    .collect();
                let run = std::process::Command::new("bash")
                    .args(["-c", &format!("set -u\n{cd}pwd")])
                    .current_dir(dir.path())
                    .output()
                    .unwrap();
                let out = String::from_utf8_lossy(&run.stdout);
                if directory == "project" {
                    assert!(run.status.success(), "{out}");
                    assert_eq!(out.trim_end(), nasty.display().to_string());
                } else {
                    assert_eq!(run.status.code(), Some(1), "{out}");
                    assert!(
                        out.contains(&format!(
                            "nbhub: error: cannot enter directory {}/alice as ",
                            dir.path().display()
                        )),
                        "{out}"
                    );
                }
                assert!(!dir.path().join("pwned").exists());
            }
        }
    }
}
