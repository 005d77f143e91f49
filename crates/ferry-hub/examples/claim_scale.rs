//! `bench/hub-scale.sh`'s claim bench: the scheduler's task claims at
//! 1k, 10k and 100k queued tasks on PostgreSQL, with 1 and K instances
//! (see `ferry_hub::bench`). Give it an empty throwaway database:
//!
//! ```text
//! eval "$(bash .ci/postgres.sh start)"
//! cargo run --release -p ferry-hub --example claim_scale -- \
//!   --database "$FERRY_TEST_POSTGRES?sslmode=require&sslrootcert=$FERRY_TEST_POSTGRES_CA"
//! ```

use clap::Parser;
use std::process::ExitCode;
use std::time::Duration;

#[derive(Debug, Parser)]
#[command(about = "measure the hub scheduler's task claims on PostgreSQL at growing queue depths")]
struct Args {
    /// The database (postgres://USER:PASSWORD@HOST/DB?...), holding no ACTIVE task.
    #[arg(long, env = "FERRY_BENCH_DATABASE", hide_env_values = true)]
    database: String,
    /// Queue depths to measure at, comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "1000,10000,100000")]
    depths: Vec<usize>,
    /// Hub instance counts to measure at each depth, comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "1,3")]
    instances: Vec<usize>,
    /// Seconds of steady sweeps at each depth and instance count.
    #[arg(long, default_value_t = 20)]
    steady_secs: u64,
    /// New tasks submitted per second during the steady sweeps.
    #[arg(long, default_value_t = 20)]
    rate: u32,
}

fn main() -> ExitCode {
    let args = Args::parse();
    let bench = ferry_hub::bench::ClaimBench {
        database: args.database,
        depths: args.depths,
        instances: args.instances,
        steady: Duration::from_secs(args.steady_secs),
        rate: args.rate,
    };
    match ferry_hub::bench::claims(&bench) {
        Ok(report) => {
            print!("{report}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("claim_scale: {e:#}");
            ExitCode::FAILURE
        }
    }
}
