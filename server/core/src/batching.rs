//! Group commit for work that callers wait on: every item goes through one in-memory queue, and
//! the items that arrive while a batch is being handled form the next batch.
//!
//! Nothing waits for a batch to fill: a lone item is handled at once, and under load the batches
//! grow by themselves, up to a limit. A few batches run at a time, so one is being sent while
//! another waits on the database. An item may name a key (the metering batcher's workspace): while
//! a batch holding that key runs, the key's next items wait and then go together, since a batch
//! of their own would only wait for the first one's lock. The queue lives in memory only: each
//! caller waits for its answer, and the durable record of what is still to do stays where it was.
//!
//! Used by the metering batcher ([`crate::metering::Meter`]) and the delivery writer
//! ([`crate::github::writer::DeliveryWriter`]). Written here rather than taken from a crate: of
//! those looked at, `batched` batches a free function of the items alone (no pool or ledger to
//! hand it), and `batchy` waits a time window for a batch to fill and gives a failed batch's
//! error to every caller in it; neither holds back the items of a key in flight.

use std::collections::HashSet;
use std::future::Future;
use std::hash::Hash;

use tokio::sync::{mpsc, oneshot};

/// How large batches get and how many run at once.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// The most items in one batch.
    pub max_batch: usize,
    /// Batches handled at the same time.
    pub in_flight: usize,
}

/// The batcher is gone: the runtime is shutting down.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the batcher has stopped")]
pub struct Stopped;

/// One item waiting for its batch and where its answer goes.
struct Request<T, R> {
    item: T,
    answer: oneshot::Sender<R>,
}

/// A handle on a batcher of items `T` answered with `R`. Cheap to clone; the batcher stops when
/// the last handle is dropped, after the batches it holds.
pub struct Batcher<T, R> {
    requests: mpsc::UnboundedSender<Request<T, R>>,
}

impl<T, R> Clone for Batcher<T, R> {
    fn clone(&self) -> Self {
        Self {
            requests: self.requests.clone(),
        }
    }
}

impl<T: Send + 'static, R: Send + 'static> Batcher<T, R> {
    /// Starts a batcher on the current Tokio runtime. `handle` gets each batch and returns one
    /// answer per item, in their order; `key` names what an item's batch holds (or `None`).
    pub fn start<K, F, Fut>(limits: Limits, key: fn(&T) -> Option<K>, handle: F) -> Self
    where
        K: Eq + Hash + Clone + Send + 'static,
        F: Fn(Vec<T>) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Vec<R>> + Send + 'static,
    {
        let (requests, waiting) = mpsc::unbounded_channel();
        tokio::spawn(run(limits, key, handle, waiting));
        Self { requests }
    }

    /// Hands `item` to the next batch and waits for its answer.
    pub async fn submit(&self, item: T) -> Result<R, Stopped> {
        let (answer, answered) = oneshot::channel();
        self.requests
            .send(Request { item, answer })
            .map_err(|_| Stopped)?;
        answered.await.map_err(|_| Stopped)
    }
}

async fn run<T, R, K, F, Fut>(
    limits: Limits,
    key: fn(&T) -> Option<K>,
    handle: F,
    mut requests: mpsc::UnboundedReceiver<Request<T, R>>,
) where
    T: Send + 'static,
    R: Send + 'static,
    K: Eq + Hash + Clone + Send + 'static,
    F: Fn(Vec<T>) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Vec<R>> + Send + 'static,
{
    let (finished_sender, mut finished) = mpsc::unbounded_channel::<Vec<K>>();
    let mut waiting: Vec<Request<T, R>> = Vec::new();
    // Keys held by a batch in flight: their next items wait for it and go together.
    let mut busy: HashSet<K> = HashSet::new();
    let mut in_flight = 0;
    let mut open = true;
    loop {
        tokio::select! {
            request = requests.recv(), if open => match request {
                Some(request) => {
                    waiting.push(request);
                    while let Ok(request) = requests.try_recv() {
                        waiting.push(request);
                    }
                }
                None => open = false,
            },
            Some(keys) = finished.recv() => {
                in_flight -= 1;
                for held in keys {
                    busy.remove(&held);
                }
            }
        }
        while in_flight < limits.in_flight {
            let batch = next_batch(&mut waiting, key, &busy, limits.max_batch);
            if batch.is_empty() {
                break;
            }
            let keys: Vec<K> = batch
                .iter()
                .filter_map(|request| key(&request.item))
                .collect::<HashSet<_>>()
                .into_iter()
                .collect();
            busy.extend(keys.iter().cloned());
            in_flight += 1;
            let done = BatchDone {
                keys,
                finished: finished_sender.clone(),
            };
            let (items, answers): (Vec<T>, Vec<_>) = batch
                .into_iter()
                .map(|request| (request.item, request.answer))
                .unzip();
            let handled = handle(items);
            tokio::spawn(async move {
                for (answer, outcome) in answers.into_iter().zip(handled.await) {
                    // The caller may have given up waiting; its item was handled all the same.
                    let _ = answer.send(outcome);
                }
                drop(done);
            });
        }
        if !open && waiting.is_empty() && in_flight == 0 {
            return;
        }
    }
}

