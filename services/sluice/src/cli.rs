//! The command line (clap). Every option that configures the service can also come from a
//! `SLUICE_...` environment variable.

use clap::{Args, CommandFactory, FromArgMatches, Parser, Subcommand, ValueEnum};
use std::path::PathBuf;

/// Sluice: a policy service for Postfix (quotas, access control), the successor of Policyd v2.
#[derive(Debug, Parser)]
#[command(name = "sluice", version, about, propagate_version = true)]
pub struct Cli {
    /// Logging options.
    #[command(flatten)]
    pub log: LogArgs,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// Parses the command line, or prints the error (a flag of another role named as such) or
/// the help (with each role setting's default) and exits.
pub fn parse() -> Cli {
    let argv: Vec<String> = std::env::args_os()
        .map(|a| a.to_string_lossy().into_owned())
        .collect();
    let mut cmd = crate::role_check::with_defaults(Cli::command());
    let parsed = cmd
        .try_get_matches_from_mut(&argv)
        .and_then(|m| Cli::from_arg_matches(&m));
    parsed.unwrap_or_else(|e| crate::role_check::explain_flag_error(e, &mut cmd, &argv).exit())
}

/// Log format and level.
#[derive(Debug, Clone, Args)]
pub struct LogArgs {
    /// Log line format on stderr.
    #[arg(
        long,
        global = true,
        value_enum,
        default_value = "plain",
        env = "SLUICE_LOG_FORMAT"
    )]
    pub log_format: LogFormat,
    /// Verdict log lines of `serve` and `edge`: `sluice` (Sluice's fields; with
    /// `--log-format json` each its own JSON key) or `policyd` (Policyd 2's mail.log lines,
    /// `module=Quotas, action=defer, ..., reason=quota_match, ...`, for existing greps and
    /// logwatch scripts).
    #[arg(
        long,
        global = true,
        value_enum,
        default_value = "sluice",
        env = "SLUICE_LOG_STYLE"
    )]
    pub log_style: LogStyle,
    /// Log filter (tracing EnvFilter syntax: `info`, `sluice_edge=debug`, ...).
    #[arg(long, global = true, default_value = "info", env = "SLUICE_LOG")]
    pub log_level: String,
}

/// Log line format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    Plain,
    /// One JSON object per line.
    Json,
}

/// Verdict log line style.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogStyle {
    /// Sluice's verdict fields (`..., policy=..., quota=..., counter=101/100`).
    Sluice,
    /// Policyd 2's module log lines.
    Policyd,
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the whole policy service in one process (embedded: SQLite policies and in-process
    /// counters by default; `--database postgres://...` and `--redis ...` for a single-node
    /// production setup).
    Serve(crate::role_args::ServeArgs),
    /// Run a stateless edge node: the Postfix policy protocol, policies from the database,
    /// counters in the quota service (`--quota http://...`).
    Edge(crate::role_args::EdgeArgs),
    /// Run the quota service: the gRPC counter service on Redis (Cluster) (`--redis ...`).
    Quota(crate::role_args::QuotaArgs),
    /// Print every setting of serve, edge and quota (TOML key, flag, environment variable,
    /// default per role) as the Markdown of docs/settings.md.
    Settings,
    /// Import, export or check the declarative policy file.
    Policy {
        /// What to do with policies.
        #[command(subcommand)]
        command: PolicyCommand,
    },
    /// Import policies, groups, quotas and access control from a Policyd v2 database.
    ImportPolicyd(ImportPolicydArgs),
    /// Show what would happen to a request, and why (charges nothing).
    Explain(ExplainArgs),
    /// Run beside one Postfix (as a user that may run postsuper): release the messages DELAY
    /// quotas hold when Sluice says they have room (docs/delay.md).
    ReleaseAgent(ReleaseAgentArgs),
    /// Create or upgrade the policy database schema.
    Migrate(DatabaseArgs),
    /// Run the admin service (web UI and REST API) on its own, for a cluster: on its
    /// PostgreSQL policy database (`--database`, migrated by `sluice migrate`), on
    /// `--admin-listen`; or manage its accounts and API tokens (`user`, `token`;
    /// docs/admin.md).
    #[command(args_conflicts_with_subcommands = true)]
    Admin {
        /// What to manage (none: run the admin service).
        #[command(subcommand)]
        command: Option<AdminCommand>,
        /// The role's settings.
        #[command(flatten)]
        role: crate::role_args::AdminRoleArgs,
    },
    /// Send one policy request to a running `sluice serve` or `edge` and print the reply
    /// (exit 0 when an action came back; `helm test` runs it).
    Ask(AskArgs),
    /// Print a shell completion script to standard output (generated from this command line).
    Completions(CompletionsArgs),
    /// Write man pages (sluice.1 and one page per subcommand) into a directory.
    Man(ManArgs),
    /// Accounting's per-period totals (`report --period 2026-11`).
    Accounting {
        /// What to do.
        #[command(subcommand)]
        command: crate::accounting::AccountingCommand,
    },
}

