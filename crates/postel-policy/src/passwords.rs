//! Passwords: Argon2id hashes (PHC strings), and the one pool that checks
//! them.
//!
//! An Argon2id check with the default parameters takes 19 MiB and tens of
//! milliseconds of one core, on purpose. Run on whatever thread is free,
//! 240 wrong passwords at once took a server from 0.5 GB to 5 GB, and
//! the memory was not given back. So every check, SMTP AUTH's and the web
//! login's, runs here:
//! - a fixed number of worker threads (from the cores), each with its own
//!   Argon2 memory, allocated once and reused: the memory of checks is
//!   `workers x 19 MiB`, however many clients guess;
//! - a bounded queue in front of them: a check that finds it full is
//!   refused at once ([`Busy`]), and SMTP answers `454 4.7.0`.
//!
//! Not here: who may try (the lockout), or where hashes come from.

use std::sync::mpsc::{Receiver, SyncSender, TrySendError, sync_channel};
use std::sync::{Arc, Mutex};

use argon2::password_hash::rand_core::OsRng;
use argon2::password_hash::{PasswordHash, PasswordHasher, SaltString};
use argon2::{Algorithm, Argon2, Block, Params, Version};

/// The most Argon2 memory one check may ask for (a hash with a larger
/// `m` parameter is never matched): 256 MiB in 1 KiB blocks.
const MAX_BLOCKS: usize = 256 * 1024;

/// Hashes a password with Argon2id (default parameters) and a random salt,
/// as a PHC string.
///
/// # Errors
/// Only if the hasher fails, which it does not for in-range inputs.
pub fn hash_password(password: &str) -> Result<String, argon2::password_hash::Error> {
    let salt = SaltString::generate(&mut OsRng);
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
}

/// The pool and its queue are full: try again later.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Busy;

/// A job for a worker: runs with the worker's Argon2 memory.
type Job = Box<dyn FnOnce(&mut Scratch) + Send>;

/// One worker's Argon2 memory, reused from check to check.
#[derive(Debug, Default)]
pub struct Scratch {
    blocks: Vec<Block>,
}

impl Scratch {
    /// Returns true if and only if `password` matches the PHC string
    /// `hash` (Argon2 only), compared in constant time.
    pub fn verify(&mut self, hash: &str, password: &str) -> bool {
        let Ok(parsed) = PasswordHash::new(hash) else {
            return false;
        };
        let (Ok(algorithm), Ok(params)) = (
            Algorithm::try_from(parsed.algorithm),
            Params::try_from(&parsed),
        ) else {
            return false;
        };
        let version = parsed
            .version
            .and_then(|v| Version::try_from(v).ok())
            .unwrap_or_default();
        let (Some(salt), Some(expected)) = (parsed.salt, parsed.hash) else {
            return false;
        };
        let mut salt_buf = [0u8; 64];
        let Ok(salt) = salt.decode_b64(&mut salt_buf) else {
            return false;
        };
        let blocks = params.block_count();
        if blocks > MAX_BLOCKS {
            tracing::warn!(
                blocks,
                "a password hash asks for too much memory; not checked"
            );
            return false;
        }
        if self.blocks.len() < blocks {
            self.blocks.resize(blocks, Block::new());
        }
        let mut out = vec![0u8; expected.len()];
        let ok = Argon2::new(algorithm, version, params)
            .hash_password_into_with_memory(
                password.as_bytes(),
                salt,
                &mut out,
                &mut self.blocks[..blocks],
            )
            .is_ok();
        // `Output`'s equality is constant-time.
        ok && argon2::password_hash::Output::new(&out).is_ok_and(|o| o == expected)
    }
}

/// The bounded pool of password checks.
#[derive(Debug, Clone)]
pub struct PasswordPool {
    jobs: SyncSender<Job>,
}

