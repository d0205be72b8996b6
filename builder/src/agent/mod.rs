//! The on-node agent (`nodeimg boot`, PID 1 of every image): who this node
//! is, its rendered configuration, the services it supervises, the SQL the
//! leader runs, etcd membership changes, and fencing of a dead leader.

pub mod backup;
pub mod backup_drill;
pub mod backup_schedule;
pub mod backup_standby;
pub mod bootstrap_sql;
pub mod etcd;
pub mod etcd_membership;
pub mod etcd_quorum;
pub mod fencing;
pub mod https;
pub mod identity;
pub mod node;
pub mod render;
pub mod restore;
pub mod services;
pub mod supervise;
