//! `cutover status`: the live weights, the lock of the traffic object, and the persisted run.

use cutover::lock::unix_now;
use cutover_core::policy::LoadedPolicy;

use super::common::{Common, connect};

/// Prints what is live, who holds the lock (and any brake), and the persisted run; exit 0.
pub(crate) async fn status(p: LoadedPolicy, common: Common) -> anyhow::Result<u8> {
    let backend = connect(&p, &common).await?;
    let store = common.store(&p.policy.service).await?;
    match backend.get_weights().await {
        Ok(w) => println!("live:   {w} ({})", backend.describe()),
        Err(e) => println!("live:   cannot read: {e} ({})", backend.describe()),
    }
    if let Some(lock) = backend.object_lock() {
        match lock.read().await {
            Ok(Some(v)) => {
                match &v.record.holder {
                    Some(h) if h.expired(unix_now()) => {
                        println!("lock:   expired: {} ({})", h.describe(), lock.describe())
                    }
                    Some(h) => println!("lock:   held by {} ({})", h.describe(), lock.describe()),
                    None => println!("lock:   free ({})", lock.describe()),
                }
                if let Some(b) = &v.record.brake {
                    println!(
                        "brake:  run {} braked by {} at {}{}",
                        b.run_id,
                        b.by,
                        cutover_core::lock::rfc3339(b.at),
                        if b.acknowledged {
                            " (acknowledged)"
                        } else {
                            " (not yet acknowledged)"
                        }
                    );
                }
            }
            Ok(None) => println!("lock:   free ({})", lock.describe()),
            Err(e) => println!("lock:   cannot read: {e}"),
        }
    }
    match store.load().await {
        Ok(None) => println!("run:    none recorded in {}", store.describe()),
        Ok(Some(s)) => {
            println!("run:    {} phase {:?}", s.run_id, s.phase);
            if let Some(i) = s.stage {
                println!("stage:  {}/{} ", i + 1, p.policy.stages.len());
            }
            if let Some(o) = &s.outcome {
                println!(
                    "result: {:?} (exit {}): {}",
                    o.phase,
                    o.exit_code(),
                    o.reason
                );
            }
            for h in &s.history {
                println!(
                    "  {}  {}",
                    humantime::format_rfc3339_seconds(h.at),
                    h.weights
                );
            }
        }
        Err(e) => println!("run:    {e}"),
    }
    Ok(0)
}
