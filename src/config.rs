//! Settings from a config file and from `HEALTH_CHECKER_*` environment variables, merged
//! with the command line: command line > environment > file > default. For each option the
//! highest source that sets it wins outright (a repeatable option is replaced, never merged).
//! Every value then goes through the one validator, [`cli::build`].

use std::ffi::OsString;
use std::fmt::Write as _;
use std::fs::File;
use std::io::Read;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use crate::cli::{self, Config, OPTIONS, Opt, Setting, Source, UsageError};

/// Largest config file read: a few hundred lines is already a large setup.
const MAX_FILE_BYTES: u64 = 1024 * 1024;
/// Prefix of our environment variables.
const ENV_PREFIX: &str = "HEALTH_CHECKER_";
/// Variables we set for the `--on-change` hook: ours, but not settings, so never warned about.
const HOOK_VARS: &[&str] = &["STATE", "PREVIOUS_STATE", "REASONS", "TIME"];
/// Options that may be given several times.
const REPEATABLE: &[&str] = &["port", "tcp", "http", "script"];
/// Repeatable options whose environment value may also list values with commas.
const COMMA_LISTS: &[&str] = &["port", "tcp", "http"];

/// A configuration with where each setting came from.
#[derive(Debug)]
pub struct Loaded {
    /// The validated configuration.
    pub config: Config,
    /// The settings that won, in option order, for `--check-config`.
    pub settings: Vec<Setting>,
    /// `HEALTH_CHECKER_*` variables that name no option, to warn about once logging is up.
    pub unknown_env: Vec<String>,
    /// Whether `--check-config` was asked for.
    pub check_only: bool,
}

/// Loads every source and validates the result. `args` are the command line's settings.
pub fn load(
    args: Vec<Setting>,
    env: impl IntoIterator<Item = (OsString, OsString)>,
) -> Result<Loaded, UsageError> {
    let (env, unknown_env) = from_env(env)?;
    let check_only = args.iter().any(|s| s.opt.name == "check-config");
    let file_name = args
        .iter()
        .chain(&env)
        .rev()
        .find(|s| s.opt.name == "config")
        .map(|s| s.value.clone());
    let file = match &file_name {
        Some(path) => parse_file(path, &read_file(path)?)?,
        None => Vec::new(),
    };
    if args.is_empty() && env.is_empty() {
        // Nothing set anywhere (a file can only be named by these two): the reference
        // tool's "no arguments" case.
        return Err(UsageError::NoArguments);
    }
    let settings = merge(&[&args, &env, &file]);
    let config = cli::build(&settings)?;
    Ok(Loaded {
        config,
        settings,
        unknown_env,
        check_only,
    })
}

/// For each option in table order, the settings of the highest source that has any.
fn merge(sources: &[&[Setting]]) -> Vec<Setting> {
    let mut out = Vec::new();
    for opt in OPTIONS {
        let winner = sources
            .iter()
            .find(|src| src.iter().any(|s| s.opt.name == opt.name));
        if let Some(src) = winner {
            out.extend(src.iter().filter(|s| s.opt.name == opt.name).cloned());
        }
    }
    out
}

fn read_file(path: &str) -> Result<String, UsageError> {
    let fail = |why: String| UsageError::Source(format!("cannot read config file {path:?}: {why}"));
    let file = File::open(path).map_err(|e| fail(crate::check::describe(&e)))?;
    let mut text = Vec::new();
    file.take(MAX_FILE_BYTES + 1)
        .read_to_end(&mut text)
        .map_err(|e| fail(crate::check::describe(&e)))?;
    if text.len() as u64 > MAX_FILE_BYTES {
        return Err(fail(format!("larger than {} KiB", MAX_FILE_BYTES / 1024)));
    }
    String::from_utf8(text).map_err(|_| fail("not valid UTF-8".to_string()))
}

/// Parses a config file's text: `name = value` lines, blank lines and `#` comments.
pub fn parse_file(path: &str, text: &str) -> Result<Vec<Setting>, UsageError> {
    let mut out = Vec::new();
    for (i, raw) in text.lines().enumerate() {
        let source = Source::File {
            path: path.to_string(),
            line: i + 1,
        };
        let line = raw.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let Some((name, value)) = line.split_once('=') else {
            return Err(UsageError::Source(format!(
                "{source}: expected `name = value`, got {line:?}"
            )));
        };
        let name = name.trim();
        let opt = match cli::find(name) {
            Some(o) if is_setting(o) && o.name != "config" => o,
            Some(o) if o.name == "config" => {
                return Err(UsageError::Source(format!(
                    "{source}: config cannot be set in a config file"
                )));
            }
            _ => {
                return Err(UsageError::Source(format!(
                    "{source}: unknown setting {name:?}"
                )));
            }
        };
        out.push(Setting {
            opt,
            value: value.trim().to_string(),
            source,
        });
    }
    Ok(out)
}

