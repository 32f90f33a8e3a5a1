//! Reads that records starting together share (issue 20): a batch's records reach
//! their first reads in the same moment, and an account-wide read (the case scan on
//! an emulator, ListSecrets by employee) answers all of them with one call.
//!
//! The first record to ask leads: it lets the others run for a few passes of the
//! batch's task, then makes the call for every member and hands them the answer.
//! The others join and wait on a channel: they never drive the call, so how many
//! join does not change when it is sent. A leader dropped before answering (its
//! record cancelled) closes the group, and its members read alone.

use std::future::Future;
use std::sync::{Arc, Mutex, MutexGuard};

use futures::channel::oneshot;
use futures::future::{BoxFuture, FutureExt, Shared};

/// How many passes the leader waits before it sends the call. The records of a
/// batch are polled by one task, each once per pass, and make their first reads
/// in their first poll: one pass is enough, the rest is margin. A few microseconds.
const PASSES: usize = 3;

/// The answer as a member sees it: `None` when the leader was dropped first.
type Answer<T> = Shared<BoxFuture<'static, Option<T>>>;

/// Until when a record may join a group.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Until {
    /// The call is sent: a member's question is never newer than the call (the
    /// call's arguments are the members, e.g. employee ids).
    Sent,
    /// The call is answered: a member's answer is at most one round trip older
    /// than its question (an account-wide read with no arguments).
    Answered,
}

/// The one open group, if any.
pub struct Gathering<T: Clone> {
    slot: Arc<Mutex<Option<Group<T>>>>,
}

impl<T: Clone> Default for Gathering<T> {
    fn default() -> Self {
        Gathering {
            slot: Arc::new(Mutex::new(None)),
        }
    }
}

impl<T: Clone> Clone for Gathering<T> {
    fn clone(&self) -> Self {
        Gathering {
            slot: Arc::clone(&self.slot),
        }
    }
}

struct Group<T: Clone> {
    /// Only a question of the same kind joins (e.g. the same secret name prefix).
    key: String,
    members: Arc<Mutex<Vec<String>>>,
    answer: Answer<T>,
}

enum Turn<T: Clone> {
    Lead(Lead<T>),
    Join(Answer<T>),
}

/// The leader's side of a group.
struct Lead<T: Clone> {
    slot: Arc<Mutex<Option<Group<T>>>>,
    members: Arc<Mutex<Vec<String>>>,
    tx: Option<oneshot::Sender<T>>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl<T: Clone + Send + Sync + 'static> Gathering<T> {
    /// `call(members)` once for every record that asks for `key` while the group is
    /// open (`until`; at most `max` members, each counted once). A record whose
    /// leader was dropped before answering calls alone, with only its own member.
    pub async fn share<F, Fut>(
        &self,
        key: &str,
        member: &str,
        max: usize,
        until: Until,
        call: F,
    ) -> T
    where
        F: FnOnce(Vec<String>) -> Fut,
        Fut: Future<Output = T>,
    {
        match self.ask(key, member, max) {
            Turn::Lead(lead) => {
                lead.wait_for_members().await;
                let members = match until {
                    Until::Sent => lead.close(),
                    Until::Answered => lead.members(),
                };
                let answer = call(members).await;
                lead.answer(answer.clone());
                answer
            }
            Turn::Join(answer) => match answer.await {
                Some(answer) => answer,
                None => call(vec![member.to_owned()]).await,
            },
        }
    }

    /// Joins the open group of `key`, adding `member` (once); a group closes when
    /// it holds `max` members. Else leads a new group of `member`.
    fn ask(&self, key: &str, member: &str, max: usize) -> Turn<T> {
        let mut open = lock(&self.slot);
        if let Some(g) = open.as_ref().filter(|g| g.key == key) {
            let mut members = lock(&g.members);
            if !members.iter().any(|m| m == member) {
                members.push(member.to_owned());
            }
            let (full, answer) = (members.len() >= max, g.answer.clone());
            drop(members);
            if full {
                *open = None;
            }
            return Turn::Join(answer);
        }
        let members = Arc::new(Mutex::new(vec![member.to_owned()]));
        let (tx, rx) = oneshot::channel();
        *open = Some(Group {
            key: key.to_owned(),
            members: Arc::clone(&members),
            answer: rx.map(Result::ok).boxed().shared(),
        });
        Turn::Lead(Lead {
            slot: Arc::clone(&self.slot),
            members,
            tx: Some(tx),
        })
    }
}