/// `sluice admin ...`.
#[derive(Debug, Subcommand)]
pub enum AdminCommand {
    /// Accounts of the admin service.
    User {
        /// What to do with accounts.
        #[command(subcommand)]
        command: UserCommand,
    },
    /// API tokens (for `Authorization: Bearer TOKEN`).
    Token {
        /// What to do with tokens.
        #[command(subcommand)]
        command: TokenCommand,
    },
}

/// The roles of admin accounts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum AccountRole {
    /// Reads and changes every policy and group.
    Admin,
    /// Reads everything, changes nothing.
    Viewer,
    /// Reads and changes only the policies of its domains (--domain).
    DomainAdmin,
}

/// `sluice admin user ...`.
#[derive(Debug, Subcommand)]
pub enum UserCommand {
    /// Add an account. The password is asked for (twice, without echo) on a terminal, or
    /// read as the first line of standard input; never from the command line.
    Add(UserAddArgs),
    /// List the accounts (name, role, domains).
    List(DatabaseArgs),
    /// Remove an account with its tokens and sessions.
    Remove(UserNameArgs),
    /// Set a new password (read as for `add`); the account's sessions end.
    Passwd(UserNameArgs),
}

/// `sluice admin user add`.
#[derive(Debug, Clone, Args)]
pub struct UserAddArgs {
    /// The login name.
    pub name: String,
    /// What the account may do.
    #[arg(long, value_enum)]
    pub role: AccountRole,
    /// A domain a domain-admin manages (repeat for several); only for --role domain-admin.
    #[arg(long = "domain")]
    pub domains: Vec<String>,
    /// Policy database.
    #[command(flatten)]
    pub db: DatabaseArgs,
}

/// `sluice admin user remove|passwd`.
#[derive(Debug, Clone, Args)]
pub struct UserNameArgs {
    /// The login name.
    pub name: String,
    /// Policy database.
    #[command(flatten)]
    pub db: DatabaseArgs,
}

/// `sluice admin token ...`.
#[derive(Debug, Subcommand)]
pub enum TokenCommand {
    /// Make a token acting as an account; it is printed once and stored only as a digest.
    Add(TokenAddArgs),
    /// List the tokens (name, account, created); never the tokens themselves.
    List(DatabaseArgs),
    /// Revoke a token: requests with it are refused from then on.
    Revoke(TokenNameArgs),
}

/// `sluice admin token add`.
#[derive(Debug, Clone, Args)]
pub struct TokenAddArgs {
    /// The token's name (unique), e.g. what uses it.
    pub name: String,
    /// The account it acts as (with that account's role and domains).
    #[arg(long)]
    pub user: String,
    /// Policy database.
    #[command(flatten)]
    pub db: DatabaseArgs,
}

/// `sluice admin token revoke`.
#[derive(Debug, Clone, Args)]
pub struct TokenNameArgs {
    /// The token's name.
    pub name: String,
    /// Policy database.
    #[command(flatten)]
    pub db: DatabaseArgs,
}

