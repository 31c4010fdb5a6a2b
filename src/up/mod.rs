//! `flomastr up`: the whole stack on loopback in one command — PostgreSQL with pgvector, a real
//! Kubernetes API server (or the cluster in `KUBECONFIG`), the engine, the operator and the
//! provider sandbox — with the sample tenant applied and Ready. Ctrl-C tears it all down.
//!
//! The servers come from the repository's scripts (shared with `scripts/test`); the programs are
//! this binary started again with another subcommand.

mod cluster;
mod processes;
mod progress;
mod sample;
mod scripts;
mod secrets;
mod summary;

use processes::{Program, ensure_free, wait_http};
use progress::{Step, step};
use scripts::{Scripts, parse_exports};
use std::path::{Path, PathBuf};
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// Settings of `flomastr up`.
#[derive(clap::Args, Debug, Clone)]
pub struct UpArgs {
    /// The flomastr checkout holding `scripts/` and `manifests/` (default: found from the
    /// current directory upwards).
    #[arg(long, env = "FLOMASTR_ROOT")]
    pub root: Option<PathBuf>,

    /// Where the stack keeps its state, logs and minted secrets (default
    /// `$FLOMASTR_CACHE/stack`, i.e. `~/.cache/flomastr/stack`). Kept across runs.
    #[arg(long, env = "FLOMASTR_STACK_DIR")]
    pub state_dir: Option<PathBuf>,

    /// Loopback port of the engine.
    #[arg(long, env = "FLOMASTR_ENGINE_PORT", default_value_t = 8080)]
    pub engine_port: u16,

    /// Loopback port of the provider sandbox.
    #[arg(long, env = "FLOMASTR_SANDBOX_PORT", default_value_t = 8090)]
    pub sandbox_port: u16,

    /// Loopback port of the operator's metrics and health endpoint.
    #[arg(long, env = "FLOMASTR_OPERATOR_PORT", default_value_t = 9091)]
    pub operator_port: u16,

    /// Start a local API server even when `KUBECONFIG` is set.
    #[arg(long)]
    pub local_cluster: bool,

