//! `ternd passwd`: manages a password file, with mosquitto_passwd's flags. Hashes are
//! written as argon2id; the `$6$` and `$7$` lines of mosquitto's files are kept as they are.

use std::io::IsTerminal;
use std::path::{Path, PathBuf};

use clap::Args;
use tern_broker::auth::password::upgrade_plaintext;
use tern_broker::auth::{PasswordFile, PasswordHashKind};

/// Manage a password file (mosquitto's format; new hashes are argon2id).
#[derive(Debug, Args)]
#[command(
    override_usage = "ternd passwd [-c | -D] passwordfile username\n       \
                      ternd passwd -b [-c] passwordfile username password\n       \
                      ternd passwd -U passwordfile"
)]
pub(crate) struct PasswdArgs {
    /// Create a new password file (an existing one is overwritten).
    #[arg(short = 'c', conflicts_with_all = ["delete", "upgrade"])]
    create: bool,
    /// Delete the user.
    #[arg(short = 'D', conflicts_with_all = ["batch", "upgrade"])]
    delete: bool,
    /// Take the password from the command line (batch mode) rather than a prompt.
    #[arg(short = 'b', conflicts_with = "upgrade")]
    batch: bool,
    /// Upgrade a file of plain-text `username:password` lines to hashes.
    #[arg(short = 'U')]
    upgrade: bool,
    /// The password file.
    passwordfile: PathBuf,
    /// The user to add, change or delete.
    username: Option<String>,
    /// The password (with -b).
    password: Option<String>,
}

/// Runs the command; `Err` is the message for stderr.
pub(crate) fn run(args: &PasswdArgs) -> Result<(), String> {
    let path = &args.passwordfile;
    if args.upgrade {
        if args.username.is_some() {
            return Err("-U takes only the password file".into());
        }
        let text = read(path)?;
        let file = upgrade_plaintext(&text).map_err(|e| format!("{}: {e}", path.display()))?;
        return write(path, &file);
    }
    let Some(username) = args.username.as_deref() else {
        return Err("a username is needed".into());
    };
    if username.contains(':') || username.is_empty() {
        return Err("a username may not be empty or contain ':'".into());
    }
    if args.password.is_some() && !args.batch {
        return Err("a password on the command line needs -b".into());
    }
    let mut file = if args.create {
        PasswordFile::default()
    } else {
        let text = read(path)?;
        PasswordFile::parse(&text).map_err(|e| format!("{}: {e}", path.display()))?
    };
    if args.delete {
        if !file.remove(username) {
            return Err(format!("user {username} not in {}", path.display()));
        }
        return write(path, &file);
    }
    let password = match (&args.password, args.batch) {
        (Some(password), true) => password.clone(),
        (None, true) => return Err("-b needs a password".into()),
        (_, false) => prompt()?,
    };
    file.set(username, PasswordHashKind::argon2id(password.as_bytes()));
    write(path, &file)
}

fn prompt() -> Result<String, String> {
    if !std::io::stdin().is_terminal() {
        return Err("no terminal to ask for the password: use -b".into());
    }
    let first = rpassword::prompt_password("Password: ").map_err(|e| e.to_string())?;
    let second = rpassword::prompt_password("Reenter password: ").map_err(|e| e.to_string())?;
    if first != second {
        return Err("passwords do not match".into());
    }
    Ok(first)
}

fn read(path: &Path) -> Result<String, String> {
    std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))
}

/// Writes the file through a temporary file in the same folder and a rename, so that a
/// broker reloading it never reads half a file; readable by its owner only.
fn write(path: &Path, file: &PasswordFile) -> Result<(), String> {
    let err = |e: std::io::Error| format!("{}: {e}", path.display());
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let name = path
        .file_name()
        .ok_or_else(|| format!("{}: not a file name", path.display()))?;
    let tmp = dir.join(format!(
        ".{}.tmp{}",
        name.to_string_lossy(),
        std::process::id()
    ));
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let result = (|| {
        use std::io::Write;
        let mut out = options.open(&tmp)?;
        out.write_all(file.to_text().as_bytes())?;
        out.sync_all()?;
        std::fs::rename(&tmp, path)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result.map_err(err)
}