/// Whether an option can be set from a file or the environment (not `--help` and the like).
fn is_setting(o: &Opt) -> bool {
    !matches!(o.name, "help" | "version" | "check-config")
}

/// Settings from `HEALTH_CHECKER_*` variables, and the names of the unknown ones.
fn from_env(
    vars: impl IntoIterator<Item = (OsString, OsString)>,
) -> Result<(Vec<Setting>, Vec<String>), UsageError> {
    let mut settings = Vec::new();
    let mut unknown = Vec::new();
    let mut vars: Vec<(String, OsString)> = vars
        .into_iter()
        .filter_map(|(k, v)| Some((k.into_string().ok()?, v)))
        .filter(|(k, _)| k.starts_with(ENV_PREFIX))
        .collect();
    // The environment has no order; a stable one keeps messages reproducible.
    vars.sort();
    for (var, value) in vars {
        let suffix = &var[ENV_PREFIX.len()..];
        let name = suffix.to_ascii_lowercase().replace('_', "-");
        let opt = match cli::find(&name) {
            Some(o)
                if is_setting(o) && suffix.bytes().all(|b| b.is_ascii_uppercase() || b == b'_') =>
            {
                o
            }
            _ => {
                if !HOOK_VARS.contains(&suffix) {
                    unknown.push(var);
                }
                continue;
            }
        };
        let source = Source::Env(var.clone());
        let value = value
            .into_string()
            .map_err(|_| UsageError::Source(format!("{source}: not valid UTF-8")))?;
        for v in split_env_value(opt.name, &value) {
            settings.push(Setting {
                opt,
                value: v,
                source: source.clone(),
            });
        }
    }
    Ok((settings, unknown))
}

/// A repeatable option's values: one per line, and for ports, TCP and HTTP also separated by
/// commas. A `--tcp` piece that starts with `send=` or `expect=` belongs to the one before it.
fn split_env_value(name: &str, value: &str) -> Vec<String> {
    if !REPEATABLE.contains(&name) {
        return vec![value.trim().to_string()];
    }
    let mut out: Vec<String> = Vec::new();
    for line in value.lines().map(str::trim).filter(|l| !l.is_empty()) {
        if !COMMA_LISTS.contains(&name) {
            out.push(line.to_string());
            continue;
        }
        let mut first_of_line = true;
        for piece in line.split(',').map(str::trim) {
            let continues =
                name == "tcp" && (piece.starts_with("send=") || piece.starts_with("expect="));
            match out.last_mut() {
                Some(last) if continues && !first_of_line => {
                    last.push(',');
                    last.push_str(piece);
                }
                _ if piece.is_empty() => {}
                _ => out.push(piece.to_string()),
            }
            first_of_line = false;
        }
    }
    out
}

/// The effective configuration in the config-file format, each setting under a comment that
/// says where it came from. Loading it again with `--config` gives the same configuration.
pub fn render(settings: &[Setting]) -> String {
    let mut out = format!(
        "# health-checker {} effective configuration\n# precedence: command line > environment > file > default\n",
        env!("CARGO_PKG_VERSION")
    );
    for opt in OPTIONS
        .iter()
        .filter(|o| is_setting(o) && o.name != "config")
    {
        let set: Vec<&Setting> = settings.iter().filter(|s| s.opt.name == opt.name).collect();
        if set.is_empty() {
            match opt.default {
                Some(d) => {
                    let _ = writeln!(out, "# default\n{} = {d}", opt.name);
                }
                None => {
                    let _ = writeln!(out, "# {} is not set", opt.name);
                }
            }
            continue;
        }
        for s in set {
            let _ = writeln!(out, "# from {}\n{} = {}", s.source, opt.name, s.value);
        }
    }
    out
}