    /// How long to wait for the sample tenant to become Ready.
    #[arg(long, default_value_t = 180)]
    pub ready_timeout_seconds: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum UpError {
    #[error(
        "cannot find the flomastr checkout (scripts/ and manifests/); run from inside it or pass --root"
    )]
    NoCheckout,
    #[error("{script} failed ({status}); its last output:\n{tail}")]
    Script {
        script: String,
        status: String,
        tail: String,
    },
    #[error("cannot start {what}: {source}")]
    Spawn {
        what: String,
        source: std::io::Error,
    },
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("port {port} on 127.0.0.1 is in use; pick another with {flag}")]
    PortInUse { port: u16, flag: String },
    #[error("{program} exited ({status}); see {}", log.display())]
    Exited {
        program: &'static str,
        status: String,
        log: PathBuf,
    },
    #[error("{what} is not ready: {detail}")]
    NotReady { what: String, detail: String },
    #[error("{path}: {detail}")]
    Sample { path: String, detail: String },
    #[error("{0} did not print its settings")]
    MissingSetting(&'static str),
    #[error("database: {0}")]
    Database(#[from] crate::db::DbError),
    #[error("Kubernetes: {0}")]
    Kube(#[from] kube::Error),
}

/// Brings the stack up, waits for Ctrl-C or SIGTERM, tears it down.
pub async fn run(args: UpArgs) -> Result<(), UpError> {
    let root = match &args.root {
        Some(root) => root.clone(),
        None => find_checkout().ok_or(UpError::NoCheckout)?,
    };
    let state = args.state_dir.clone().unwrap_or_else(default_state_dir);
    std::fs::create_dir_all(&state).map_err(|source| UpError::Io {
        path: state.clone(),
        source,
    })?;
    // Listening from the start: a Ctrl-C during a slow step still tears down what is up.
    let mut stop = StopSignals::install()?;
    let mut stack = Stack::new(&root, &state);
    let outcome = tokio::select! {
        outcome = stack.bring_up(&args) => outcome,
        () = stop.received() => {
            eprintln!("[flomastr] interrupted");
            Ok(())
        }
    };
    let outcome = match outcome {
        Ok(()) if !stop.seen => stack.serve(&mut stop).await,
        other => other,
    };
    stack.tear_down().await;
    outcome
}

/// SIGINT (Ctrl-C) and SIGTERM.
struct StopSignals {
    interrupt: tokio::signal::unix::Signal,
    terminate: tokio::signal::unix::Signal,
    seen: bool,
}

impl StopSignals {
    fn install() -> Result<Self, UpError> {
        use tokio::signal::unix::{SignalKind, signal};
        let handler = |kind| {
            signal(kind).map_err(|source| UpError::Spawn {
                what: "a signal handler".into(),
                source,
            })
        };
        Ok(Self {
            interrupt: handler(SignalKind::interrupt())?,
            terminate: handler(SignalKind::terminate())?,
            seen: false,
        })
    }

    async fn received(&mut self) {
        tokio::select! {
            _ = self.interrupt.recv() => {}
            _ = self.terminate.recv() => {}
        }
        self.seen = true;
    }
}

/// What is running, so that tear-down stops exactly that.
struct Stack {
    root: PathBuf,
    state: PathBuf,
    scripts: Scripts,
    programs: Vec<Program>,
    postgres_started: bool,
    local_cluster_started: bool,
    pgbin: Option<String>,
    stop_kubelet: CancellationToken,
}

impl Stack {
    fn new(root: &Path, state: &Path) -> Self {
        Self {
            root: root.to_owned(),
            state: state.to_owned(),
            scripts: Scripts::new(root),
            programs: Vec::new(),
            postgres_started: false,
            local_cluster_started: false,
            pgbin: None,
            stop_kubelet: CancellationToken::new(),
        }
    }

    async fn bring_up(&mut self, args: &UpArgs) -> Result<(), UpError> {
        ensure_free(args.engine_port, "--engine-port")?;
        ensure_free(args.sandbox_port, "--sandbox-port")?;
        ensure_free(args.operator_port, "--operator-port")?;
        summary::forget(&self.state);
        let secrets = secrets::Secrets::load_or_mint(&self.state)?;
        let engine_url = format!("http://127.0.0.1:{}", args.engine_port);
        let sandbox_url = format!("http://127.0.0.1:{}", args.sandbox_port);
        let sample = sample::load(
            &self.root,
            &sandbox_url,
            &secrets.infobip_api_key,
            &secrets.webhook_secret,
        )?;

        step("Python packages (pgserver, MiniLM model)", async |s| {
            self.scripts.run(s, "python-deps", &[]).await
        })
        .await?;
        let database = self.start_postgres(&secrets).await?;
        let database_url = database.engine.clone();
        let kubeconfig = self.start_cluster(args.local_cluster).await?;

        let accounts =
            sample::sandbox_accounts(&sample, &secrets.infobip_api_key, &secrets.webhook_secret);
        let sandbox_listen = format!("127.0.0.1:{}", args.sandbox_port);
        self.start_program(
            "sandbox",
            &["sandbox", "--listen", &sandbox_listen],
            &[("FLOMASTR_SANDBOX_ACCOUNTS", accounts)],
            &format!("{sandbox_url}/_sandbox/config"),
        )
        .await?;
        let engine_listen = format!("127.0.0.1:{}", args.engine_port);
        self.start_program(
            "engine",
            &["engine"],
            &[
                ("DATABASE_URL", database_url.clone()),
                ("FLOMASTR_NL_QUERY_DATABASE_URL", database.nl_query.clone()),
                ("FLOMASTR_LISTEN", engine_listen),
                ("FLOMASTR_PUBLIC_URL", engine_url.clone()),
                ("FLOMASTR_ADMIN_TOKEN", secrets.admin_token.clone()),
                ("FLOMASTR_MASTER_KEY", secrets.master_key.clone()),
                // The sample tenant's channel points at the sandbox: the engine allows that
                // origin and loopback explicitly; tenant input alone could not.
                (
                    "FLOMASTR_PROVIDER_BASE_URL_ALLOW",
                    ["infobip", "meta", "twilio"]
                        .map(|provider| format!("{provider}={sandbox_url}"))
                        .join(","),
                ),
                (
                    "FLOMASTR_PROVIDER_PRIVATE_NETWORKS",
                    "127.0.0.1/32".to_owned(),
                ),
            ],
            &format!("{engine_url}/"),
        )
        .await?;

        let client = step("Tenant CRD and the flomastr-system namespace", async |_| {
            let client = cluster::connect(kubeconfig.as_deref()).await?;
            cluster::install(&client).await?;
            Ok::<_, UpError>(client)
        })
        .await?;
        let operator_listen = format!("127.0.0.1:{}", args.operator_port);
        let mut operator_env = vec![
            ("FLOMASTR_ADMIN_TOKEN", secrets.admin_token.clone()),
            ("POD_NAME", "flomastr-up".to_owned()),
        ];
        if let Some(path) = &kubeconfig {
            operator_env.push(("KUBECONFIG", path.display().to_string()));
        }
        self.start_program(
            "operator",
            &[
                "operator",
                "--base-domain",
                "localhost",
                "--engine-url",
                &engine_url,
                "--metrics-listen",
                &operator_listen,
            ],
            &operator_env,
            &format!("http://{operator_listen}/healthz"),
        )
        .await?;
        if kubeconfig.is_some() {
            tokio::spawn(cluster::stand_in_for_kubelet(
                client.clone(),
                self.stop_kubelet.clone(),
            ));
        }

        let slug = sample.slug().to_owned();
        step(format!("sample Tenant {slug} Ready"), async |s| {
            cluster::apply_sample(&client, &sample).await?;
            let timeout = Duration::from_secs(args.ready_timeout_seconds);
            cluster::wait_ready(&client, &slug, s, timeout).await
        })
        .await?;
        let worker_token = cluster::worker_token(&client, &slug).await?;
        let info = summary::Summary {
            engine_url,
            sandbox_url,
            operator_url: format!("http://{operator_listen}"),
            database_url,
            pgbin: self.pgbin.clone(),
            kubeconfig,
            local_cluster: self.local_cluster_started,
            slug,
            sender: sample.sender().to_owned(),
            inbound_example: sample::inbound_webhook(&sample, "447700900001", "hello-1", "Hola"),
        };
        summary::publish(&self.state, &info, &worker_token)?;
        Ok(())
    }

    /// PostgreSQL, set up by its administrator for the engine's two logins, and migrated.
    async fn start_postgres(
        &mut self,
        secrets: &secrets::Secrets,
    ) -> Result<DatabaseUrls, UpError> {
        let dir = self.state.join("pg");
        // Set first: an interrupted start still gets its stop (stopping is idempotent).
        self.postgres_started = true;
        let out = step("PostgreSQL 16 + pgvector", async |s| {
            self.scripts
                .run(s, "postgres", &["start", &path_str(&dir)])
                .await
        })
        .await?;
        let mut settings = parse_exports(&out);
        self.pgbin = settings.remove("PGBIN");
        let admin = settings
            .remove("FLOMASTR_PG_URL")
            .ok_or(UpError::MissingSetting("scripts/postgres"))?;
        let urls = DatabaseUrls::for_server(&admin, secrets)?;
        step("database logins and migrations", async |_| {
            crate::db::run_migrate(&crate::db::MigrateArgs {
                database_url: urls.engine.clone(),
                admin_url: Some(admin.clone()),
                nl_query_database_url: Some(urls.nl_query.clone()),
            })
            .await?;
            Ok::<_, UpError>(())
        })
        .await?;
        Ok(urls)
    }

    /// The local API server's kubeconfig, or `None` to use `KUBECONFIG`.
    async fn start_cluster(&mut self, force_local: bool) -> Result<Option<PathBuf>, UpError> {
        if !force_local && std::env::var_os("KUBECONFIG").is_some() {
            let s = Step::start("using the cluster in KUBECONFIG");
            s.done_with("pass --local-cluster to start a local API server instead");
            return Ok(None);
        }
        step(
            "kube-apiserver and etcd binaries (built once, then cached)",
            async |s| self.scripts.run(s, "apiserver-build", &[]).await,
        )
        .await?;
        let dir = self.state.join("kube");
        self.local_cluster_started = true;
        let out = step("kube-apiserver + etcd", async |s| {
            self.scripts
                .run(s, "apiserver", &["start", &path_str(&dir)])
                .await
        })
        .await?;
        let path = parse_exports(&out)
            .remove("FLOMASTR_TEST_KUBECONFIG")
            .ok_or(UpError::MissingSetting("scripts/apiserver"))?;
        Ok(Some(PathBuf::from(path)))
    }

    async fn start_program(
        &mut self,
        name: &'static str,
        args: &[&str],
        env: &[(&str, String)],
        ready_url: &str,
    ) -> Result<(), UpError> {
        let args: Vec<String> = args.iter().map(|a| (*a).to_owned()).collect();
        let state = self.state.clone();
        let program = step(name, async |_| {
            let mut program = Program::start(name, &state, &args, env)?;
            match wait_http(&mut program, ready_url, Duration::from_secs(60)).await {
                Ok(()) => Ok(program),
                Err(error) => {
                    program.stop(Duration::from_secs(5)).await;
                    Err(error)
                }
            }
        })
        .await?;
        self.programs.push(program);
        Ok(())
    }

    /// Runs until Ctrl-C / SIGTERM, or until one of the programs dies.
    async fn serve(&mut self, stop: &mut StopSignals) -> Result<(), UpError> {
        let mut check = tokio::time::interval(Duration::from_secs(1));
        loop {
            tokio::select! {
                () = stop.received() => return Ok(()),
                _ = check.tick() => {
                    for program in &mut self.programs {
                        if let Some(status) = program.exited() {
                            return Err(UpError::Exited { program: program.name, status, log: program.log.clone() });
                        }
                    }
                }
            }
        }
    }

    async fn tear_down(&mut self) {
        eprintln!("[flomastr] stopping the stack");
        summary::forget(&self.state);
        self.stop_kubelet.cancel();
        // The operator first (it talks to the engine), the sandbox last (it posts to the engine).
        while let Some(program) = self.programs.pop() {
            program.stop(Duration::from_secs(35)).await;
        }
        let quiet = Step::start("stopping the servers");
        if self.local_cluster_started {
            let dir = path_str(&self.state.join("kube"));
            let _ = self.scripts.run(&quiet, "apiserver", &["stop", &dir]).await;
        }
        if self.postgres_started {
            let dir = path_str(&self.state.join("pg"));
            let _ = self.scripts.run(&quiet, "postgres", &["stop", &dir]).await;
        }
        quiet.done();
    }
}

/// The stack's database `flomastr` as its two logins see it.
struct DatabaseUrls {
    engine: String,
    nl_query: String,
}

impl DatabaseUrls {
    /// Logins `flomastr` and `flomastr_nlq` on the server the administrator's URL names.
    fn for_server(admin: &str, secrets: &secrets::Secrets) -> Result<Self, UpError> {
        let login = |user: &str, password: &str| {
            let mut url =
                url::Url::parse(admin).map_err(|_| UpError::MissingSetting("scripts/postgres"))?;
            url.set_username(user)
                .and_then(|()| url.set_password(Some(password)))
                .map_err(|()| UpError::MissingSetting("scripts/postgres"))?;
            url.set_path("/flomastr");
            Ok::<_, UpError>(url.to_string())
        };
        Ok(Self {
            engine: login("flomastr", &secrets.engine_db_password)?,
            nl_query: login("flomastr_nlq", &secrets.nl_query_db_password)?,
        })
    }
}

fn path_str(path: &Path) -> String {
    path.display().to_string()
}

fn find_checkout() -> Option<PathBuf> {
    let is_checkout =
        |dir: &Path| dir.join("scripts/apiserver").is_file() && dir.join(sample::EXAMPLE).is_file();
    let cwd = std::env::current_dir().ok()?;
    cwd.ancestors()
        .find(|dir| is_checkout(dir))
        .map(Path::to_owned)
        .or_else(|| Some(PathBuf::from(env!("CARGO_MANIFEST_DIR"))).filter(|d| is_checkout(d)))
}

fn default_state_dir() -> PathBuf {
    let cache = std::env::var_os("FLOMASTR_CACHE")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("XDG_CACHE_HOME").map(|d| PathBuf::from(d).join("flomastr")))
        .or_else(|| std::env::var_os("HOME").map(|d| PathBuf::from(d).join(".cache/flomastr")))
        .unwrap_or_else(|| PathBuf::from(".flomastr"));
    cache.join("stack")
}
