//! `comfyume user …`: manage attendee logins in `<data>/users.json`.
//!
//! Safe while `serve` runs: every change is a locked, atomic rewrite of the
//! file, and the running host reloads it within a second (at once for a
//! login it has not cached). Generated passwords are printed once, on
//! stdout, as `name password` lines a script can read; notes go to stderr.
//! Hashes are never printed.

use std::io::BufRead as _;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;
use clap::Subcommand;

use crate::auth::users::UsersError;
use crate::auth::{Role, UsersFile, generate_password, hash_password};
use crate::config::Config;

/// `comfyume user`.
#[derive(Debug, Subcommand)]
pub enum UserCommand {
    /// Create one user, or `--bulk N` numbered ones; prints generated passwords once.
    Add(AddArgs),
    /// Set a new password (generated and printed once unless --password-stdin).
    Passwd(PasswdArgs),
    /// List users: name, role, enabled or disabled (never the hashes).
    List(DataArgs),
    /// Stop a user from logging in; their files stay.
    Disable(NameArgs),
    /// Let a disabled user log in again.
    Enable(NameArgs),
}

/// Where the users file is: the same data folder `serve` would use.
#[derive(Debug, clap::Args)]
pub struct DataArgs {
    /// Config file (default: config/comfyume.toml when present).
    #[arg(long)]
    config: Option<PathBuf>,
    /// Data folder (default: server.data_dir from the config, ./data).
    #[arg(long)]
    data: Option<PathBuf>,
}

/// `comfyume user add`.
#[derive(Debug, clap::Args)]
pub struct AddArgs {
    /// The user name: 1-64 of A-Z a-z 0-9 _ . - , not starting with '.'.
    #[arg(required_unless_present = "bulk", conflicts_with = "bulk")]
    name: Option<String>,
    /// attendee, instructor or admin.
    #[arg(long, default_value = "attendee")]
    role: Role,
    /// Read the password from the first line of stdin instead of generating one.
    #[arg(long, conflicts_with = "bulk")]
    password_stdin: bool,
    /// Create N users named <prefix>01 … <prefix>N; existing names are skipped.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..=10_000))]
    bulk: Option<u32>,
    /// Name prefix for --bulk.
    #[arg(long, default_value = "attendee", requires = "bulk")]
    prefix: String,
    #[command(flatten)]
    data: DataArgs,
}

/// `comfyume user passwd`.
#[derive(Debug, clap::Args)]
pub struct PasswdArgs {
    /// The user.
    name: String,
    /// Read the password from the first line of stdin instead of generating one.
    #[arg(long)]
    password_stdin: bool,
    #[command(flatten)]
    data: DataArgs,
}

/// `comfyume user disable|enable`.
#[derive(Debug, clap::Args)]
pub struct NameArgs {
    /// The user.
    name: String,
    #[command(flatten)]
    data: DataArgs,
}

/// Runs a `user` subcommand.
pub fn run(command: UserCommand) -> anyhow::Result<ExitCode> {
    match command {
        UserCommand::Add(args) => add(args),
        UserCommand::Passwd(args) => passwd(args),
        UserCommand::List(args) => list(args),
        UserCommand::Disable(args) => set_disabled(args, true),
        UserCommand::Enable(args) => set_disabled(args, false),
    }
}

/// The data folder, resolved like `serve` does; `Err(code)` after printing
/// a config error.
fn data_dir(args: &DataArgs) -> Result<PathBuf, ExitCode> {
    match Config::load(args.config.as_deref()) {
        Ok(config) => Ok(config.with_flags(None, args.data.clone()).server.data_dir),
        Err(error) => {
            eprintln!("{error}");
            Err(ExitCode::from(2))
        }
    }
}

fn params() -> argon2::Params {
    // Production strength always: the command line is not a hot path.
    argon2::Params::default()
}

