//! The IO shell around the `swim` membership core: the [`runtime`] owns the core and carries
//! out what it asks over UDP, [`stream`] serves its TCP exchanges, [`faults`] is the fault
//! filter tests switch on, [`keyring_file`] reads the gossip keys and [`timing`] takes the operator's timing overrides.

pub mod faults;
pub mod keyring_file;
pub mod runtime;
pub mod stream;
pub mod timing;
