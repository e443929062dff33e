//! The fair spawn queue. At most `concurrent_spawn_limit` spawns run at once; a start beyond
//! that waits its turn, first come first served (one place per server: a second start of a
//! server already starting is not a new request), instead of JupyterHub's 429. Waiting spawns
//! hear their place through the progress log ("Waiting to start: 3 ahead of you"); a cancel
//! leaves the queue; only a queue longer than `spawn_queue_limit` refuses a start.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, MutexGuard};

use serde_json::json;
use tokio::sync::oneshot;

use super::Slot;

/// Beyond this place, a waiting spawn hears of its place every tenth move only: a queue of
/// `n` otherwise costs `n²` progress events.
const REPORT_EVERY_MOVE_UP_TO: usize = 50;

struct Waiter {
    id: u64,
    slot: Arc<Slot>,
    wake: oneshot::Sender<()>,
}

#[derive(Default)]
struct State {
    /// Spawns holding a place to run.
    running: usize,
    waiting: VecDeque<Waiter>,
    next_id: u64,
}

pub struct SpawnQueue {
    /// 0: no limit.
    limit: usize,
    /// 0: no queue (past `limit`, a start is refused, as JupyterHub does).
    queue_limit: usize,
    state: Mutex<State>,
}

/// Why a start is refused by the queue.
#[derive(Debug)]
pub struct QueueFull {
    pub waiting: usize,
}

/// A place to run; the next waiting spawn gets it when this is dropped.
pub struct Permit {
    queue: Arc<SpawnQueue>,
}

impl Drop for Permit {
    fn drop(&mut self) {
        self.queue.release();
    }
}

/// A place in the queue.
pub struct Ticket {
    queue: Arc<SpawnQueue>,
    id: u64,
    wake: Option<oneshot::Receiver<()>>,
}

pub enum Admission {
    Now(Permit),
    Queued(Ticket),
}

impl Admission {
    /// Puts the place in the queue into the spawn's (fresh) progress log.
    pub fn announce(self, slot: &Slot) -> Self {
        if let (Admission::Queued(_), Some(ahead)) = (&self, slot.queue_ahead()) {
            slot.push_event(waiting_event(ahead));
        }
        self
    }
}