impl<T: Clone> Lead<T> {
    /// Lets the batch's other records run and join: call before sending.
    async fn wait_for_members(&self) {
        for _ in 0..PASSES {
            tokio::task::yield_now().await;
        }
    }

    fn members(&self) -> Vec<String> {
        lock(&self.members).clone()
    }

    /// Closes the group (no member joins after) and returns its members.
    fn close(&self) -> Vec<String> {
        let mut open = lock(&self.slot);
        if open
            .as_ref()
            .is_some_and(|g| Arc::ptr_eq(&g.members, &self.members))
        {
            *open = None;
        }
        self.members()
    }

    /// Hands the answer to every member and closes the group.
    fn answer(mut self, answer: T) {
        self.close();
        if let Some(tx) = self.tx.take() {
            // No member left to hear it: nothing to do.
            let _ = tx.send(answer);
        }
    }
}

impl<T: Clone> Drop for Lead<T> {
    fn drop(&mut self) {
        self.close();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    type G = Gathering<usize>;

    fn lead(t: Turn<usize>) -> Lead<usize> {
        match t {
            Turn::Lead(l) => l,
            Turn::Join(_) => panic!("expected to lead"),
        }
    }

    fn join(t: Turn<usize>) -> Answer<usize> {
        match t {
            Turn::Join(a) => a,
            Turn::Lead(_) => panic!("expected to join"),
        }
    }

    #[tokio::test]
    async fn members_asking_together_share_one_answer_up_to_the_maximum() {
        let g = G::default();
        let first = lead(g.ask("hr/", "E1", 10));
        let members: Vec<_> = (2..=10)
            .map(|i| join(g.ask("hr/", &format!("E{i}"), 10)))
            .collect();
        // Ten members fill the group: the eleventh leads a second one.
        let second = lead(g.ask("hr/", "E11", 10));
        let again = join(g.ask("hr/", "E11", 10));
        let ids = first.close();
        assert_eq!(ids.len(), 10);
        assert_eq!(ids[9], "E10");
        first.answer(ids.len());
        for m in members {
            assert_eq!(m.await, Some(10));
        }
        // A repeated member is counted once.
        assert_eq!(second.close(), ["E11"]);
        second.answer(1);
        assert_eq!(again.await, Some(1));
    }

    #[tokio::test]
    async fn a_closed_group_is_never_joined_and_an_open_one_is_until_answered() {
        let g = G::default();
        let first = lead(g.ask("hr/", "E1", 10));
        assert_eq!(first.close(), ["E1"]);
        // Closed (sent): the next question leads its own group.
        let second = lead(g.ask("hr/", "E2", 10));
        // Not closed: joined until it is answered.
        let member = join(g.ask("hr/", "E3", 10));
        second.answer(2);
        assert_eq!(member.await, Some(2));
        let third = lead(g.ask("hr/", "E4", 10));
        // Another key (another kind of question) is never mixed in.
        let other = lead(g.ask("other/", "E5", 10));
        assert_eq!(other.close(), ["E5"]);
        assert_eq!(third.close(), ["E4"]);
        drop(first);
    }

    #[tokio::test]
    async fn a_leader_dropped_before_answering_closes_its_group_and_frees_its_members() {
        let g = G::default();
        let first = lead(g.ask("hr/", "E1", 10));
        let member = join(g.ask("hr/", "E2", 10));
        drop(first);
        assert_eq!(member.await, None);
        assert_eq!(lead(g.ask("hr/", "E3", 10)).close(), ["E3"]);
    }

    #[tokio::test]
    async fn the_leader_waits_for_the_others_of_its_pass() {
        // Ten records polled by one task, as a batch's are: all join the first.
        let g = G::default();
        let led = std::sync::atomic::AtomicUsize::new(0);
        let asks = (1..=10).map(|i| {
            let (g, led) = (g.clone(), &led);
            async move {
                g.share("hr/", &format!("E{i}"), 10, Until::Sent, |ids| async move {
                    led.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                    ids.len()
                })
                .await
            }
        });
        let got = futures::future::join_all(asks).await;
        assert_eq!(got, vec![10; 10]);
        assert_eq!(led.load(std::sync::atomic::Ordering::SeqCst), 1);
    }
}
