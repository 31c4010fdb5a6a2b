//! `flomastr up`: the whole stack on this machine in one command — PostgreSQL with pgvector, a
//! real Kubernetes API server and node (or the cluster in `KUBECONFIG`), the engine, the operator
//! and the provider sandbox — with the sample tenant applied and Ready, its n8n a real pod.
//! Ctrl-C (or a failure) tears it all down, the node too.
//!
//! The servers come from the repository's scripts (shared with `scripts/test`); the programs are
//! this binary started again with another subcommand.

mod cluster;
mod processes;
mod progress;
mod relay;
mod sample;
mod scripts;
mod secrets;
mod summary;

use processes::{Program, ensure_free, wait_http};
use progress::{Step, step};
use scripts::{Scripts, parse_exports};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
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

    /// Loopback port the sample tenant's n8n is served on (relayed to its pod).
    #[arg(long, env = "FLOMASTR_UP_N8N_PORT", default_value_t = 5678)]
    pub n8n_port: u16,

    /// Start a local API server and node even when `KUBECONFIG` is set.
    #[arg(long)]
    pub local_cluster: bool,

    /// The n8n image the sample tenant and the operator's default run. Default: on the local
    /// node the image `scripts/image n8n` builds (and `up` imports); with `KUBECONFIG` the
    /// operator's default.
    #[arg(long, env = "FLOMASTR_UP_N8N_IMAGE")]
    pub n8n_image: Option<String>,

    /// With `KUBECONFIG`: the address the cluster's pods reach this machine at. The engine is
    /// served there too, so the tenants' n8n reach it (the local node's is its bridge address).
    #[arg(long, env = "FLOMASTR_UP_NODE_HOST_IP")]
    pub node_host_ip: Option<IpAddr>,

    /// The operator reconciles only Tenants with these labels (`key=value,...`), and the
    /// sample Tenant gets them: for a cluster other operators share.
    #[arg(long, env = "FLOMASTR_UP_TENANT_SELECTOR", value_parser = parse_tenant_selector)]
    pub tenant_selector: Option<String>,

    /// How long to wait for the sample tenant to become Ready (its n8n started).
    #[arg(long, default_value_t = 300)]
    pub ready_timeout_seconds: u64,
}

impl UpArgs {
    /// Whether `up` starts its own API server and node (which needs root).
    fn local_cluster(&self) -> bool {
        self.local_cluster || std::env::var_os("KUBECONFIG").is_none()
    }
}

/// The local node runs containers: without root `up` stops before starting anything.
fn needs_root(local_node: bool, is_root: bool) -> Result<(), UpError> {
    if local_node && !is_root {
        return Err(UpError::NeedsRoot);
    }
    Ok(())
}

fn parse_tenant_selector(selector: &str) -> Result<String, String> {
    sample::selector_labels(selector)
        .map(|_| selector.to_owned())
        .ok_or_else(|| "expected key=value labels separated by commas".to_owned())
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
    #[error(
        "flomastr up runs the tenants' n8n on a real local Kubernetes node, which needs root: \
         containerd and runc start containers, the kubelet manages cgroups and mounts, and the \
         pods' network is a bridge with nftables rules. Run it as root (sudo -E scripts/up), or \
         point KUBECONFIG at a cluster you have"
    )]
    NeedsRoot,
    #[error(
        "a Kubernetes node already runs on this machine (only one can: another `flomastr up`, or \
         scripts/test?). Stop it first, or point KUBECONFIG at its API server. Found:\n{found}"
    )]
    NodeBusy { found: String },
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
    node_started: bool,
    pgbin: Option<String>,
    stop_relays: CancellationToken,
}