/// Takes the next batch from `waiting`: in the order they came, up to `max` items whose key no
/// batch in flight holds. The others keep their places.
fn next_batch<T, R, K: Eq + Hash>(
    waiting: &mut Vec<Request<T, R>>,
    key: impl Fn(&T) -> Option<K>,
    busy: &HashSet<K>,
    max: usize,
) -> Vec<Request<T, R>> {
    let mut batch = Vec::new();
    let mut kept = Vec::new();
    for request in waiting.drain(..) {
        let free = key(&request.item).is_none_or(|held| !busy.contains(&held));
        if batch.len() < max && free {
            batch.push(request);
        } else {
            kept.push(request);
        }
    }
    *waiting = kept;
    batch
}

/// Frees a batch's keys when the batch ends, however it ends (a panic included), so their next
/// items are never stuck behind it.
struct BatchDone<K> {
    keys: Vec<K>,
    finished: mpsc::UnboundedSender<Vec<K>>,
}

impl<K> Drop for BatchDone<K> {
    fn drop(&mut self) {
        // The loop holds a sender itself, so this fails only once the loop is gone.
        let _ = self.finished.send(std::mem::take(&mut self.keys));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An item of key `key` numbered `n`.
    fn request(key: char, n: u32) -> Request<(char, u32), ()> {
        let (answer, _) = oneshot::channel();
        Request {
            item: (key, n),
            answer,
        }
    }

    fn numbers(requests: &[Request<(char, u32), ()>]) -> Vec<u32> {
        requests.iter().map(|r| r.item.1).collect()
    }

    fn key_of(item: &(char, u32)) -> Option<char> {
        Some(item.0)
    }

    #[test]
    fn items_of_a_key_in_flight_wait_and_the_others_go_in_order() {
        let mut waiting = vec![
            request('b', 1),
            request('f', 2),
            request('b', 3),
            request('g', 4),
            request('f', 5),
        ];
        let batch = next_batch(&mut waiting, key_of, &HashSet::from(['b']), 10);
        assert_eq!(numbers(&batch), [2, 4, 5]);
        assert_eq!(numbers(&waiting), [1, 3], "kept in the order they came");
        // Once its batch is done, the key's waiting items go together.
        let batch = next_batch(&mut waiting, key_of, &HashSet::new(), 10);
        assert_eq!(numbers(&batch), [1, 3]);
        assert!(waiting.is_empty());
    }

    #[test]
    fn a_batch_holds_at_most_max_items() {
        let mut waiting: Vec<_> = (0..13).map(|n| request('k', n)).collect();
        let batch = next_batch(&mut waiting, key_of, &HashSet::new(), 10);
        assert_eq!(batch.len(), 10);
        assert_eq!(
            numbers(&waiting),
            [10, 11, 12],
            "the rest wait for the next batch"
        );
    }

    #[tokio::test]
    async fn a_batch_that_panics_still_frees_its_keys() {
        let (finished, mut done) = mpsc::unbounded_channel();
        let batch = tokio::spawn(async move {
            let _done = BatchDone {
                keys: vec!['w'],
                finished,
            };
            panic!("a bug while handling a batch");
        });
        assert!(batch.await.is_err(), "the batch panicked");
        assert_eq!(done.recv().await, Some(vec!['w']));
    }

    #[tokio::test]
    async fn items_submitted_together_are_answered_each_with_its_own_answer() {
        let batcher = Batcher::start(
            Limits {
                max_batch: 4,
                in_flight: 1,
            },
            |_: &u32| None::<()>,
            |items: Vec<u32>| async move {
                let size = items.len();
                items.into_iter().map(|n| (n * 10, size)).collect()
            },
        );
        let answers = futures_util::future::join_all((0..10).map(|n| batcher.submit(n))).await;
        let answers: Vec<(u32, usize)> =
            answers.into_iter().map(|a| a.expect("answered")).collect();
        assert_eq!(
            answers.iter().map(|(n, _)| *n).collect::<Vec<_>>(),
            (0..10).map(|n| n * 10).collect::<Vec<_>>()
        );
        assert!(
            answers.iter().all(|(_, size)| *size <= 4),
            "no batch over the limit: {answers:?}"
        );
        assert!(
            answers.iter().any(|(_, size)| *size > 1),
            "items sent together share a batch: {answers:?}"
        );
    }
}