/// `sluice ask`.
#[derive(Debug, Clone, Args)]
pub struct AskArgs {
    /// The policy listener: HOST:PORT (a name is resolved; every address is tried).
    pub server: String,
    /// protocol_state.
    #[arg(long, default_value = "RCPT")]
    pub protocol_state: String,
    /// sender (empty for the null sender).
    #[arg(long, default_value = "")]
    pub sender: String,
    /// recipient.
    #[arg(long, default_value = "postmaster@example.com")]
    pub recipient: String,
    /// client_address.
    #[arg(long, default_value = "192.0.2.1")]
    pub client_address: String,
    /// instance (the message a request belongs to); default: a new one for each call.
    #[arg(long)]
    pub instance: Option<String>,
    /// Give up after this many seconds (connecting and waiting for the reply).
    #[arg(long, default_value_t = 5)]
    pub timeout_secs: u64,
}

/// `sluice completions`.
#[derive(Debug, Clone, Args)]
pub struct CompletionsArgs {
    /// The shell: bash (save as /usr/share/bash-completion/completions/sluice), zsh (as
    /// _sluice in a directory of $fpath), fish (as ~/.config/fish/completions/sluice.fish),
    /// elvish or powershell.
    pub shell: clap_complete::Shell,
}

/// `sluice man`.
#[derive(Debug, Clone, Args)]
pub struct ManArgs {
    /// The directory to write the pages into (created if missing; existing pages replaced).
    pub dir: PathBuf,
}

/// Where policies are stored.
#[derive(Debug, Clone, Args)]
pub struct DatabaseArgs {
    /// Policy database URL: `sqlite://FILE` (created if missing) or `postgres://...`.
    /// Default: `sqlite://sluice.db` in the working directory.
    #[arg(long, env = "SLUICE_DATABASE")]
    pub database: Option<String>,
}

impl DatabaseArgs {
    /// The URL to use.
    pub fn url(&self) -> String {
        self.database
            .clone()
            .unwrap_or_else(sluice_store::default_database_url)
    }
}

/// `sluice policy ...`.
#[derive(Debug, Subcommand)]
pub enum PolicyCommand {
    /// Replace all policies with those of a TOML policy file (validated first). A file
    /// equal to the stored policies changes nothing (the version stays).
    Import(PolicyImportArgs),
    /// Print all policies as a TOML policy file.
    Export(DatabaseArgs),
    /// Validate a TOML policy file: errors name file, line and field; warnings name inert
    /// definitions.
    Check(PolicyCheckArgs),
    /// Show how a TOML policy file differs from the stored policies (a unified diff, stored
    /// `-`, file `+`). Exit status 0: the same; 1: different; 2: trouble (invalid file,
    /// unreadable database).
    Diff(PolicyDiffArgs),
}

/// `sluice policy diff`.
#[derive(Debug, Clone, Args)]
pub struct PolicyDiffArgs {
    /// The policy file.
    pub file: PathBuf,
    /// Policy database.
    #[command(flatten)]
    pub db: DatabaseArgs,
}

/// `sluice policy import`.
#[derive(Debug, Clone, Args)]
pub struct PolicyImportArgs {
    /// The policy file.
    pub file: PathBuf,
    /// Policy database.
    #[command(flatten)]
    pub db: DatabaseArgs,
    /// The metrics listener of a running `sluice serve` or `edge` on this database: after
    /// the import, its `/metrics` is read until it reports the new version (at most 3 s),
    /// and the result is printed. `off` skips the check.
    #[arg(long, env = "SLUICE_METRICS_LISTEN", default_value = "127.0.0.1:10032")]
    pub server: String,
    /// Show what would change (a diff of the stored policies against the file) and change
    /// nothing.
    #[arg(long)]
    pub dry_run: bool,
}

/// `sluice policy check`.
#[derive(Debug, Clone, Args)]
pub struct PolicyCheckArgs {
    /// The policy file.
    pub file: PathBuf,
    /// Exit non-zero on warnings too.
    #[arg(long)]
    pub strict: bool,
}

/// `sluice import-policyd`.
#[derive(Debug, Clone, Args)]
pub struct ImportPolicydArgs {
    /// The Policyd v2 database: `sqlite:///path/policyd.db`, `postgres://...`, `mysql://...`.
    #[arg(long)]
    pub from: String,
    /// Where to import to.
    #[command(flatten)]
    pub db: DatabaseArgs,
    /// Report what would be imported; write nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Also write the imported policies as a TOML policy file.
    #[arg(long)]
    pub export: Option<PathBuf>,
}

