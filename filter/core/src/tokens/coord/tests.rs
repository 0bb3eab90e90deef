//! Races between workers, played out on the mock host: each test names the interleaving it
//! guards.

#![allow(clippy::indexing_slicing)]

use super::mock::{MockHost, World};
use super::push_store;
use super::shared::{self, StaleMark, UpdateError, CAS_ATTEMPTS};
use super::{Lookup, TokenManager, TokenTarget, TICK_MS};
use crate::config::{ClientAuth, SigningAlg};
use crate::engine::LocalReply;
use crate::plan::{LogLevel, OAuth2Credential};
use crate::secret::Secret;
use crate::target_url::TargetUrl;
use crate::tokens::record::{fetch_key, token_key};
use crate::tokens::schedule::STALE_REFRESH_MIN_INTERVAL_MS;
use crate::tokens::{FetchState, TokenRecord, TokenSource};
use std::rc::Rc;

const T0: u64 = 1_704_067_200_000;
const SF: &str = "salesforce";
const TIMEOUT_MS: u64 = 10_000;

fn cred() -> OAuth2Credential {
    OAuth2Credential {
        token_cluster: "egress_token_salesforce".into(),
        fetch: true,
        grant: Default::default(),
        token_url: Some(TargetUrl::parse("https://login.example.com/oauth2/token").unwrap()),
        client_id: "id".into(),
        client_secret: Some(Secret::new("secret")),
        scopes: vec![],
        params: Default::default(),
        client_auth: ClientAuth::ClientSecretPost,
        signing_alg: SigningAlg::RS256,
        key_id: None,
        private_key_pem: None,
        refresh_before_expiry_ms: 300_000,
        token_timeout_ms: TIMEOUT_MS,
        default_lifetime_ms: 300_000,
    }
}

fn target() -> TokenTarget {
    TokenTarget {
        index: 0,
        name: SF.into(),
        cred: cred(),
        unavailable: LocalReply::error(503, "credentials_unavailable", "no token"),
        signer: None,
    }
}

/// A worker: its host view and its manager (already started).
struct Worker {
    host: Rc<MockHost>,
    tokens: TokenManager,
}

fn worker(world: &Rc<World>, seed: u64) -> Worker {
    let host = Rc::new(MockHost::new(world));
    let mut tokens = TokenManager::new(1, vec![target()], LogLevel::Debug, seed);
    tokens.start(host.as_ref());
    Worker { host, tokens }
}

impl Worker {
    fn tick(&mut self) {
        self.tokens.on_tick(self.host.as_ref());
    }

