//! Requests parked until what they wait for arrives, and the rule for when
//! one resumes: its [`WaitFor`] is ready, or its deadline has passed. Pure:
//! the glue makes the host calls for the requests this queue hands back.

use super::decision::WaitFor;

/// One parked request, by the host's HTTP context id.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Parked {
    context_id: u32,
    wait: WaitFor,
    deadline_ms: u64,
}

/// This VM's parked requests, in the order they were parked.
#[derive(Debug, Default)]
pub struct ParkedQueue {
    parked: Vec<Parked>,
}

impl ParkedQueue {
    /// Parks a request until `wait` is ready or `deadline_ms`.
    pub fn park(&mut self, context_id: u32, wait: WaitFor, deadline_ms: u64) {
        self.parked.push(Parked {
            context_id,
            wait,
            deadline_ms,
        });
    }

    /// Takes out the requests that resume now: those waiting for `ready`,
    /// and every one whose deadline has passed. Returns their context ids
    /// in the order they were parked.
    pub fn release(&mut self, ready: Option<&WaitFor>, now_ms: u64) -> Vec<u32> {
        let (go, stay): (Vec<Parked>, Vec<Parked>) = self
            .parked
            .drain(..)
            .partition(|p| Some(&p.wait) == ready || p.deadline_ms <= now_ms);
        self.parked = stay;
        go.into_iter().map(|p| p.context_id).collect()
    }

    /// Forgets a request whose stream has ended.
    pub fn forget(&mut self, context_id: u32) {
        self.parked.retain(|p| p.context_id != context_id);
    }

    /// Whether no request is parked.
    pub fn is_empty(&self) -> bool {
        self.parked.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::jwks::IssuerId;

    fn keys(i: usize) -> WaitFor {
        WaitFor::Keys(IssuerId(i))
    }

    #[test]
    fn keys_becoming_ready_resume_only_their_waiters() {
        let mut q = ParkedQueue::default();
        q.park(1, keys(0), 5_000);
        q.park(2, keys(1), 5_000);
        q.park(3, keys(0), 5_000);
        assert_eq!(q.release(Some(&keys(0)), 1_000), [1, 3]);
        assert!(!q.is_empty());
        assert_eq!(q.release(Some(&keys(0)), 1_000), Vec::<u32>::new());
    }

    #[test]
    fn a_passed_deadline_resumes_a_request_whatever_it_waits_for() {
        let mut q = ParkedQueue::default();
        q.park(1, keys(0), 2_000);
        q.park(2, keys(1), 3_000);
        assert_eq!(q.release(None, 1_999), Vec::<u32>::new());
        assert_eq!(q.release(None, 2_000), [1]);
        assert_eq!(q.release(Some(&keys(0)), 2_500), Vec::<u32>::new());
        assert_eq!(q.release(None, 3_000), [2]);
        assert!(q.is_empty());
    }

    #[test]
    fn a_forgotten_request_never_resumes() {
        let mut q = ParkedQueue::default();
        q.park(1, keys(0), 2_000);
        q.park(2, keys(0), 2_000);
        q.forget(1);
        assert_eq!(q.release(Some(&keys(0)), 0), [2]);
    }
}
