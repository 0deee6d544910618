//! `cutover tune` (being written).