    fn grant(&mut self, token: &str) -> bool {
        let id = self.host.last_callout().expect("a fetch in flight");
        let body =
            format!(r#"{{"access_token":"{token}","token_type":"Bearer","expires_in":3600}}"#);
        self.tokens
            .on_callout(self.host.as_ref(), id, Some(200), body.as_bytes())
    }

    fn lookup(&mut self) -> Lookup {
        self.tokens.lookup(self.host.as_ref(), 0)
    }
}

fn record(world: &World) -> TokenRecord {
    TokenRecord::from_bytes(&world.get(&token_key(SF)).expect("a token entry")).expect("a record")
}

fn state(world: &World) -> FetchState {
    FetchState::from_bytes(&world.get(&fetch_key(SF)).expect("a fetch entry")).expect("a state")
}

fn pushed(token: &str, now: u64) -> TokenRecord {
    TokenRecord {
        token: Secret::new(token),
        token_type: "Bearer".into(),
        expires_at_ms: now + 3_600_000,
        obtained_at_ms: now,
        source: TokenSource::Pushed,
        version: 0,
        stale: false,
        last_stale_mark_ms: 0,
    }
}

fn push(world: &Rc<World>, token: &str) -> u64 {
    let other = MockHost::new(world);
    let now = world.clock_ms.get();
    shared::store_pushed(&other, SF, &pushed(token, now))
        .unwrap()
        .written
        .unwrap()
        .version
}

#[test]
fn start_creates_both_entries_so_later_writes_are_compare_and_swap() {
    let world = World::new(T0);
    let _w = worker(&world, 7);
    assert_eq!(world.get(&token_key(SF)).as_deref(), Some(shared::NO_TOKEN));
    assert_eq!(state(&world), FetchState::default());
    // A second worker starting does not overwrite a token stored meanwhile.
    push(&world, "tok-p");
    let _w2 = worker(&world, 9);
    assert_eq!(record(&world).token.expose(), "tok-p");
}

#[test]
fn two_workers_ticking_take_one_lease_and_make_one_fetch() {
    let world = World::new(T0);
    let mut a = worker(&world, 2);
    let mut b = worker(&world, 4);
    a.tick();
    b.tick();
    assert_eq!(
        a.host.dispatched.borrow().len() + b.host.dispatched.borrow().len(),
        1
    );
    assert_eq!(state(&world).lease_owner, Some(a.tokens.worker_id()));
}

#[test]
fn a_lease_taken_between_a_workers_read_and_write_makes_it_stand_down() {
    let world = World::new(T0);
    let mut a = worker(&world, 2);
    let mut b = worker(&world, 4);
    let b_host = b.host.clone();
    // b reads the free lease, then a takes it before b writes.
    let a_host = a.host.clone();
    let a_id = a.tokens.worker_id();
    b_host.before_next_write(&fetch_key(SF), move || {
        shared::take_lease(a_host.as_ref(), SF, a_id, T0, TIMEOUT_MS).unwrap();
    });
    b.tick();
    assert!(
        b.host.dispatched.borrow().is_empty(),
        "b fetched although a holds the lease"
    );
    assert_eq!(state(&world).lease_owner, Some(a_id));
    assert_eq!(world.metric("egress.salesforce.shared_data_conflicts"), 1);
    a.tick();
    assert!(
        a.host.dispatched.borrow().is_empty(),
        "a never dispatched: it took the lease by hand"
    );
}

#[test]
fn a_push_landing_between_a_fetchs_read_and_write_is_kept_and_the_conflict_counted() {
    let world = World::new(T0);
    let mut a = worker(&world, 2);
    a.tick();
    let w = world.clone();
    a.host.before_next_write(&token_key(SF), move || {
        push(&w, "tok-pushed");
    });
    world.advance(50);
    assert!(a.grant("tok-fetched"));
    let r = record(&world);
    assert_eq!(r.token.expose(), "tok-pushed", "the push was overwritten");
    assert_eq!(r.source, TokenSource::Pushed);
    assert_eq!(world.metric("egress.salesforce.shared_data_conflicts"), 1);
    assert_eq!(
        world.metric("egress.salesforce.fetched_token_superseded"),
        1
    );
    assert_eq!(world.metric("egress.salesforce.tokens_fetched"), 0);
    // The worker uses the pushed token, and the lease is released.
    assert_eq!(a.lookup(), Lookup::Token("tok-pushed".into(), r.version));
    assert_eq!(state(&world).lease_owner, None);
}

#[test]
fn a_fetch_replacing_an_older_token_after_a_conflict_takes_the_next_version() {
    let world = World::new(T0);
    let mut a = worker(&world, 2);
    let v1 = push(&world, "tok-old");
    world.advance(3_400_000); // due for refresh
    a.tick();
    // Another writer (a stale mark from another worker) lands between read and write.
    let other = Rc::new(MockHost::new(&world));
    a.host.before_next_write(&token_key(SF), move || {
        let (mark, _) = shared::mark_stale(other.as_ref(), SF, v1, T0 + 3_400_000).unwrap();
        assert_eq!(mark, StaleMark::Marked);
    });
    assert!(a.grant("tok-new"));
    let r = record(&world);
    assert_eq!(r.token.expose(), "tok-new");
    assert_eq!(r.version, v1 + 2, "after the stale mark's v+1");
    assert_eq!(world.metric("egress.salesforce.shared_data_conflicts"), 1);
}

#[test]
fn versions_grow_by_one_per_write_whoever_writes_so_no_two_tokens_share_one() {
    let world = World::new(T0);
    let mut a = worker(&world, 2);
    let mut seen = vec![];
    a.tick();
    a.grant("tok-1");
    seen.push(record(&world).version);
    seen.push(push(&world, "tok-2"));
    let host = MockHost::new(&world);
    shared::mark_stale(&host, SF, *seen.last().unwrap(), world.clock_ms.get()).unwrap();
    seen.push(record(&world).version);
    a.tick();
    a.grant("tok-3");
    seen.push(record(&world).version);
    seen.push(push(&world, "tok-4"));
    assert_eq!(seen, vec![1, 2, 3, 4, 5]);
}

#[test]
fn a_compare_and_swap_that_keeps_failing_gives_up_is_counted_and_the_token_still_serves_this_worker(
) {
    let world = World::new(T0);
    let mut a = worker(&world, 2);
    assert_eq!(a.lookup(), Lookup::Wait);
    assert!(a.tokens.wait(a.host.as_ref(), 0, 42));
    a.tick();
    a.host.failing_sets.set(CAS_ATTEMPTS);
    assert!(a.grant("tok-1"));
    assert_eq!(
        world.get(&token_key(SF)).as_deref(),
        Some(shared::NO_TOKEN),
        "nothing stored"
    );
    assert_eq!(
        world.metric("egress.salesforce.shared_data_conflicts"),
        u64::from(CAS_ATTEMPTS)
    );
    assert_eq!(world.metric("egress.salesforce.shared_data_errors"), 1);
    assert!(a
        .host
        .logged("Shared data update failed: storing the fetched token"));
    // The waiting request gets the token, with version 0: a 401 for it marks nothing.
    assert_eq!(
        *a.host.resumed.borrow(),
        vec![(42, "Bearer tok-1".to_string())]
    );
    assert_eq!(a.tokens.resumed_with(42), Some((0, 0)));
    // The lease was released afterwards (the failures were used up).
    assert_eq!(state(&world).lease_owner, None);
}

#[test]
fn the_update_helper_reports_contention_after_the_bounded_attempts() {
    let world = World::new(T0);
    let host = MockHost::new(&world);
    host.failing_sets.set(u32::MAX);
    let e = shared::take_lease(&host, SF, 3, T0, TIMEOUT_MS).unwrap_err();
    assert_eq!(e, UpdateError::Contended(CAS_ATTEMPTS));
}

#[test]
fn a_lapsed_lease_taken_over_is_not_released_by_the_late_first_fetch() {
    let world = World::new(T0);
    let mut a = worker(&world, 2);
    let mut b = worker(&world, 4);
    a.tick();
    // a's callout never answers in time; its lease lapses and b takes over.
    world.advance(TIMEOUT_MS + 2_001);
    b.tick();
    assert_eq!(b.host.dispatched.borrow().len(), 1);
    assert_eq!(state(&world).lease_owner, Some(b.tokens.worker_id()));
    // a's late reply still stores its token, but b's lease stands.
    assert!(a.grant("tok-a"));
    assert_eq!(record(&world).token.expose(), "tok-a");
    assert_eq!(state(&world).lease_owner, Some(b.tokens.worker_id()));
    assert!(b.grant("tok-b"));
    assert_eq!(record(&world).token.expose(), "tok-b");
    assert_eq!(record(&world).version, 2);
    assert_eq!(state(&world).lease_owner, None);
}

#[test]
fn concurrent_401s_for_one_version_mark_it_stale_once() {
    let world = World::new(T0);
    let mut a = worker(&world, 2);
    let mut b = worker(&world, 4);
    let v = push(&world, "tok-1");
    let b_host = b.host.clone();
    // b's 401 lands between a's read and write: a's retry sees the version moved on.
    a.host.before_next_write(&token_key(SF), move || {
        b.tokens.mark_stale(b_host.as_ref(), 0, v);
    });
    a.tokens.mark_stale(a.host.as_ref(), 0, v);
    assert_eq!(
        world.metric("egress.salesforce.token_rejected_by_target"),
        1
    );
    assert_eq!(world.metric("egress.salesforce.shared_data_conflicts"), 1);
    let r = record(&world);
    assert!(r.stale);
    assert_eq!(r.version, v + 1);
    // The stale version's own 401s change nothing.
    a.tokens.mark_stale(a.host.as_ref(), 0, v + 1);
    assert_eq!(record(&world).version, v + 1);
}

#[test]
fn a_401_storm_causes_at_most_one_stale_refresh_per_interval_counted() {
    let world = World::new(T0);
    let mut a = worker(&world, 2);
    let mut fetches = 0;
    let mut suppressed_seen = 0;
    // For two minutes, every token the worker gets is answered 401 at once, every 100 ms.
    for _ in 0..1_200 {
        if let Lookup::Token(_, version) = a.lookup() {
            a.tokens.mark_stale(a.host.as_ref(), 0, version);
        }
        let before = a.host.dispatched.borrow().len();
        a.tick();
        if a.host.dispatched.borrow().len() > before {
            fetches += 1;
            a.grant(&format!("tok-{fetches}"));
        }
        suppressed_seen = world.metric("egress.salesforce.stale_refresh_suppressed");
        world.advance(TICK_MS);
    }
    let marks = world.metric("egress.salesforce.token_rejected_by_target");
    // 120 s at one mark per 30 s: the first, then at 30, 60, 90 s.
    assert_eq!(marks, 120_000 / STALE_REFRESH_MIN_INTERVAL_MS);
    assert_eq!(fetches, 1 + marks, "the cold-start fetch plus one per mark");
    assert!(suppressed_seen > 1_000, "{suppressed_seen}");
}

#[test]
fn the_stale_interval_survives_new_tokens_pushed_or_fetched() {
    let world = World::new(T0);
    let host = MockHost::new(&world);
    let v = push(&world, "tok-1");
    assert_eq!(
        shared::mark_stale(&host, SF, v, T0).unwrap().0,
        StaleMark::Marked
    );
    world.advance(1_000);
    let v = push(&world, "tok-2");
    assert_eq!(record(&world).last_stale_mark_ms, T0);
    assert_eq!(
        shared::mark_stale(&host, SF, v, T0 + 1_000).unwrap().0,
        StaleMark::Suppressed
    );
    assert!(!record(&world).stale);
    let later = T0 + STALE_REFRESH_MIN_INTERVAL_MS;
    assert_eq!(
        shared::mark_stale(&host, SF, v, later).unwrap().0,
        StaleMark::Marked
    );
}

#[test]
fn a_clock_that_cannot_be_read_makes_no_token_look_valid() {
    let world = World::new(T0);
    let mut a = worker(&world, 2);
    push(&world, "tok-1");
    assert!(matches!(a.lookup(), Lookup::Token(..)));
    assert!(a.tokens.not_ready(a.host.as_ref()).is_empty());
    a.host.clock_fails.set(true);
    assert_eq!(a.lookup(), Lookup::Unavailable);
    assert_eq!(a.tokens.not_ready(a.host.as_ref()), vec![SF.to_string()]);
    assert!(
        !a.tokens.wait(a.host.as_ref(), 0, 5),
        "a wait without a clock has no bound"
    );
    a.tick();
    assert!(a.host.logged("reading the clock"));
}

#[test]
fn a_waiting_request_is_resumed_when_the_token_comes_before_its_deadline() {
    let world = World::new(T0);
    let mut a = worker(&world, 2);
    assert!(a.tokens.wait(a.host.as_ref(), 0, 42));
    a.tick();
    // The token endpoint answers just before its timeout: the request still gets it.
    world.advance(TIMEOUT_MS - 1);
    a.tick();
    assert!(a.host.answered.borrow().is_empty());
    a.grant("tok-1");
    assert_eq!(
        *a.host.resumed.borrow(),
        vec![(42, "Bearer tok-1".to_string())]
    );
}

#[test]
fn a_waiting_request_is_answered_503_once_the_fetch_cannot_answer_any_more() {
    let world = World::new(T0);
    let mut a = worker(&world, 2);
    assert!(a.tokens.wait(a.host.as_ref(), 0, 42));
    a.tick();
    // The callout is never answered (the host lost it).
    let mut waited = 0;
    while a.host.answered.borrow().is_empty() && waited < 10 * TIMEOUT_MS {
        world.advance(TICK_MS);
        waited += TICK_MS;
        a.tick();
    }
    assert_eq!(*a.host.answered.borrow(), vec![(42, 503)]);
    assert!(
        waited >= TIMEOUT_MS,
        "gave up at {waited} ms, before the token endpoint's timeout"
    );
    assert!(waited <= 2 * TIMEOUT_MS, "waited {waited} ms");
    assert_eq!(world.metric("egress.salesforce.credentials_unavailable"), 1);
}

#[test]
fn a_waiter_that_cannot_be_answered_is_reset_and_a_failed_restore_is_logged() {
    let world = World::new(T0);
    let mut a = worker(&world, 2);
    assert!(a.tokens.wait(a.host.as_ref(), 0, 42));
    a.tick();
    a.host.answer_fails.set(true);
    a.host.restore_fails.set(true);
    let id = a.host.last_callout().unwrap();
    a.tokens.on_callout(a.host.as_ref(), id, Some(500), b"{}");
    assert_eq!(*a.host.resets.borrow(), vec![42]);
    assert!(a.host.logged("answering a waiting request"));
    assert!(a.host.logged("restoring the root context"));
}

#[test]
fn a_waiter_that_cannot_be_resumed_is_answered_instead() {
    let world = World::new(T0);
    let mut a = worker(&world, 2);
    assert!(a.tokens.wait(a.host.as_ref(), 0, 42));
    a.tick();
    a.host.resume_fails.set(true);
    a.grant("tok-1");
    assert_eq!(*a.host.answered.borrow(), vec![(42, 503)]);
    assert_eq!(a.tokens.resumed_with(42), None);
}

#[test]
fn a_failed_fetch_backs_off_and_later_requests_fail_fast() {
    let world = World::new(T0);
    let mut a = worker(&world, 2);
    a.tick();
    let id = a.host.last_callout().unwrap();
    a.tokens.on_callout(a.host.as_ref(), id, None, b"");
    let s = state(&world);
    assert_eq!((s.failures, s.lease_owner), (1, None));
    assert_eq!(a.lookup(), Lookup::Unavailable);
    assert_eq!(
        world.metric("egress.salesforce.token_fetch_failures.transport"),
        1
    );
}

#[test]
fn push_tokens_with_fetch_disabled_never_wait() {
    let world = World::new(T0);
    let host = Rc::new(MockHost::new(&world));
    let mut t = target();
    t.cred.fetch = false;
    let mut m = TokenManager::new(1, vec![t], LogLevel::Info, 3);
    m.start(host.as_ref());
    assert_eq!(m.lookup(host.as_ref(), 0), Lookup::Unavailable);
    m.on_tick(host.as_ref());
    assert!(host.dispatched.borrow().is_empty());
    push(&world, "tok-p");
    assert!(matches!(m.lookup(host.as_ref(), 0), Lookup::Token(..)));
}

#[test]
fn a_jti_remembered_concurrently_is_retried_and_a_replay_refused() {
    let world = World::new(T0);
    let a = MockHost::new(&world);
    let b = Rc::new(MockHost::new(&world));
    push_store::start(&a).unwrap();
    let remember = |jti: &'static str| {
        move |cache: Option<&[u8]>| -> Result<Vec<u8>, &'static str> {
            let mut v: Vec<String> = cache
                .and_then(|c| serde_json::from_slice(c).ok())
                .unwrap_or_default(); // "{}" at start: not a list, empty
            if v.iter().any(|j| j == jti) {
                return Err("replayed");
            }
            v.push(jti.to_string());
            Ok(serde_json::to_vec(&v).unwrap())
        }
    };
    let b2 = b.clone();
    a.before_next_write(push_store::JTI_CACHE_KEY, move || {
        push_store::remember_jti(b2.as_ref(), remember("j-b")).unwrap();
    });
    assert_eq!(push_store::remember_jti(&a, remember("j-a")), Ok(1));
    let cache: Vec<String> =
        serde_json::from_slice(&world.get(push_store::JTI_CACHE_KEY).unwrap()).unwrap();
    assert_eq!(cache, vec!["j-b", "j-a"], "b's jti was lost");
    assert_eq!(
        push_store::remember_jti(b.as_ref(), remember("j-a")),
        Err(push_store::RememberError::Refused("replayed"))
    );
}

#[test]
fn status_reports_each_target_without_the_token() {
    let world = World::new(T0);
    let host = MockHost::new(&world);
    shared::ensure_target(&host, SF).unwrap();
    let empty = push_store::status(&host, &[SF], T0);
    assert_eq!(empty["targets"][0]["valid"], false);
    push(&world, "tok-secret");
    let s = push_store::status(&host, &[SF], T0);
    assert_eq!(s["targets"][0]["valid"], true);
    assert_eq!(s["targets"][0]["version"], 1);
    assert!(!s.to_string().contains("tok-secret"));
}