/// The cluster the stack runs on.
struct Cluster {
    /// The local API server's kubeconfig; `None` for the cluster in `KUBECONFIG`.
    kubeconfig: Option<PathBuf>,
    /// Where the cluster's pods reach this machine, if they can.
    node_host_ip: Option<IpAddr>,
    /// The n8n image tenants run (`None`: the operator's default).
    n8n_image: Option<String>,
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
            node_started: false,
            pgbin: None,
            stop_relays: CancellationToken::new(),
        }
    }

    async fn bring_up(&mut self, args: &UpArgs) -> Result<(), UpError> {
        needs_root(args.local_cluster(), nix::unistd::geteuid().is_root())?;
        ensure_free(args.engine_port, "--engine-port")?;
        ensure_free(args.sandbox_port, "--sandbox-port")?;
        ensure_free(args.operator_port, "--operator-port")?;
        ensure_free(args.n8n_port, "--n8n-port")?;
        summary::forget(&self.state);
        let secrets = secrets::Secrets::load_or_mint(&self.state)?;
        let engine_url = format!("http://127.0.0.1:{}", args.engine_port);
        let sandbox_url = format!("http://127.0.0.1:{}", args.sandbox_port);
        let mut sample = sample::load(
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
        let target = self.start_cluster(args).await?;
        self.start_sandbox(&sample, &secrets, args.sandbox_port)
            .await?;
        self.start_engine(&database, &secrets, &engine_url, &sandbox_url)
            .await?;
        // The tenants' n8n pods reach the engine through the node's bridge address.
        let worker_url = match target.node_host_ip {
            Some(ip) => {
                let engine = SocketAddr::new(Ipv4Addr::LOCALHOST.into(), args.engine_port);
                relay::start(
                    SocketAddr::new(ip, args.engine_port),
                    relay::Target::Address(engine),
                    self.stop_relays.clone(),
                )
                .await?;
                format!("http://{ip}:{}", args.engine_port)
            }
            None => engine_url.clone(),
        };

        let client = step("Tenant CRD and the flomastr-system namespace", async |_| {
            let client = cluster::connect(target.kubeconfig.as_deref()).await?;
            cluster::install(&client).await?;
            Ok::<_, UpError>(client)
        })
        .await?;
        let operator_listen = format!("127.0.0.1:{}", args.operator_port);
        let mut operator_env = vec![
            ("FLOMASTR_ADMIN_TOKEN", secrets.admin_token.clone()),
            ("FLOMASTR_ENGINE_WORKER_URL", worker_url),
            ("POD_NAME", "flomastr-up".to_owned()),
        ];
        if let Some(path) = &target.kubeconfig {
            operator_env.push(("KUBECONFIG", path.display().to_string()));
        }
        if let Some(image) = &target.n8n_image {
            operator_env.push(("FLOMASTR_N8N_IMAGE", image.clone()));
        }
        if let Some(selector) = &args.tenant_selector {
            operator_env.push(("FLOMASTR_TENANT_SELECTOR", selector.clone()));
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

        let labels = args
            .tenant_selector
            .as_deref()
            .and_then(sample::selector_labels)
            .unwrap_or_default();
        sample.adapt(target.n8n_image.as_deref(), &labels);
        let slug = sample.slug().to_owned();
        step(
            format!("sample Tenant {slug} Ready (its n8n started)"),
            async |s| {
                cluster::apply_sample(&client, &sample).await?;
                let timeout = Duration::from_secs(args.ready_timeout_seconds);
                cluster::wait_ready(&client, &slug, s, timeout).await
            },
        )
        .await?;
        let n8n_url = format!("http://127.0.0.1:{}", args.n8n_port);
        relay::start(
            SocketAddr::new(Ipv4Addr::LOCALHOST.into(), args.n8n_port),
            relay::Target::Service {
                client: client.clone(),
                namespace: format!("tenant-{slug}"),
                name: "n8n".to_owned(),
            },
            self.stop_relays.clone(),
        )
        .await?;
        let worker_token = cluster::worker_token(&client, &slug).await?;
        let n8n_owner = cluster::n8n_owner(&client, &slug).await?;
        let info = summary::Summary {
            engine_url,
            sandbox_url,
            operator_url: format!("http://{operator_listen}"),
            n8n_url,
            n8n_owner_email: n8n_owner.as_ref().map(|(email, _)| email.clone()),
            database_url,
            pgbin: self.pgbin.clone(),
            kubeconfig: target.kubeconfig,
            local_cluster: self.local_cluster_started,
            slug,
            sender: sample.sender().to_owned(),
            inbound_example: sample::inbound_webhook(&sample, "447700900001", "hello-1", "Hola"),
        };
        let n8n_password = n8n_owner.map(|(_, password)| password);
        summary::publish(&self.state, &info, &worker_token, n8n_password.as_deref())?;
        Ok(())
    }

    async fn start_sandbox(
        &mut self,
        sample: &sample::Sample,
        secrets: &secrets::Secrets,
        port: u16,
    ) -> Result<(), UpError> {
        let accounts =
            sample::sandbox_accounts(sample, &secrets.infobip_api_key, &secrets.webhook_secret);
        let listen = format!("127.0.0.1:{port}");
        self.start_program(
            "sandbox",
            &["sandbox", "--listen", &listen],
            &[("FLOMASTR_SANDBOX_ACCOUNTS", accounts)],
            &format!("http://{listen}/_sandbox/config"),
        )
        .await
    }

    async fn start_engine(
        &mut self,
        database: &DatabaseUrls,
        secrets: &secrets::Secrets,
        engine_url: &str,
        sandbox_url: &str,
    ) -> Result<(), UpError> {
        let listen = engine_url.trim_start_matches("http://").to_owned();
        self.start_program(
            "engine",
            &["engine"],
            &[
                ("DATABASE_URL", database.engine.clone()),
                ("FLOMASTR_NL_QUERY_DATABASE_URL", database.nl_query.clone()),
                ("FLOMASTR_LISTEN", listen),
                ("FLOMASTR_PUBLIC_URL", engine_url.to_owned()),
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
        .await
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

    /// The local API server and node (with the n8n image imported), or the cluster in
    /// `KUBECONFIG`.
    async fn start_cluster(&mut self, args: &UpArgs) -> Result<Cluster, UpError> {
        if !args.local_cluster() {
            let s = Step::start("using the cluster in KUBECONFIG");
            s.done_with("pass --local-cluster to start a local API server and node instead");
            return Ok(Cluster {
                kubeconfig: None,
                node_host_ip: args.node_host_ip,
                n8n_image: args.n8n_image.clone(),
            });
        }
        step(
            "kube-apiserver and etcd binaries (built once, then cached)",
            async |s| self.scripts.run(s, "apiserver-build", &[]).await,
        )
        .await?;
        let dir = path_str(&self.state.join("kube"));
        self.local_cluster_started = true;
        let out = step("kube-apiserver + etcd", async |s| {
            self.scripts.run(s, "apiserver", &["start", &dir]).await
        })
        .await?;
        let kubeconfig = parse_exports(&out)
            .remove("FLOMASTR_TEST_KUBECONFIG")
            .ok_or(UpError::MissingSetting("scripts/apiserver"))?;
        let node_host_ip = self.start_node(&dir).await?;
        let n8n_image = match &args.n8n_image {
            Some(image) => image.clone(),
            None => self.import_n8n_image(&dir).await?,
        };
        Ok(Cluster {
            kubeconfig: Some(PathBuf::from(kubeconfig)),
            node_host_ip: Some(node_host_ip),
            n8n_image: Some(n8n_image),
        })
    }

    /// The real node beside the local API server in `dir`; returns where its pods reach this
    /// machine.
    async fn start_node(&mut self, dir: &str) -> Result<IpAddr, UpError> {
        step(
            "Kubernetes node binaries: kubelet, containerd, CoreDNS (built once, then cached)",
            async |s| self.scripts.run(s, "node-build", &[]).await,
        )
        .await?;
        // One node per machine. Checked here, before anything is marked started: stopping a
        // running node that is not ours would stop another stack's or test run's.
        // (What a stopped node left behind is no obstacle: `scripts/node start` clears it.)
        let (free, found) = self.scripts.ask("node", &["check"]).await?;
        if !free && found.lines().any(|line| line.starts_with("process:")) {
            return Err(UpError::NodeBusy { found });
        }
        // Set first: an interrupted start still gets its stop (stopping is idempotent).
        self.node_started = true;
        let out = step(
            "Kubernetes node (containerd, kubelet, kube-proxy, DNS)",
            async |s| self.scripts.run(s, "node", &["start", dir]).await,
        )
        .await?;
        parse_exports(&out)
            .remove("FLOMASTR_TEST_NODE_HOST_IP")
            .and_then(|ip| ip.parse().ok())
            .ok_or(UpError::MissingSetting("scripts/node"))
    }

    /// Builds the n8n image (once, then cached) and imports it into the node; returns its name.
    async fn import_n8n_image(&mut self, dir: &str) -> Result<String, UpError> {
        let archive = step(
            "n8n image (built once: ~10 minutes, then cached)",
            async |s| self.scripts.run(s, "image", &["n8n"]).await,
        )
        .await?;
        let archive = archive
            .lines()
            .last()
            .ok_or(UpError::MissingSetting("scripts/image n8n"))?
            .trim()
            .to_owned();
        step("n8n image imported into the node", async |s| {
            self.scripts
                .run(s, "node", &["import", dir, &archive])
                .await
        })
        .await?;
        let quiet = Step::start("n8n image name");
        let name = self.scripts.run(&quiet, "image", &["name", "n8n"]).await?;
        quiet.done_with(name.trim());
        Ok(name.trim().to_owned())
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
        self.stop_relays.cancel();
        // The operator first (it talks to the engine), the sandbox last (it posts to the engine).
        while let Some(program) = self.programs.pop() {
            program.stop(Duration::from_secs(35)).await;
        }
        let quiet = Step::start("stopping the servers");
        // The node before its API server: it deletes its pods through it.
        if self.node_started {
            let dir = path_str(&self.state.join("kube"));
            if let Err(error) = self.scripts.run(&quiet, "node", &["stop", &dir]).await {
                eprintln!("[flomastr] stopping the node: {error}");
            }
        }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_local_node_needs_root_and_the_error_says_why() {
        let error = needs_root(true, false).unwrap_err().to_string();
        for why in ["root", "containerd", "kubelet", "nftables", "KUBECONFIG"] {
            assert!(error.contains(why), "{why}: {error}");
        }
        assert!(needs_root(true, true).is_ok());
        assert!(needs_root(false, false).is_ok(), "a cluster in KUBECONFIG");
    }

    #[test]
    fn the_tenant_selector_must_be_labels() {
        assert!(parse_tenant_selector("flomastr.io/stack=up").is_ok());
        assert!(parse_tenant_selector("a!=b").is_err());
        assert!(parse_tenant_selector("a in (b)").is_err());
    }
}