/// Problems found by `--check-config` beyond the values themselves: scripts that cannot run
/// (errors) and scripts without a `#!` line (warnings).
pub fn check_scripts(config: &Config) -> (Vec<String>, Vec<String>) {
    let mut errors = Vec::new();
    let mut warnings = Vec::new();
    let programs = config
        .scripts
        .iter()
        .chain(&config.on_change)
        .map(|s| s.program.as_str());
    for program in programs {
        match locate(program) {
            Err(why) => errors.push(format!("script {program:?}: {why}")),
            Ok(path) => {
                let mut head = [0u8; 4];
                let n = File::open(&path)
                    .and_then(|mut f| f.read(&mut head))
                    .unwrap_or(0);
                let head = &head[..n];
                if !head.starts_with(b"#!") && !head.starts_with(b"\x7fELF") {
                    warnings.push(format!(
                        "script {program:?} ({}) has no #! line: it will fail with \"exec format error\"",
                        path.display()
                    ));
                }
            }
        }
    }
    (errors, warnings)
}

/// Finds `program` as exec would: a path as it is, a bare name in PATH; it must be an
/// executable file.
fn locate(program: &str) -> Result<PathBuf, String> {
    let executable = |p: &Path| {
        p.metadata()
            .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
    };
    if program.contains('/') {
        let p = PathBuf::from(program);
        return match p.metadata() {
            Err(_) => Err("no such file".to_string()),
            Ok(_) if !executable(&p) => Err("not an executable file".to_string()),
            Ok(_) => Ok(p),
        };
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .map(|dir| dir.join(program))
        .find(|p| executable(p))
        .ok_or_else(|| "not found in PATH".to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn file(text: &str) -> Result<Vec<Setting>, UsageError> {
        parse_file("/etc/hc.conf", text)
    }

    fn env(vars: &[(&str, &str)]) -> Vec<(OsString, OsString)> {
        vars.iter()
            .map(|(k, v)| (OsString::from(k), OsString::from(v)))
            .collect()
    }

    fn args(a: &[&str]) -> Vec<Setting> {
        match cli::parse_args(a).unwrap() {
            cli::Command::Settings(s) => s,
            other => panic!("{other:?}"),
        }
    }

    fn values(s: &[Setting], name: &str) -> Vec<String> {
        s.iter()
            .filter(|s| s.opt.name == name)
            .map(|s| s.value.clone())
            .collect()
    }

    #[test]
    fn lines_comments_blanks_and_trimming() {
        let s = file("# a comment\n\n  port = 5432  \nport=3306\n\tscript =  /bin/x --name 'a b'  \nsingleflight = true\n")
            .unwrap();
        assert_eq!(values(&s, "port"), ["5432", "3306"]);
        assert_eq!(values(&s, "script"), ["/bin/x --name 'a b'"]);
        assert_eq!(values(&s, "singleflight"), ["true"]);
        assert_eq!(
            s[0].source,
            Source::File {
                path: "/etc/hc.conf".into(),
                line: 3
            }
        );
    }

    #[test]
    fn equals_signs_inside_values_are_kept() {
        let s = file("tcp = 127.0.0.1:2181,send=ruok,expect=imok\nhttp = http://h/x?a=b").unwrap();
        assert_eq!(values(&s, "tcp"), ["127.0.0.1:2181,send=ruok,expect=imok"]);
        assert_eq!(values(&s, "http"), ["http://h/x?a=b"]);
    }

    #[test]
    fn file_errors_name_file_and_line() {
        assert_eq!(
            file("port = 1\nthreashold = 3").unwrap_err().to_string(),
            "/etc/hc.conf:2: unknown setting \"threashold\""
        );
        assert_eq!(
            file("\n\nport 5432").unwrap_err().to_string(),
            "/etc/hc.conf:3: expected `name = value`, got \"port 5432\""
        );
        assert_eq!(
            file("help = true").unwrap_err().to_string(),
            "/etc/hc.conf:1: unknown setting \"help\""
        );
        assert_eq!(
            file("config = /x").unwrap_err().to_string(),
            "/etc/hc.conf:1: config cannot be set in a config file"
        );
        let bad = file("\nport = abc").unwrap();
        assert_eq!(
            cli::build(&bad).unwrap_err().to_string(),
            "/etc/hc.conf:2: invalid value \"abc\" for --port: not a port number (1-65535)"
        );
    }

    #[test]
    fn environment_values_and_lists() {
        let (s, unknown) = from_env(env(&[
            ("HEALTH_CHECKER_PORT", "5432, 3306\n8080"),
            (
                "HEALTH_CHECKER_TCP",
                "127.0.0.1:2181,send=ruok,expect=imok,db:5432",
            ),
            ("HEALTH_CHECKER_SCRIPT", "/bin/a x,y\n/bin/b"),
            ("HEALTH_CHECKER_SCRIPT_TIMEOUT", "2.5"),
            ("HEALTH_CHECKER_SINGLEFLIGHT", "true"),
            ("HEALTH_CHECKER_DEBUG", "true"),
            ("HEALTH_CHECKER_STATE", "healthy"),
            ("PATH", "/bin"),
        ]))
        .unwrap();
        assert_eq!(values(&s, "port"), ["5432", "3306", "8080"]);
        assert_eq!(
            values(&s, "tcp"),
            ["127.0.0.1:2181,send=ruok,expect=imok", "db:5432"]
        );
        assert_eq!(values(&s, "script"), ["/bin/a x,y", "/bin/b"]);
        assert_eq!(values(&s, "script-timeout"), ["2.5"]);
        assert_eq!(unknown, ["HEALTH_CHECKER_DEBUG"]);
        let c = cli::build(&s).unwrap();
        assert_eq!(c.script_timeout, Duration::from_millis(2500));
        assert!(c.singleflight);
    }

    #[test]
    fn environment_errors_name_the_variable() {
        let (s, _) = from_env(env(&[("HEALTH_CHECKER_PORT", "abc")])).unwrap();
        assert_eq!(
            cli::build(&s).unwrap_err().to_string(),
            "environment HEALTH_CHECKER_PORT: invalid value \"abc\" for --port: not a port number (1-65535)"
        );
    }

    #[test]
    fn precedence_for_every_pair_of_sources() {
        let f = file("port = 1\nport = 2\nscript-timeout = 3\nworkers = 4").unwrap();
        let (e, _) = from_env(env(&[
            ("HEALTH_CHECKER_PORT", "10"),
            ("HEALTH_CHECKER_SCRIPT_TIMEOUT", "30"),
        ]))
        .unwrap();
        let a = args(&["--port", "100"]);
        // args > env: a repeatable option is replaced whole, never merged.
        let m = merge(&[&a, &e, &f]);
        assert_eq!(values(&m, "port"), ["100"]);
        // env > file.
        assert_eq!(values(&m, "script-timeout"), ["30"]);
        // file > default.
        assert_eq!(values(&m, "workers"), ["4"]);
        assert_eq!(cli::build(&m).unwrap().workers, 4);
        // args > file, with no environment.
        let m = merge(&[&a, &[], &f]);
        assert_eq!(values(&m, "port"), ["100"]);
        // env > file, for a repeatable option.
        let m = merge(&[&[], &e, &f]);
        assert_eq!(values(&m, "port"), ["10"]);
        // the file's own repeated values stay together, in order.
        let m = merge(&[&[], &[], &f]);
        assert_eq!(values(&m, "port"), ["1", "2"]);
    }

    #[test]
    fn once_ignores_serving_settings_from_a_file_but_not_from_the_command_line() {
        let f = file("port = 1\nlistener = 0.0.0.0:6000\ninterval = 5").unwrap();
        let m = merge(&[&args(&["--once"]), &[], &f]);
        assert!(cli::build(&m).unwrap().once);
        let m = merge(&[&args(&["--once", "--interval", "5"]), &[], &f]);
        assert!(cli::build(&m).is_err());
    }

    #[test]
    fn rendering_round_trips() {
        let f =
            file("port = 5432\nscript = /bin/x --name 'a b'\ndeadline = 4\nsingleflight = true")
                .unwrap();
        let m = merge(&[&args(&["--port", "3306"]), &[], &f]);
        let text = render(&m);
        assert!(
            text.contains("# from the command line\nport = 3306\n"),
            "{text}"
        );
        assert!(
            text.contains("# from /etc/hc.conf:2\nscript = /bin/x --name 'a b'\n"),
            "{text}"
        );
        assert!(text.contains("# default\nscript-timeout = 5\n"), "{text}");
        assert!(text.contains("# interval is not set\n"), "{text}");
        let again = parse_file("printed", &text).unwrap();
        assert_eq!(cli::build(&again).unwrap(), cli::build(&m).unwrap());
    }

    #[test]
    fn locating_programs() {
        assert!(locate("sh").is_ok());
        assert_eq!(locate("/nonexistent/x").unwrap_err(), "no such file");
        assert_eq!(locate("/etc/passwd").unwrap_err(), "not an executable file");
        assert_eq!(
            locate("no-such-program-here").unwrap_err(),
            "not found in PATH"
        );
    }
}
