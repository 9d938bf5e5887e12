//! `lkg-agent`: the half of an lkg snapshot or restore that runs on the node
//! holding the volumes, as a swarm job lkg starts and removes
//! (`lkg_warmsnap::remote`). It reads its request from `LKG_AGENT_REQUEST`
//! and prints one last line, its report or its failure, which lkg reads from
//! the job's log. It is not meant to be run by hand.
#![allow(clippy::print_stdout, reason = "a binary prints; its last line is its report")]

use std::path::Path;
use std::process::ExitCode;

use lkg_warmsnap::agent::{self, AgentFailure, AgentRequest, FAILURE_PREFIX, REPORT_PREFIX, REQUEST_ENV};

const HELP: &str = "lkg-agent: lkg's agent, run by lkg-snap, lkg-reconcile and lkg-fleet as a swarm job on the \
node that holds a stateful app's volumes (docs/multi-node.md). It is not meant to be run by hand: it reads its \
work from the environment variable LKG_AGENT_REQUEST.";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.iter().any(|a| a == "--version" || a == "-V") {
        println!("lkg-agent {}", env!("CARGO_PKG_VERSION"));
        return ExitCode::SUCCESS;
    }
    let Some(request) = std::env::var_os(REQUEST_ENV).filter(|_| args.is_empty()) else {
        println!("{HELP}");
        return if args.iter().any(|a| a == "--help" || a == "-h") { ExitCode::SUCCESS } else { ExitCode::from(2) };
    };
    let request: AgentRequest = match serde_json::from_slice(request.as_encoded_bytes()) {
        Ok(request) => request,
        Err(e) => {
            let failure =
                AgentFailure { kind: "input".to_owned(), message: format!("{REQUEST_ENV} is not a request: {e}") };
            return fail(&failure);
        }
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build() {
        Ok(runtime) => runtime,
        Err(e) => {
            return fail(&AgentFailure { kind: "environment".to_owned(), message: format!("cannot start: {e}") });
        }
    };
    match runtime.block_on(agent::run(&request, Path::new("/tmp/lkg-agent"))) {
        Ok(report) => {
            let json = serde_json::to_string(&report).expect("a report serialises");
            println!("{REPORT_PREFIX}{json}");
            ExitCode::SUCCESS
        }
        Err(e) => fail(&AgentFailure::of(&e)),
    }
}

fn fail(failure: &AgentFailure) -> ExitCode {
    let json = serde_json::to_string(failure).expect("a failure serialises");
    println!("{FAILURE_PREFIX}{json}");
    ExitCode::FAILURE
}
