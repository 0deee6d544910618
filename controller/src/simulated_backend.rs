//! The backend of simulated cutovers (`cutover demo`, `cutover bench`): a split kept in a
//! file or in memory, which the simulated traffic follows, as a load balancer would.

use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use async_trait::async_trait;
use cutover_analyzers::simulated::SimWorld;
use cutover_backends::FileBackend;
use cutover_core::{Applied, BackendError, TrafficBackend, Weights};

use crate::clock::Clock;

/// Where the split is kept.
enum Split {
    /// A weights file (the demo: a person can look at it).
    File(FileBackend),
    /// Memory (the benchmark: thousands of runs at once).
    Memory(Mutex<Weights>),
}

/// A backend whose every write is told to the simulated world at the virtual time it lands,
/// so the simulated traffic follows the split. It has no lock: simulated runs drive no
/// shared object (their driver has no owner).
pub struct SimulatedBackend {
    split: Split,
    world: SimWorld,
    clock: Arc<dyn Clock>,
    last_write: Arc<Mutex<Option<SystemTime>>>,
}

impl SimulatedBackend {
    /// The split in the file of `file` (the demo).
    pub fn on_file(file: FileBackend, world: SimWorld, clock: Arc<dyn Clock>) -> Self {
        Self::new(Split::File(file), world, clock)
    }

    /// The split in memory, all traffic on DR at first (the benchmark).
    pub fn in_memory(world: SimWorld, clock: Arc<dyn Clock>) -> Self {
        Self::new(Split::Memory(Mutex::new(Weights::ALL_DR)), world, clock)
    }

    fn new(split: Split, world: SimWorld, clock: Arc<dyn Clock>) -> Self {
        SimulatedBackend {
            split,
            world,
            clock,
            last_write: Arc::new(Mutex::new(None)),
        }
    }

    /// When the last write landed (virtual time), shared: the Kayenta-style judge of the
    /// benchmark counts its horizon from the start of the stage.
    pub fn last_write(&self) -> Arc<Mutex<Option<SystemTime>>> {
        self.last_write.clone()
    }
}

#[async_trait]
impl TrafficBackend for SimulatedBackend {
    fn describe(&self) -> String {
        match &self.split {
            Split::File(f) => format!("{} (simulated traffic follows it)", f.describe()),
            Split::Memory(_) => "in-memory weights (simulated traffic follows them)".into(),
        }
    }

    async fn get_weights(&self) -> Result<Weights, BackendError> {
        match &self.split {
            Split::File(f) => f.get_weights().await,
            Split::Memory(w) => Ok(*w.lock().unwrap_or_else(|p| p.into_inner())),
        }
    }

    async fn set_weights(&self, w: Weights, note: &str) -> Result<Applied, BackendError> {
        let applied = match &self.split {
            Split::File(f) => f.set_weights(w, note).await?,
            Split::Memory(m) => {
                *m.lock().unwrap_or_else(|p| p.into_inner()) = w;
                Applied {
                    weights: w,
                    change: None,
                }
            }
        };
        let now = self.clock.now();
        *self.last_write.lock().unwrap_or_else(|p| p.into_inner()) = Some(now);
        self.world.set_primary_weight(now, w.primary());
        Ok(applied)
    }
}