impl PasswordPool {
    /// A pool of `workers` threads (at least one) with room for `queue`
    /// checks waiting.
    pub fn new(workers: usize, queue: usize) -> PasswordPool {
        let workers = workers.max(1);
        let (jobs, rx) = sync_channel::<Job>(queue);
        let rx = Arc::new(Mutex::new(rx));
        for i in 0..workers {
            let rx = rx.clone();
            let spawned = std::thread::Builder::new()
                .name(format!("postel-password-{i}"))
                .spawn(move || work(&rx));
            if let Err(e) = spawned {
                tracing::error!(error = %e, "cannot start a password check thread");
            }
        }
        PasswordPool { jobs }
    }

    /// The pool sized from the machine: one worker per two cores (at least
    /// one, at most four), and eight checks waiting per worker.
    pub fn for_this_machine() -> PasswordPool {
        let cores = std::thread::available_parallelism().map_or(1, usize::from);
        let workers = cores.div_ceil(2).clamp(1, 4);
        PasswordPool::new(workers, workers * 8)
    }

    /// Runs `f` on a worker with its Argon2 memory, or returns [`Busy`] at
    /// once if the queue is full.
    ///
    /// # Errors
    /// [`Busy`] when the queue is full (or the workers are gone).
    pub async fn run<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Scratch) -> T + Send + 'static,
    ) -> Result<T, Busy> {
        self.submit(f)?.await.map_err(|_| Busy)
    }

    /// Queues `f` now; its result comes on the returned channel.
    ///
    /// # Errors
    /// [`Busy`] when the queue is full (or the workers are gone).
    pub fn submit<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Scratch) -> T + Send + 'static,
    ) -> Result<tokio::sync::oneshot::Receiver<T>, Busy> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        let job: Job = Box::new(move |scratch| {
            let _ = tx.send(f(scratch));
        });
        match self.jobs.try_send(job) {
            Ok(()) => Ok(rx),
            Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) => Err(Busy),
        }
    }
}

fn work(rx: &Mutex<Receiver<Job>>) {
    let mut scratch = Scratch::default();
    loop {
        let job = {
            let rx = rx.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            rx.recv()
        };
        match job {
            // A panicking check must not take the worker (and its slot)
            // with it.
            Ok(job) => {
                let run = std::panic::AssertUnwindSafe(|| job(&mut scratch));
                if std::panic::catch_unwind(run).is_err() {
                    tracing::error!("a password check panicked");
                }
            }
            Err(_) => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verify_matches_only_the_right_password() {
        let hash = hash_password("s3cret").expect("hash");
        let mut s = Scratch::default();
        assert!(s.verify(&hash, "s3cret"));
        assert!(!s.verify(&hash, "s3creT"));
        assert!(!s.verify("not a phc string", "s3cret"));
        // The memory is kept for the next check.
        assert_eq!(s.blocks.len(), Params::DEFAULT.block_count());
        assert!(s.verify(&hash, "s3cret"));
    }

    #[tokio::test]
    async fn a_full_queue_is_busy_at_once() {
        let pool = PasswordPool::new(1, 2);
        let (release, gate) = std::sync::mpsc::channel::<()>();
        let gate = Arc::new(Mutex::new(gate));
        let (started_tx, started) = std::sync::mpsc::channel::<()>();
        let hold = |gate: Arc<Mutex<Receiver<()>>>, started: std::sync::mpsc::Sender<()>| {
            move |_: &mut Scratch| {
                let _ = started.send(());
                let _ = gate.lock().map(|g| g.recv());
            }
        };
        // The first job takes the only worker; two more fill the queue.
        let first = pool
            .submit(hold(gate.clone(), started_tx.clone()))
            .expect("room");
        started.recv().expect("the worker started");
        let second = pool.submit(hold(gate.clone(), started_tx.clone()));
        let third = pool.submit(hold(gate.clone(), started_tx.clone()));
        assert!(second.is_ok() && third.is_ok());
        assert_eq!(pool.run(|_| ()).await, Err(Busy));
        for _ in 0..3 {
            release.send(()).expect("release");
        }
        for rx in [first, second.expect("queued"), third.expect("queued")] {
            assert_eq!(rx.await, Ok(()));
        }
        assert_eq!(pool.run(|_| 7).await, Ok(7));
    }
}
