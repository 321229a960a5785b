//! Where a UDP worker runs: each worker may run only on the CPUs whose
//! datagrams [`by_cpu`](crate::steer::by_cpu) hands it, so it is woken
//! where its datagram arrived. Worth it where receiving is spread over the
//! CPUs; where one CPU receives most datagrams, its worker would share that
//! CPU with the receiving while the others idle, so callers make it
//! optional.

/// The CPUs each of `workers` workers steered [`by_cpu`](crate::steer::by_cpu) receives the
/// datagrams of, among the CPUs this process may run on (`allowed`):
/// worker `w` gets every allowed CPU `c` with `c % workers == w`. A worker
/// that gets none (more workers than CPUs) receives no datagram an allowed
/// CPU takes in.
pub fn worker_cpus(allowed: &[usize], workers: usize) -> Vec<Vec<usize>> {
    (0..workers)
        .map(|w| {
            allowed
                .iter()
                .copied()
                .filter(|&c| c % workers == w)
                .collect()
        })
        .collect()
}

/// The CPUs this process may run on (its affinity mask); empty where that
/// cannot be read.
pub fn allowed_cpus() -> Vec<usize> {
    #[cfg(target_os = "linux")]
    {
        use nix::sched::{CpuSet, sched_getaffinity};
        match sched_getaffinity(nix::unistd::Pid::from_raw(0)) {
            Ok(set) => (0..CpuSet::count())
                .filter(|&c| set.is_set(c).unwrap_or(false))
                .collect(),
            Err(_) => Vec::new(),
        }
    }
    #[cfg(not(target_os = "linux"))]
    {
        Vec::new()
    }
}

/// Lets the calling thread run on `cpus` only.
pub fn pin_current_thread(cpus: &[usize]) -> std::io::Result<()> {
    #[cfg(target_os = "linux")]
    {
        use nix::sched::{CpuSet, sched_setaffinity};
        let mut set = CpuSet::new();
        for &cpu in cpus {
            set.set(cpu).map_err(std::io::Error::from)?;
        }
        sched_setaffinity(nix::unistd::Pid::from_raw(0), &set).map_err(std::io::Error::from)
    }
    #[cfg(not(target_os = "linux"))]
    {
        let _ = cpus;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_worker_gets_the_allowed_cpus_it_receives_the_datagrams_of() {
        assert_eq!(worker_cpus(&[0, 1], 2), [vec![0], vec![1]]);
        assert_eq!(worker_cpus(&[0, 1, 2, 3], 2), [vec![0, 2], vec![1, 3]]);
        // A process confined to CPUs 2 and 3 (taskset): worker 0 gets 2.
        assert_eq!(worker_cpus(&[2, 3], 2), [vec![2], vec![3]]);
        assert_eq!(worker_cpus(&[0, 1, 2], 1), [vec![0, 1, 2]]);
        // More workers than CPUs: the extra ones get none (not pinned).
        assert_eq!(worker_cpus(&[0, 1], 4), [vec![0], vec![1], vec![], vec![]]);
        assert!(worker_cpus(&[0, 1], 0).is_empty());
    }
}
