//! `ferry timer create transfer|list|show|delete`: recurring transfers.
//! The hub keeps the schedule and submits each run; these verbs only ask
//! and print.

use crate::args::{DeadlineArg, TimerCommand, TimerCreateCommand, TimerTransferArgs};
use crate::hub::{path_segment, session};
use crate::terminal::escape;
use crate::transfer::{now, submission};
use crate::{Invocation, UsageError, client_runtime};
use ferry_proto::human;
use ferry_proto::task::{CreateTimer, CreatedTimer, TimerInfo};
use ferry_setup::hub_client::Auth;
use std::process::ExitCode;

pub fn timer(inv: &Invocation, command: TimerCommand) -> anyhow::Result<ExitCode> {
    if let TimerCommand::Create(TimerCreateCommand::Transfer(args)) = command {
        return create(inv, *args);
    }
    client_runtime()?.block_on(async {
        let (client, token) = session(inv).await?;
        let auth = Auth::Bearer(&token);
        match command {
            TimerCommand::List { json } => {
                let timers: Vec<TimerInfo> = client.get_all("/api/v1/timers", &[], auth).await?;
                if json.json {
                    outln!("{}", serde_json::to_string(&timers)?);
                } else if timers.is_empty() {
                    outln!("No timers; make one with `ferry timer create transfer`.");
                } else {
                    for t in &timers {
                        outln!(
                            "{}  every {:<8} next {:<23} runs {:<5} {}{}",
                            t.id,
                            human::duration(t.interval.unsigned_abs()),
                            next_run(t),
                            t.runs,
                            t.status,
                            t.label
                                .as_deref()
                                .map(|l| format!("  {}", escape(l)))
                                .unwrap_or_default()
                        );
                    }
                }
            }
            TimerCommand::Show { id, json } => {
                let path = format!("/api/v1/timers/{}", path_segment(&id));
                let t: TimerInfo = client.get_json(&path, &[], auth).await?;
                if json.json {
                    outln!("{}", serde_json::to_string(&t)?);
                } else {
                    show(&t)?;
                }
            }
            TimerCommand::Delete { id } => {
                let path = format!("/api/v1/timers/{}", path_segment(&id));
                let t: TimerInfo = client.delete_json(&path, auth).await?;
                outln!(
                    "Timer {} deleted after {} run{}",
                    t.id,
                    t.runs,
                    plural(t.runs)
                );
            }
            TimerCommand::Create(_) => {}
        }
        Ok(ExitCode::SUCCESS)
    })
}

fn create(inv: &Invocation, args: TimerTransferArgs) -> anyhow::Result<ExitCode> {
    let json = args.json.json;
    // Read (a batch file parsed) before the hub is asked anything.
    let body = create_body(args)?;
    client_runtime()?.block_on(async {
        let (client, token) = session(inv).await?;
        let created: CreatedTimer = client
            .post_json("/api/v1/timers", &body, Auth::Bearer(&token))
            .await?;
        if json {
            outln!("{}", serde_json::to_string(&created)?);
        } else {
            outln!("Timer ID: {}", created.id);
        }
        Ok(ExitCode::SUCCESS)
    })
}

/// What `ferry timer create transfer` asks the hub for.
fn create_body(args: TimerTransferArgs) -> anyhow::Result<CreateTimer> {
    let at = |when: DeadlineArg| when.after(now());
    // A timer's deadline is each run's: a span from the run's start.
    let run_deadline = match args.options.deadline {
        None => None,
        Some(DeadlineArg::In(secs)) => Some(secs),
        Some(DeadlineArg::At(_)) => {
            return Err(UsageError(
                "a timer's --deadline is each run's: give a time from the run's start (2h), not a date".into(),
            )
            .into());
        }
    };
    let mut options = args.options;
    options.deadline = None;
    let transfer = submission(&args.source, &args.destination, options)?;
    Ok(CreateTimer {
        transfer,
        interval: args.interval,
        start: args.start.map(at),
        stop_after_runs: args.stop_after_runs,
        stop_after_date: args.stop_after_date.map(at),
        run_deadline,
    })
}

fn plural(n: u64) -> &'static str {
    if n == 1 { "" } else { "s" }
}

fn next_run(t: &TimerInfo) -> String {
    t.next_run
        .map(human::utc_seconds)
        .unwrap_or_else(|| "-".into())
}

fn show(t: &TimerInfo) -> anyhow::Result<()> {
    outln!("Timer ID:     {}", t.id);
    if let Some(label) = &t.label {
        outln!("Label:        {}", escape(label));
    }
    outln!("Status:       {}", t.status);
    outln!("Source:       {}", t.source_endpoint);
    outln!("Destination:  {}", t.destination_endpoint);
    outln!(
        "Interval:     {}",
        human::duration(t.interval.unsigned_abs())
    );
    outln!("Start:        {}", human::utc_seconds(t.start));
    outln!("Next run:     {}", next_run(t));
    match (t.stop_after_runs, t.stop_after_date) {
        (Some(n), _) => outln!("Stops after:  {n} run{}", plural(n)),
        (None, Some(date)) => outln!("Stops after:  {}", human::utc_seconds(date)),
        (None, None) => {}
    }
    outln!("Runs:         {} ({} skipped)", t.runs, t.skipped);
    if let Some(task) = &t.last_task_id {
        outln!("Last task:    {task}");
    }
    for e in t.events.iter().flatten() {
        outln!(
            "{}  {:<9} {}",
            human::utc_seconds(e.time),
            e.code,
            escape(&e.description)
        );
    }
    Ok(())
}
