//! idnode's UDP platform code, shared by the node's listeners
//! (`idnode-server`) and the load generator and its echo server
//! (`idnode-bench`), so that both keep one worker model and one set of
//! system calls (as quinn keeps its platform code in quinn-udp):
//!
//! - [`group`]: binding a SO_REUSEPORT group, one socket a worker;
//! - [`steer`]: which socket of the group gets a datagram (classic BPF: by
//!   receiving CPU for the Handle and DNS workers, by QUIC connection ID
//!   for the QUIC endpoints);
//! - [`pin`]: running each worker on the CPUs steered to it;
//! - [`mmsg`]: batched receive and send (`recvmmsg`, `sendmmsg`), up to
//!   [`mmsg::BATCH`] datagrams a system call into buffers allocated once,
//!   with the kernel's receive timestamps where a socket asks for them.
//!
//! It knows nothing of idnode's protocols.

pub mod group;
pub mod mmsg;
pub mod pin;
pub mod steer;

pub use group::bind;
pub use mmsg::{BATCH, RECV_BUF, RecvBatch, send_all, stamp_arrivals};
pub use pin::{allowed_cpus, pin_current_thread, worker_cpus};
pub use steer::{by_cpu, by_quic_connection_id};