/// `sluice release-agent`.
#[derive(Debug, Clone, Args)]
pub struct ReleaseAgentArgs {
    /// The admin service of the Sluice that holds the messages (`sluice serve
    /// --admin-listen`, or `sluice admin`).
    #[arg(
        long,
        env = "SLUICE_ADMIN_URL",
        default_value = "http://127.0.0.1:10035"
    )]
    pub admin_url: String,
    /// File holding an admin's API token (`sluice admin token add`); or set
    /// SLUICE_ADMIN_TOKEN.
    #[arg(long, env = "SLUICE_ADMIN_TOKEN_FILE")]
    pub token_file: Option<PathBuf>,
    /// This MTA as Sluice sees it: the address its policy connections come from (Postfix on
    /// the same host as `sluice serve`: 127.0.0.1).
    #[arg(long, env = "SLUICE_AGENT_MTA", default_value = "127.0.0.1")]
    pub mta: String,
    /// Time between two syncs, in milliseconds (at least 100).
    #[arg(long, env = "SLUICE_AGENT_INTERVAL_MS", default_value_t = 1000)]
    pub interval_ms: u64,
    /// Postfix configuration directory (passed as `-c DIR` to postqueue and postsuper).
    #[arg(long, env = "SLUICE_AGENT_POSTFIX_CONFIG_DIR")]
    pub postfix_config_dir: Option<PathBuf>,
    /// Directory of postqueue and postsuper (default: found on PATH).
    #[arg(long, env = "SLUICE_AGENT_POSTFIX_BIN_DIR")]
    pub postfix_bin_dir: Option<PathBuf>,
    /// CA certificates (PEM) for an https admin URL (default: the system's).
    #[arg(long, env = "SLUICE_AGENT_CA_FILE")]
    pub ca_file: Option<PathBuf>,
    /// Sync once and exit (non-zero when it fails): for cron, or a first test.
    #[arg(long)]
    pub once: bool,
}

/// `sluice explain`.
#[derive(Debug, Clone, Args)]
pub struct ExplainArgs {
    /// Policy database (used when no server answers).
    #[command(flatten)]
    pub db: DatabaseArgs,
    /// A running `sluice serve`'s metrics listener, for live counter levels.
    #[arg(long, env = "SLUICE_METRICS_LISTEN", default_value = "127.0.0.1:10032")]
    pub server: String,
    /// Evaluate locally from the database, even if a server is running (counters at zero).
    #[arg(long)]
    pub offline: bool,
    /// protocol_state.
    #[arg(long, default_value = "RCPT")]
    pub protocol_state: String,
    /// sender (empty for the null sender).
    #[arg(long)]
    pub sender: Option<String>,
    /// recipient.
    #[arg(long)]
    pub recipient: Option<String>,
    /// client_address.
    #[arg(long)]
    pub client_address: Option<String>,
    /// client_name.
    #[arg(long)]
    pub client_name: Option<String>,
    /// reverse_client_name.
    #[arg(long)]
    pub reverse_client_name: Option<String>,
    /// helo_name.
    #[arg(long)]
    pub helo: Option<String>,
    /// sasl_username.
    #[arg(long)]
    pub sasl_username: Option<String>,
    /// size in bytes.
    #[arg(long)]
    pub size: Option<u64>,
    /// instance.
    #[arg(long)]
    pub instance: Option<String>,
    /// recipient_count (sent at DATA and END-OF-MESSAGE).
    #[arg(long)]
    pub recipient_count: Option<u64>,
    /// server_port: the port the client connected to (for `server_port=` member specs).
    #[arg(long)]
    pub server_port: Option<u16>,
    /// server_address: the address the client connected to.
    #[arg(long)]
    pub server_address: Option<String>,
    /// policy_context: what the Postfix listener names itself (Postfix 3.1+).
    #[arg(long)]
    pub policy_context: Option<String>,
    /// Read the request as protocol text (`name=value` lines) from standard input.
    #[arg(long)]
    pub stdin: bool,
}