impl SpawnQueue {
    pub fn new(limit: u32, queue_limit: u32) -> Arc<Self> {
        Arc::new(SpawnQueue {
            limit: limit as usize,
            queue_limit: queue_limit as usize,
            state: Mutex::new(State::default()),
        })
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Spawns waiting for their turn.
    pub fn len(&self) -> usize {
        self.lock().waiting.len()
    }

    /// A place to run now, or one in the queue.
    pub fn admit(self: &Arc<Self>, slot: &Arc<Slot>) -> Result<Admission, QueueFull> {
        let mut st = self.lock();
        if self.limit == 0 || (st.running < self.limit && st.waiting.is_empty()) {
            st.running += 1;
            return Ok(Admission::Now(Permit {
                queue: self.clone(),
            }));
        }
        if st.waiting.len() >= self.queue_limit {
            return Err(QueueFull {
                waiting: st.waiting.len(),
            });
        }
        let (tx, rx) = oneshot::channel();
        st.next_id += 1;
        let id = st.next_id;
        let ahead = st.waiting.len();
        st.waiting.push_back(Waiter {
            id,
            slot: slot.clone(),
            wake: tx,
        });
        slot.set_queue_ahead(Some(ahead));
        Ok(Admission::Queued(Ticket {
            queue: self.clone(),
            id,
            wake: Some(rx),
        }))
    }

    /// A place to run was given back: the first waiting spawn takes it over.
    fn release(self: &Arc<Self>) {
        let mut st = self.lock();
        while let Some(next) = st.waiting.pop_front() {
            next.slot.set_queue_ahead(None);
            if next.wake.send(()).is_ok() {
                report_places_from(&st.waiting, 0);
                return;
            }
        }
        st.running = st.running.saturating_sub(1);
    }

    /// Takes a ticket out of the queue; true if it was still there (its turn had not come).
    fn leave(&self, id: u64) -> bool {
        let mut st = self.lock();
        let Some(at) = st.waiting.iter().position(|w| w.id == id) else {
            return false;
        };
        if let Some(w) = st.waiting.remove(at) {
            w.slot.set_queue_ahead(None);
        }
        // Only those behind it moved up.
        report_places_from(&st.waiting, at);
        true
    }
}

impl Ticket {
    /// Waits for this spawn's turn; `None` if the slot's spawn was cancelled first (it has
    /// then left the queue).
    pub async fn wait(mut self, slot: &Slot) -> Option<Permit> {
        // The receiver stays alive until the end: a turn handed over just as the cancel came
        // is then known to be ours (to give back), never lost between the two.
        let mut wake = self.wake.take()?;
        let turn = tokio::select! {
            r = &mut wake => r.is_ok(),
            _ = slot.cancelled() => false,
        };
        let ours = turn || !self.queue.leave(self.id);
        self.id = 0;
        if !ours {
            return None;
        }
        let permit = Permit {
            queue: self.queue.clone(),
        };
        // Cancelled as the turn came: dropping the permit hands the place on.
        (!slot.is_cancelled()).then_some(permit)
    }
}

impl Drop for Ticket {
    /// A ticket given up before its wait (the start failed on the way): leave the queue, or
    /// hand on the place if the turn had come meanwhile.
    fn drop(&mut self) {
        if self.id != 0 && !self.queue.leave(self.id) {
            self.queue.release();
        }
    }
}

fn waiting_event(ahead: usize) -> serde_json::Value {
    let message = match ahead {
        0 => "Waiting to start: you are next".to_string(),
        1 => "Waiting to start: 1 ahead of you".to_string(),
        n => format!("Waiting to start: {n} ahead of you"),
    };
    json!({"progress": 0, "message": message, "queue_ahead": ahead, "state": "queued"})
}

/// Those from place `from` on moved up by one: tell them where they are now.
fn report_places_from(waiting: &VecDeque<Waiter>, from: usize) {
    for (ahead, w) in waiting.iter().enumerate().skip(from) {
        w.slot.set_queue_ahead(Some(ahead));
        if ahead < REPORT_EVERY_MOVE_UP_TO || ahead % 10 == 0 {
            w.slot.push_event(waiting_event(ahead));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn slot(name: &str) -> Arc<Slot> {
        Arc::new(Slot::new(1, name, ""))
    }

    fn queued(a: Result<Admission, QueueFull>) -> Ticket {
        match a {
            Ok(Admission::Queued(t)) => t,
            _ => panic!("expected a place in the queue"),
        }
    }

    #[tokio::test]
    async fn first_come_first_served_and_a_cancel_leaves_the_line() {
        let q = SpawnQueue::new(1, 2);
        let (a, b, c, d) = (slot("a"), slot("b"), slot("c"), slot("d"));
        let Ok(Admission::Now(running)) = q.admit(&a) else {
            panic!("a runs at once");
        };
        let tb = queued(q.admit(&b));
        let tc = queued(q.admit(&c));
        assert_eq!((b.queue_ahead(), c.queue_ahead()), (Some(0), Some(1)));
        assert!(q.admit(&d).is_err(), "the line is full");

        // b gives up while it waits: c moves up, and b's wait ends without a place.
        b.request_cancel();
        assert!(tb.wait(&b).await.is_none());
        assert_eq!(c.queue_ahead(), Some(0));
        assert_eq!(q.len(), 1);

        // a finishes: c's turn.
        drop(running);
        let permit = tc.wait(&c).await.expect("c's turn");
        assert_eq!(c.queue_ahead(), None);
        assert_eq!(q.len(), 0);
        // One place, held by c: the next start waits.
        let td = queued(q.admit(&d));
        drop(permit);
        assert!(td.wait(&d).await.is_some(), "d's turn after c");
    }

    #[tokio::test]
    async fn a_turn_that_comes_with_the_cancel_is_handed_on() {
        let q = SpawnQueue::new(1, 10);
        let (a, b, c) = (slot("a"), slot("b"), slot("c"));
        let Ok(Admission::Now(running)) = q.admit(&a) else {
            panic!("a runs at once");
        };
        let tb = queued(q.admit(&b));
        let tc = queued(q.admit(&c));
        // b's turn comes and b is cancelled before it looks: the place goes on to c, once.
        drop(running);
        b.request_cancel();
        assert!(tb.wait(&b).await.is_none());
        let pc = tc.wait(&c).await.expect("c's turn");
        // Still one place only.
        let d = slot("d");
        let td = queued(q.admit(&d));
        drop(pc);
        assert!(td.wait(&d).await.is_some());
        // A ticket dropped unused leaves the line.
        let e = slot("e");
        let Ok(Admission::Now(_pe)) = q.admit(&e) else {
            panic!("the place is free again");
        };
        let f = slot("f");
        drop(queued(q.admit(&f)));
        assert_eq!(q.len(), 0);
    }
}