fn add(args: AddArgs) -> anyhow::Result<ExitCode> {
    let data = match data_dir(&args.data) {
        Ok(data) => data,
        Err(code) => return Ok(code),
    };
    if let Some(count) = args.bulk {
        return add_bulk(&data, &args.prefix, count, args.role);
    }
    // clap guarantees a name without --bulk.
    let name = args.name.context("a user name is required")?;
    if !crate::auth::valid_user_name(&name) {
        return Err(UsersError::InvalidName(name).into());
    }
    let (password, generated) = new_password(args.password_stdin)?;
    let hash = hash_password(&password, &params())?;
    UsersFile::update(&data, |file| file.add(&name, args.role, hash))?;
    if generated {
        println!("{name} {password}");
    }
    eprintln!(
        "created {name} ({}) in {}",
        args.role,
        UsersFile::path(&data).display()
    );
    Ok(ExitCode::SUCCESS)
}

fn add_bulk(
    data: &std::path::Path,
    prefix: &str,
    count: u32,
    role: Role,
) -> anyhow::Result<ExitCode> {
    // Two digits at least, more when N needs them: attendee01 … attendee120.
    let width = count.to_string().len().max(2);
    let names: Vec<String> = (1..=count)
        .map(|i| format!("{prefix}{i:0width$}"))
        .collect();
    if let Some(bad) = names.iter().find(|n| !crate::auth::valid_user_name(n)) {
        return Err(UsersError::InvalidName(bad.clone()).into());
    }
    let created = UsersFile::update(data, |file| {
        let mut created = Vec::new();
        for name in &names {
            if file.get(name).is_some() {
                eprintln!("skipped {name}: already exists");
                continue;
            }
            let password = generate_password();
            file.add(name, role, hash_password(&password, &params())?)?;
            created.push((name.clone(), password));
        }
        Ok(created)
    })?;
    for (name, password) in &created {
        println!("{name} {password}");
    }
    eprintln!(
        "created {} {role} user(s) in {}",
        created.len(),
        UsersFile::path(data).display()
    );
    Ok(ExitCode::SUCCESS)
}

fn passwd(args: PasswdArgs) -> anyhow::Result<ExitCode> {
    let data = match data_dir(&args.data) {
        Ok(data) => data,
        Err(code) => return Ok(code),
    };
    // Fail on an unknown name before asking for or generating anything.
    if UsersFile::load(&data)?.get(&args.name).is_none() {
        return Err(UsersError::NotFound(args.name).into());
    }
    let (password, generated) = new_password(args.password_stdin)?;
    let hash = hash_password(&password, &params())?;
    UsersFile::update(&data, |file| {
        file.get_mut(&args.name)?.hash = hash;
        Ok(())
    })?;
    if generated {
        println!("{} {password}", args.name);
    }
    eprintln!("password of {} changed", args.name);
    Ok(ExitCode::SUCCESS)
}

fn list(args: DataArgs) -> anyhow::Result<ExitCode> {
    let data = match data_dir(&args) {
        Ok(data) => data,
        Err(code) => return Ok(code),
    };
    let file = UsersFile::load(&data)?;
    for user in &file.users {
        let state = if user.disabled { "disabled" } else { "enabled" };
        println!("{:<24} {:<10} {state}", user.name, user.role);
    }
    if file.users.is_empty() {
        eprintln!("no users in {}", UsersFile::path(&data).display());
    }
    Ok(ExitCode::SUCCESS)
}

fn set_disabled(args: NameArgs, disabled: bool) -> anyhow::Result<ExitCode> {
    let data = match data_dir(&args.data) {
        Ok(data) => data,
        Err(code) => return Ok(code),
    };
    UsersFile::update(&data, |file| {
        file.get_mut(&args.name)?.disabled = disabled;
        Ok(())
    })?;
    let state = if disabled { "disabled" } else { "enabled" };
    eprintln!("{} {state}", args.name);
    Ok(ExitCode::SUCCESS)
}

/// Minimum length for a chosen password; generated ones have 16.
const MIN_PASSWORD: usize = 8;

/// `(password, generated)`: from stdin's first line, or a fresh one.
fn new_password(from_stdin: bool) -> anyhow::Result<(String, bool)> {
    if !from_stdin {
        return Ok((generate_password(), true));
    }
    let mut line = String::new();
    std::io::stdin()
        .lock()
        .read_line(&mut line)
        .context("reading the password from stdin")?;
    let password = line.trim_end_matches(['\r', '\n']).to_owned();
    if password.chars().count() < MIN_PASSWORD {
        anyhow::bail!("the password on stdin must have at least {MIN_PASSWORD} characters");
    }
    Ok((password, false))
}
