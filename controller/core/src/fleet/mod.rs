//! Whole-site failback: a fleet file names the services of a site, their order (`after`,
//! `layer`), how many cutovers run at once, and what a failure does. Loaded and checked
//! here into a [`FleetPlan`] (every problem reported with its field), and scheduled by the
//! pure [`schedule::Fleet`] state machine; the controller runs it with an executor.

pub mod load;
pub mod model;
pub mod schedule;

pub use load::{FleetPlan, FleetService, load};
pub use model::*;
pub use schedule::{Fleet, FleetAction, FleetOutcome, FleetPhase, FleetState, SvcStatus};
