//! The approvals part of the store contract, run against SQLite and PostgreSQL alike (from
//! `store::suite`): requested with the engine's commit, decided by compare-and-set (allowlist,
//! two people, once), timed out only at the deadline, voided when the incident moves on; and two
//! PostgreSQL replicas deciding the same approval at the same moment decide it once.

use std::sync::Arc;
use std::time::Duration;

use remedyd::adapters::store::postgres::PgStore;
use remedyd::adapters::store::{Commit, Decided, Store};
use remedyd::domain::approval::{
    Approval, ApprovalState, Channel, Decision, Refused, Taken, Verdict,
};
use remedyd::domain::incident::{Incident, Phase};
use remedyd::domain::time::Timestamp;

use crate::support::services::Postgres;
use crate::support::story;

fn waiting(id: &str, step: usize, deadline: i64) -> (Incident, Approval) {
    let mut inc = story::escalated().incident;
    inc.id = id.to_string();
    inc.target.name = format!("svc-{id}");
    inc.phase = Phase::AwaitingApproval {
        ladder: 1,
        step,
        until: Timestamp(deadline),
    };
    let a = Approval {
        id: Approval::key(id, 1, step),
        incident: id.to_string(),
        ladder: 1,
        step,
        step_name: "scale".into(),
        requested_at: Timestamp(100),
        deadline: Timestamp(deadline),
        required: 2,
        approvers: vec!["alice".into(), "U024BE7LH".into()],
        state: ApprovalState::Pending,
        decisions: Vec::new(),
    };
    (inc, a)
}

fn by(who: &str, v: Verdict, comment: &str) -> Decision {
    Decision {
        by: who.into(),
        channel: Channel::Slack,
        at: Timestamp(0),
        comment: comment.into(),
        decision: v,
    }
}

async fn ask(store: &dyn Store, inc: &Incident, a: &Approval) {
    store
        .commit(Commit {
            incidents: vec![inc.clone()],
            approvals: vec![a.clone()],
            ..Default::default()
        })
        .await
        .unwrap();
}

