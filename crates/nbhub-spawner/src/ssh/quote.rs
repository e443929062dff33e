//! Quoting for the remote shell. OpenSSH sends a command as one string, which the login node
//! runs with the account's login shell (`$SHELL -c <string>`): every argument goes through
//! [`quote`] so that what a user typed reaches the remote program as one argument, unchanged,
//! and is never read by the shell. The quoting is POSIX sh's (sh, bash, dash, ksh, zsh); an
//! account whose login shell is csh or tcsh cannot be served (csh ends a quoted word at a
//! newline).

use std::fmt;

/// An argument that holds a NUL byte: no argument vector can carry one (C strings end there),
/// so it is refused rather than cut short.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NulInArgument {
    /// The argument, up to its NUL byte.
    pub before: String,
}

impl fmt::Display for NulInArgument {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "an argument holds a NUL byte (after {:?}), which no command can be given",
            self.before
        )
    }
}

/// A word the shell reads as itself: letters, digits and `_ @ % + : , . / -`, and `=` after a
/// leading `-` (`--format=%i`; anywhere else, a leading word with `=` would be a variable
/// assignment).
fn is_bare(arg: &str) -> bool {
    !arg.is_empty()
        && arg.bytes().all(|b| {
            b.is_ascii_alphanumeric()
                || matches!(
                    b,
                    b'_' | b'@' | b'%' | b'+' | b':' | b',' | b'.' | b'/' | b'-'
                )
                || (b == b'=' && arg.starts_with('-'))
        })
}

/// `arg` as one word of a POSIX shell command line: bare when it is plain (`squeue`, `-h`,
/// `--format=%i`), otherwise in single quotes, inside which the shell interprets nothing, with
/// each `'` written as `'\''` (close, an escaped quote, reopen). The empty string is `''`.
/// A NUL byte is kept as it is: [`command_line`] refuses such arguments.
pub fn quote(arg: &str) -> String {
    if is_bare(arg) {
        return arg.to_owned();
    }
    let mut out = String::with_capacity(arg.len() + 2);
    out.push('\'');
    for c in arg.chars() {
        if c == '\'' {
            out.push_str("'\\''");
        } else {
            out.push(c);
        }
    }
    out.push('\'');
    out
}

/// The command line that runs `argv` on the remote side: each argument [`quote`]d, joined by
/// spaces. Refuses an argument with a NUL byte.
pub fn command_line(argv: &[&str]) -> Result<String, NulInArgument> {
    let mut line = String::new();
    for (i, arg) in argv.iter().enumerate() {
        if let Some(at) = arg.find('\0') {
            return Err(NulInArgument {
                before: arg[..at].to_owned(),
            });
        }
        if i > 0 {
            line.push(' ');
        }
        line.push_str(&quote(arg));
    }
    Ok(line)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Strings a user might type into a form field, or an attacker might.
    const NASTY: &[&str] = &[
        "",
        " ",
        "plain",
        "two words",
        "it's",
        "''",
        "'\\''",
        "\"double\"",
        "$(id)",
        "`id`",
        "${HOME}",
        "$HOME",
        "a;b",
        "a && b || c",
        "a|b",
        "*",
        "?",
        "[a-z]",
        "{a,b}",
        "~",
        "~root",
        "-n",
        "-e",
        "--",
        "-",
        "line\nbreak",
        "\n",
        "trailing\n\n",
        "tab\there",
        "back\\slash\\",
        "\\'",
        "!bang !!",
        "#comment",
        "a=b",
        "--format=%i %j",
        "%",
        "> /tmp/x",
        "< /etc/passwd",
        "&",
        "(sub)",
        "ünïcødé ✓ 日本",
        "\u{1b}[31mred",
        "\r\n",
        "'; rm -rf / #",
    ];

    #[test]
    fn plain_words_stay_bare() {
        for arg in [
            "squeue",
            "-h",
            "--format=%i",
            "/usr/bin/sbatch",
            "user@host:22",
        ] {
            assert_eq!(quote(arg), arg);
        }
        assert_eq!(quote("node[1-2]"), "'node[1-2]'");
        assert_eq!(quote(""), "''");
        assert_eq!(quote("a=b"), "'a=b'");
        assert_eq!(quote("it's"), "'it'\\''s'");
    }

    /// Every nasty string, as argument vector, goes through a real `/bin/sh -c` and comes
    /// back byte for byte: printf prints each argument it gets followed by a NUL.
    #[test]
    fn round_trip_through_a_real_shell() {
        let mut argv = vec!["printf", "%s\\0"];
        argv.extend_from_slice(NASTY);
        let line = command_line(&argv).expect("no NUL");
        let out = std::process::Command::new("/bin/sh")
            .arg("-c")
            .arg(&line)
            .output()
            .expect("run /bin/sh");
        assert!(out.status.success(), "sh -c {line:?}: {out:?}");
        let got: Vec<&[u8]> = out.stdout.split(|&b| b == 0).collect();
        // printf ends every argument with a NUL: one empty piece after the last.
        assert_eq!(got.len(), NASTY.len() + 1, "{line:?} gave {:?}", out.stdout);
        for (want, got) in NASTY.iter().zip(&got) {
            assert_eq!(want.as_bytes(), *got, "through {line:?}");
        }
    }

    /// Each string alone as the command's first word is not run as a command or assignment.
    #[test]
    fn a_nasty_first_word_is_one_word() {
        for arg in NASTY.iter().filter(|a| !a.is_empty()) {
            let line = format!(
                "set -- {}; printf '%s' \"$1\"",
                command_line(&[arg]).unwrap()
            );
            let out = std::process::Command::new("/bin/sh")
                .arg("-c")
                .arg(&line)
                .output()
                .expect("run /bin/sh");
            assert_eq!(out.stdout, arg.as_bytes(), "through {line:?}");
        }
    }

    #[test]
    fn a_nul_byte_is_refused() {
        let err = command_line(&["echo", "ok\0rest"]).unwrap_err();
        assert_eq!(err.before, "ok");
        assert!(err.to_string().contains("NUL byte"), "{err}");
    }
}
