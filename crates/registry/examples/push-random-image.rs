//! Pushes a synthetic image with random (incompressible) layers, streamed
//! with the lkg client: the benchmarks' test images.
//!
//! ```text
//! cargo run --release -p lkg-registry --example push-random-image -- \
//!     127.0.0.1:5000/bench/big:1 SEED SIZE_MIB [SIZE_MIB...]
//! ```
//! Prints the manifest digest.
#![allow(clippy::print_stdout, clippy::print_stderr)]

#[path = "../tests/it/random.rs"]
mod random;

fn main() -> std::process::ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let usage = || {
        eprintln!("usage: push-random-image REF SEED SIZE_MIB [SIZE_MIB...]");
        std::process::ExitCode::from(2)
    };
    let [reference, seed, sizes @ ..] = args.as_slice() else { return usage() };
    let (Ok(reference), Ok(seed)) = (reference.parse::<lkg_registry::Reference>(), seed.parse::<u64>()) else {
        return usage();
    };
    let Ok(sizes) = sizes.iter().map(|s| s.parse::<usize>().map(|m| m << 20)).collect::<Result<Vec<_>, _>>() else {
        return usage();
    };
    if sizes.is_empty() {
        return usage();
    }
    let runtime = lkg_registry::runtime().expect("a tokio runtime");
    let result = runtime.block_on(async {
        let client = lkg_registry::Client::new(lkg_registry::ClientOptions::default())?;
        let platform = "linux/amd64".parse()?;
        random::push_random_image(&client, &reference, seed, &sizes, &[("org.lkg.bench", "random")], &platform).await
    });
    match result {
        Ok(m) => {
            println!("{}", m.digest);
            std::process::ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("push-random-image: {e}");
            std::process::ExitCode::from(5)
        }
    }
}
