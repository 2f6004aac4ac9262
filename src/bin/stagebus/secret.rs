//! Tokens for the command line without putting them on it: a token file
//! (`--token-file PATH`, refused when group or others may read it) or
//! the environment (`STAGEBUS_TOKEN`). `--token` still works, but every
//! local user can read a command line (`/proc/PID/cmdline`, `ps`).
//!
//! Precedence: `--token`, then `--token-file`, then `STAGEBUS_TOKEN`.

use crate::Failure;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

/// The environment variable a token may come from.
pub(crate) const TOKEN_ENV: &str = "STAGEBUS_TOKEN";

/// The help of `--token`, saying who else can read it.
pub(crate) const TOKEN_HELP: &str = "the shared secret (other local users can read a command line, in /proc/PID/cmdline: prefer --token-file or STAGEBUS_TOKEN)";

/// Reads a token file: it must be a regular file that neither its group
/// nor others may read or write (mode 0600 or 0400).
pub(crate) fn read_token_file(path: &Path) -> Result<String, Failure> {
    let shown = path.display();
    let meta = std::fs::metadata(path)
        .map_err(|e| Failure::Failed(format!("cannot read the token file {shown}: {e}")))?;
    if !meta.is_file() {
        return Err(Failure::Failed(format!(
            "the token file {shown} is not a regular file"
        )));
    }
    let mode = meta.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        return Err(Failure::Failed(format!(
            "the token file {shown} has mode {mode:04o}: its group or others may read it; \
             make it private (chmod 600 {shown})"
        )));
    }
    std::fs::read_to_string(path)
        .map_err(|e| Failure::Failed(format!("cannot read the token file {shown}: {e}")))
}

/// A client's token: `--token`, else the first line of `--token-file`,
/// else `STAGEBUS_TOKEN`, else none. An empty token is refused.
pub(crate) fn client_token(
    token: Option<&str>,
    token_file: Option<&Path>,
) -> Result<Option<String>, Failure> {
    let token = match (token, token_file) {
        (Some(t), _) => Some(t.to_string()),
        (None, Some(path)) => {
            let text = read_token_file(path)?;
            let line = text.lines().next().unwrap_or("").trim().to_string();
            if line.is_empty() {
                return Err(Failure::Failed(format!(
                    "the token file {} is empty",
                    path.display()
                )));
            }
            Some(line)
        }
        (None, None) => from_env()?,
    };
    Ok(token)
}

/// The broker's tokens: the shared one and the named ones.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct BrokerTokens {
    pub shared: Option<String>,
    pub named: Vec<(String, String)>,
}

/// The broker's tokens: `--token`, and the lines of `--token-file` (a
/// line `SECRET` is the shared token, at most one; a line `NAME SECRET`
/// a named token; blank lines and lines starting with `#` are skipped),
/// else `STAGEBUS_TOKEN` (the shared token).
pub(crate) fn broker_tokens(
    token: Option<&str>,
    token_file: Option<&Path>,
) -> Result<BrokerTokens, Failure> {
    let mut tokens = BrokerTokens {
        shared: token.map(str::to_string),
        named: Vec::new(),
    };
    match token_file {
        Some(path) => {
            let text = read_token_file(path)?;
            let bad = |n: usize, why: &str| {
                Failure::Failed(format!("token file {} line {n}: {why}", path.display()))
            };
            for (i, line) in text.lines().enumerate() {
                let line = line.trim();
                if line.is_empty() || line.starts_with('#') {
                    continue;
                }
                let words: Vec<&str> = line.split_whitespace().collect();
                match words[..] {
                    [secret] => {
                        if tokens.shared.is_some() {
                            return Err(bad(
                                i + 1,
                                "a second shared token (give it a name: NAME SECRET)",
                            ));
                        }
                        tokens.shared = Some(secret.to_string());
                    }
                    [name, secret] => {
                        if tokens.named.iter().any(|(n, _)| n == name) {
                            return Err(bad(i + 1, &format!("the name '{name}' is given twice")));
                        }
                        tokens.named.push((name.to_string(), secret.to_string()));
                    }
                    _ => return Err(bad(i + 1, "expected SECRET or NAME SECRET")),
                }
            }
            if tokens.shared.is_none() && tokens.named.is_empty() {
                return Err(Failure::Failed(format!(
                    "the token file {} holds no token",
                    path.display()
                )));
            }
        }
        None if tokens.shared.is_none() => tokens.shared = from_env()?,
        None => {}
    }
    Ok(tokens)
}

fn from_env() -> Result<Option<String>, Failure> {
    match std::env::var(TOKEN_ENV) {
        Ok(t) if t.is_empty() => Ok(None),
        Ok(t) => Ok(Some(t)),
        Err(std::env::VarError::NotPresent) => Ok(None),
        Err(std::env::VarError::NotUnicode(_)) => {
            Err(Failure::Failed(format!("{TOKEN_ENV} is not valid UTF-8")))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn file(name: &str, text: &str, mode: u32) -> std::path::PathBuf {
        let dir = std::env::temp_dir().join(format!("sb-secret-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join(name);
        std::fs::write(&path, text).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
        path
    }

    fn failed(r: Result<impl std::fmt::Debug, Failure>) -> String {
        match r {
            Err(Failure::Failed(m)) => m,
            other => panic!("expected a failure, got {other:?}"),
        }
    }

    #[test]
    fn token_files_must_be_private() {
        let open = file("open", "s3cret\n", 0o644);
        let m = failed(client_token(None, Some(&open)));
        assert!(m.contains("mode 0644") && m.contains("chmod 600"), "{m}");
        let private = file("private", "s3cret\nignored\n", 0o600);
        assert_eq!(
            client_token(None, Some(&private)).unwrap().as_deref(),
            Some("s3cret")
        );
        assert_eq!(
            client_token(Some("flag"), Some(&private))
                .unwrap()
                .as_deref(),
            Some("flag")
        );
    }

    #[test]
    fn a_broker_token_file_holds_shared_and_named_tokens() {
        let f = file(
            "broker",
            "# tokens\nshared\nops o-secret\n\napp a-secret\n",
            0o400,
        );
        let t = broker_tokens(None, Some(&f)).unwrap();
        assert_eq!(t.shared.as_deref(), Some("shared"));
        assert_eq!(
            t.named,
            [
                ("ops".to_string(), "o-secret".to_string()),
                ("app".to_string(), "a-secret".to_string())
            ]
        );
        for (text, why) in [
            ("a\nb\n", "second shared"),
            ("x y z\n", "expected SECRET"),
            ("n a\nn b\n", "given twice"),
            ("# only\n", "holds no token"),
        ] {
            let f = file("bad", text, 0o600);
            let m = failed(broker_tokens(None, Some(&f)));
            assert!(m.contains(why), "{text:?}: {m}");
        }
    }
}