/// The contract; ids are `INC-2030-…` so they meet nothing else of the suite.
pub async fn approvals(store: &dyn Store) {
    assert_eq!(store.approval("INC-2030-0001/1/0").await.unwrap(), None);
    assert_eq!(
        store
            .decide_approval(
                "INC-2030-0001/1/0",
                by("alice", Verdict::Approve, ""),
                Timestamp(1)
            )
            .await
            .unwrap(),
        Decided::Unknown
    );
    let (inc, a) = waiting("INC-2030-0001", 0, 10_000);
    ask(store, &inc, &a).await;
    assert_eq!(store.approval(&a.id).await.unwrap().as_ref(), Some(&a));
    // Asked again (a retried commit): the stored one stays.
    let mut other = a.clone();
    other.approvers = vec!["mallory".into()];
    ask(store, &inc, &other).await;
    assert_eq!(store.approval(&a.id).await.unwrap().as_ref(), Some(&a));
    let stranger = store
        .decide_approval(&a.id, by("mallory", Verdict::Approve, ""), Timestamp(200))
        .await
        .unwrap();
    assert!(
        matches!(stranger, Decided::Refused(Refused::NotApprover { .. })),
        "{stranger:?}"
    );
    let first = store
        .decide_approval(
            &a.id,
            by("ALICE", Verdict::Approve, "nul\0 ok"),
            Timestamp(300),
        )
        .await
        .unwrap();
    assert!(
        matches!(
            first,
            Decided::Taken(Taken::Waiting { have: 1, need: 2 }, _)
        ),
        "{first:?}"
    );
    let twice = store
        .decide_approval(&a.id, by("alice", Verdict::Approve, ""), Timestamp(301))
        .await
        .unwrap();
    assert!(
        matches!(twice, Decided::Refused(Refused::SamePerson { .. })),
        "{twice:?}"
    );
    let second = store
        .decide_approval(
            &a.id,
            by("u024be7lh", Verdict::Approve, "go"),
            Timestamp(400),
        )
        .await
        .unwrap();
    assert!(
        matches!(
            second,
            Decided::Taken(Taken::Final(ApprovalState::Approved), _)
        ),
        "{second:?}"
    );
    let read = store.approval(&a.id).await.unwrap().unwrap();
    assert_eq!(read.state, ApprovalState::Approved);
    // Where the request was posted, per route, so its outcome edits it; the first kept stays,
    // and it is not the incident's thread.
    assert_eq!(store.approval_message(&a.id, "chat").await.unwrap(), None);
    store
        .keep_approval_message(&a.id, "chat", "C0OPS12345/1764320400.000100")
        .await
        .unwrap();
    store
        .keep_approval_message(&a.id, "chat", "C0OPS12345/1764320999.000100")
        .await
        .unwrap();
    assert_eq!(
        store
            .approval_message(&a.id, "chat")
            .await
            .unwrap()
            .as_deref(),
        Some("C0OPS12345/1764320400.000100")
    );
    assert_eq!(store.approval_message(&a.id, "other").await.unwrap(), None);
    assert_eq!(store.approval_message(&inc.id, "chat").await.unwrap(), None);
    let who: Vec<(&str, i64, &str)> = read
        .decisions
        .iter()
        .map(|d| (d.by.as_str(), d.at.0, d.comment.as_str()))
        .collect();
    assert_eq!(who, [("alice", 300, "nul\0 ok"), ("U024BE7LH", 400, "go")]);
    let late = store
        .decide_approval(&a.id, by("alice", Verdict::Deny, ""), Timestamp(500))
        .await
        .unwrap();
    assert!(
        matches!(
            late,
            Decided::Refused(Refused::AlreadyDecided {
                state: "approved",
                ..
            })
        ),
        "{late:?}"
    );
    // A deadline: not before it, at it; then nothing is taken.
    let (inc2, b) = waiting("INC-2030-0002", 0, 1_000);
    ask(store, &inc2, &b).await;
    let kept = store
        .expire_approval(&b.id, Timestamp(999))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(kept.state, ApprovalState::Pending);
    let gone = store
        .expire_approval(&b.id, Timestamp(1_000))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(gone.state, ApprovalState::TimedOut);
    assert_eq!(
        store.approval(&b.id).await.unwrap().unwrap().state,
        ApprovalState::TimedOut
    );
    let after = store
        .decide_approval(&b.id, by("alice", Verdict::Approve, ""), Timestamp(900))
        .await
        .unwrap();
    assert!(
        matches!(
            after,
            Decided::Refused(Refused::AlreadyDecided {
                state: "timed_out",
                ..
            })
        ),
        "{after:?}"
    );
    // An approval decided before its deadline is not timed out by a late expiry.
    assert_eq!(
        store
            .expire_approval(&a.id, Timestamp(20_000))
            .await
            .unwrap()
            .unwrap()
            .state,
        ApprovalState::Approved
    );
    // The incident moves on (another step awaited, then none): its pending approvals are void.
    let (mut inc3, c) = waiting("INC-2030-0003", 0, 10_000);
    ask(store, &inc3, &c).await;
    inc3.phase = Phase::Ready;
    store
        .commit(Commit {
            incidents: vec![inc3],
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(
        store.approval(&c.id).await.unwrap().unwrap().state,
        ApprovalState::Void
    );
    let void = store
        .decide_approval(&c.id, by("alice", Verdict::Approve, ""), Timestamp(200))
        .await
        .unwrap();
    assert!(
        matches!(
            void,
            Decided::Refused(Refused::AlreadyDecided { state: "void", .. })
        ),
        "{void:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_postgres_replicas_deciding_the_same_approval_at_once_decide_it_once() {
    let pg = Postgres::start().await;
    tokio::time::timeout(Duration::from_secs(120), async {
        let r1 = Arc::new(PgStore::connect(&pg.url()).await.unwrap());
        let r2 = Arc::new(PgStore::connect(&pg.url()).await.unwrap());
        for round in 0..20 {
            let id = format!("INC-2031-{:04}", round + 1);
            let (inc, mut a) = waiting(&id, 0, 10_000);
            a.required = 1;
            ask(&*r1, &inc, &a).await;
            // The same click reaches both replicas; and a deny from someone else at once.
            let (x, y, z) = tokio::join!(
                r1.decide_approval(&a.id, by("alice", Verdict::Approve, "r1"), Timestamp(200)),
                r2.decide_approval(&a.id, by("alice", Verdict::Approve, "r2"), Timestamp(200)),
                r2.decide_approval(&a.id, by("U024BE7LH", Verdict::Deny, "r2"), Timestamp(200)),
            );
            let all = [x.unwrap(), y.unwrap(), z.unwrap()];
            let taken = all
                .iter()
                .filter(|d| matches!(d, Decided::Taken(..)))
                .count();
            assert_eq!(taken, 1, "round {round}: {all:?}");
            let read = r1.approval(&a.id).await.unwrap().unwrap();
            assert_eq!(read.decisions.len(), 1, "round {round}: {read:?}");
            assert!(
                all.iter().all(|d| matches!(
                    d,
                    Decided::Taken(..) | Decided::Refused(Refused::AlreadyDecided { .. })
                )),
                "{all:?}"
            );
        }
    })
    .await
    .expect("bounded");
}
