//! The reader thread of SwapNet's prefetch and of the mix: it walks a list of reads in the
//! order compute will need them and hands each result over a bounded channel, so at most
//! `depth` results exist before compute takes them (the one being handed over included). Every
//! read is admitted by the governor, so reading ahead can only wait, never pass the cap. It
//! stops at the first failed read (compute receives the error) or when compute stops taking.

use std::sync::mpsc::{sync_channel, Receiver};
use std::thread::Scope;

use crate::{Result, RuntimeError};

/// Starts the reader in `scope`: `read(job)` for each of `jobs` in order, at most `depth`
/// (at least 1) results ahead of the receiver.
pub(crate) fn read_ahead<'scope, J, T, I, F>(
    scope: &'scope Scope<'scope, '_>,
    depth: usize,
    jobs: I,
    read: F,
) -> Reader<T>
where
    I: IntoIterator<Item = J> + Send + 'scope,
    F: Fn(J) -> Result<T> + Send + 'scope,
    T: Send + 'scope,
{
    let (sender, receiver) = sync_channel::<Result<T>>(depth.max(1) - 1);
    scope.spawn(move || {
        for job in jobs {
            let result = read(job);
            let failed = result.is_err();
            if sender.send(result).is_err() || failed {
                return;
            }
        }
    });
    Reader { receiver }
}

/// Compute's end of the reader's channel.
pub(crate) struct Reader<T> {
    receiver: Receiver<Result<T>>,
}

impl<T> Reader<T> {
    /// The next read, in job order; `what` names it if the reader stopped before it.
    pub(crate) fn next(&self, what: impl FnOnce() -> String) -> Result<T> {
        self.receiver
            .recv()
            .map_err(|_| RuntimeError::ReaderStopped { before: what() })?
    }
}
