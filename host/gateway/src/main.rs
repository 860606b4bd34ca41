//! The `wasmgate` binary: `run --config FILE` serves, `check --config FILE`
//! validates (and compiles every filter), no arguments serves the embedded
//! demo. Logs go to stderr through `tracing` (`RUST_LOG` filters them;
//! `access_log.format: json` switches to JSON lines).

use std::{path::PathBuf, process::ExitCode};

use clap::{Parser, Subcommand};
use tracing_subscriber::EnvFilter;
use wasmgate::{Config, Gateway, config::LogFormat, demo};

// A proxy allocates and frees many small buffers per request; mimalloc's
// thread-local free lists cost measurably less CPU than glibc malloc here
// (see the benchmark section of the README).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// After a configuration load: the module compiler's transient heap (tens of
/// MB for a 200 KB module) is free by now, but mimalloc would return it to
/// the OS only on later allocator activity of this thread, and a loading
/// thread goes idle. Collect it now.
fn release_freed_memory() {
    // SAFETY: `mi_collect` has no preconditions; it only frees pages that
    // hold no live allocation.
    unsafe { libmimalloc_sys::mi_collect(true) };
}

#[derive(Parser)]
#[command(version, about = "API gateway that runs proxy-wasm filters per route")]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Serve a configuration (SIGHUP reloads it, SIGTERM drains and stops).
    Run {
        /// YAML or JSON configuration file.
        #[arg(long, short)]
        config: PathBuf,
    },
    /// Validate a configuration and compile its filters, then exit.
    Check {
        /// YAML or JSON configuration file.
        #[arg(long, short)]
        config: PathBuf,
    },
}

fn init_logs(format: LogFormat) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr())
        && std::env::var_os("NO_COLOR").is_none();
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(ansi);
    match format {
        LogFormat::Json => builder.json().init(),
        LogFormat::Text => builder.init(),
    }
    // The access log leaves the request path: one writer thread writes the
    // workers' batches of lines (the same text as the subscriber's). Colours
    // on a terminal keep the subscriber's path.
    if !ansi
        && let Err(e) = wasmgate::access_log_writer::install(format, Box::new(std::io::stderr()))
    {
        eprintln!("access log writer: {e}; logging through the subscriber");
    }
}

fn main() -> ExitCode {
    wasmgate::set_after_load(release_freed_memory);
    let cli = Cli::parse();
    match cli.command {
        Some(Command::Check { config }) => check(&config),
        Some(Command::Run { config }) => run(&config),
        None => run_demo(),
    }
}

fn check(path: &std::path::Path) -> ExitCode {
    init_logs(LogFormat::Text);
    match wasmgate::check(path) {
        Ok(warnings) => {
            for w in warnings {
                eprintln!("warning: {w}");
            }
            println!("{}: OK", path.display());
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("{e}");
            ExitCode::FAILURE
        }
    }
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime for signals")
}

fn run(path: &std::path::Path) -> ExitCode {
    // The log format is part of the configuration; peek at it before the
    // full load so even load errors come out in the chosen format.
    let format = std::fs::read_to_string(path)
        .ok()
        .and_then(|t| Config::parse(&t, &path.display().to_string()).ok())
        .map_or(LogFormat::Text, |c| c.access_log.format);
    init_logs(format);
    let gateway = match Gateway::start_file(path) {
        Ok(g) => g,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime().block_on(gateway.run_until_signal()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("signals: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run_demo() -> ExitCode {
    init_logs(LogFormat::Text);
    let rt = runtime();
    let result = rt.block_on(async {
        let backend = demo::start_echo().await.map_err(|e| format!("echo backend: {e}"))?;
        let listen = std::env::var("WASMGATE_DEMO_ADDR").unwrap_or_else(|_| demo::DEFAULT_ADDRESS.into());
        let admin = std::env::var("WASMGATE_DEMO_ADMIN").unwrap_or_else(|_| demo::DEFAULT_ADMIN.into());
        let config = demo::config(backend, &listen, &admin)?;
        let gateway = Gateway::start(config).map_err(|e| e.to_string())?;
        let addr = gateway.addr();
        println!("wasmgate demo: route \"demo\" runs secret_header.wasm in front of an echo backend on {backend}.");
        println!("The filter injects Authorization: Bearer ${} (default: a harmless demo value).", demo::SECRET_VAR);
        println!("Try:\n  curl -s http://{addr}/hello\n  curl -s -H 'Authorization: Bearer spoofed' http://{addr}/hello");
        if let Some(admin) = gateway.admin {
            println!("Admin: curl -s http://{admin}/metrics   curl -s http://{admin}/config");
        }
        // The path of this very binary: `make run` does not put it on the PATH.
        let me = std::env::current_exe()
            .ok()
            .map_or_else(|| "wasmgate".to_string(), |p| p.display().to_string());
        println!("Run a real configuration with: {me} run --config FILE   (Ctrl-C stops)");
        println!("(`make install` puts wasmgate on your PATH.)");
        gateway.run_until_signal().await.map_err(|e| e.to_string())
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("{e}");
            ExitCode::FAILURE
        }
    }
}
