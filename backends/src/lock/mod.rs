//! The lock of each routed object, implementations of [`cutover_core::lock::ObjectLock`]:
//! where every controller that could touch the object looks before writing it.

pub mod file;
pub mod lease;
pub mod route53_txt;

pub use file::FileLock;
