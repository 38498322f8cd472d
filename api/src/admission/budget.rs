//! The byte budget of requests in flight: one for the node, and a share of it per tenant.
//!
//! What it owns: [`RequestBudget`], the semaphores that count the bytes of requests being
//! decoded, applied and indexed, and the permits ([`Admitted`]) a request holds until it is
//! answered.
//!
//! Invariants: a request is charged its size in KiB (rounded up), at least 1 KiB, at most its
//! payer's whole share (node traffic: the whole node budget), the same charge in both budgets
//! (a request larger than a budget waits for all of it, so every request can be admitted once
//! the node is idle); it takes its tenant's share first,
//! then the node's, both within one deadline; waiting is first come, first served (tokio's
//! semaphores are fair); a refusal gives back whatever the request took. Must never: wait
//! beyond the configured wait, or admit more bytes than a budget holds.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use parking_lot::Mutex;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;

use super::metrics;

/// Bytes per unit of the semaphores (permits are counted in KiB so that any budget fits).
const UNIT_BYTES: u64 = 1024;

/// The budgets, as configured.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BudgetOptions {
    /// Bytes of requests in flight on the node (`server.max_inflight_request_bytes`).
    pub node_bytes: u64,
    /// Bytes of one tenant's requests in flight on the node
    /// (`server.max_inflight_request_bytes_per_tenant`; at most `node_bytes`).
    pub tenant_bytes: u64,
    /// Longest a request waits for room before it is refused (`server.admission_wait_ms`).
    pub wait: Duration,
}

/// Which budget refused a request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BudgetKind {
    /// The node's budget.
    Node,
    /// The tenant's share.
    Tenant,
}

impl BudgetKind {
    /// The configuration key of the budget.
    pub fn config_key(self) -> &'static str {
        match self {
            Self::Node => "server.max_inflight_request_bytes",
            Self::Tenant => "server.max_inflight_request_bytes_per_tenant",
        }
    }

    /// The metric label of the budget.
    pub fn label(self) -> &'static str {
        match self {
            Self::Node => "node",
            Self::Tenant => "share",
        }
    }
}

/// Who a request is charged to.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Payer {
    /// A tenant (from the caller's API key): its share, then the node's budget.
    Tenant(String),
    /// A caller whose key grants no tenant (missing, unknown, expired): one share for all of
    /// them, then the node's budget (the service refuses them after decoding).
    Unauthenticated,
    /// Node-to-node traffic (replica writes, hints, reads): the node's budget only.
    Node,
}

/// A request refused because a budget stayed full for the whole wait.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Shed {
    /// The budget that stayed full.
    pub budget: BudgetKind,
    /// Who the request was charged to.
    pub payer: Payer,
    /// The bytes the request needed.
    pub needed: u64,
    /// The budget's size in bytes.
    pub budget_bytes: u64,
    /// How long the request waited.
    pub waited: Duration,
}

impl Shed {
    /// The refusal's message: the budget (its key), what was in flight, when to retry.
    pub fn message(&self) -> String {
        let whose = match (&self.budget, &self.payer) {
            (BudgetKind::Tenant, Payer::Tenant(tenant)) => format!("tenant {tenant:?}'s share of "),
            (BudgetKind::Tenant, _) => "the unauthenticated callers' share of ".to_owned(),
            (BudgetKind::Node, _) => String::new(),
        };
        format!(
            "{key}: {whose}the {budget} bytes of requests in flight on this node stayed full \
             for {waited} ms (this request needs {needed} bytes); retry after a backoff of \
             about {retry} ms",
            key = self.budget.config_key(),
            budget = self.budget_bytes,
            waited = self.waited.as_millis(),
            needed = self.needed,
            retry = self.retry_after().as_millis(),
        )
    }

    /// How long a client should wait before retrying: the wait it already spent, at least
    /// 100 ms.
    pub fn retry_after(&self) -> Duration {
        self.waited.max(Duration::from_millis(100))
    }
}

/// Room a request holds in the budgets until it is dropped (when the request is answered).
#[derive(Debug)]
pub struct Admitted {
    _tenant: Option<OwnedSemaphorePermit>,
    _node: OwnedSemaphorePermit,
    bytes: u64,
    in_use: Arc<AtomicU64>,
}

impl Drop for Admitted {
    fn drop(&mut self) {
        let now = self.in_use.fetch_sub(self.bytes, Ordering::AcqRel) - self.bytes;
        metrics::set_in_use(now);
    }
}

/// The node's request budget and its tenants' shares (see the module documentation).
#[derive(Clone, Debug)]
pub struct RequestBudget {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    options: BudgetOptions,
    node: Arc<Semaphore>,
    node_units: u32,
    tenant_units: u32,
    shares: Mutex<HashMap<Payer, Arc<Semaphore>>>,
    in_use: Arc<AtomicU64>,
}

/// Units of a budget of `bytes` (at least one, at most what a semaphore call takes).
fn units_of(bytes: u64) -> u32 {
    u32::try_from(bytes.div_ceil(UNIT_BYTES).max(1)).unwrap_or(u32::MAX)
}

impl RequestBudget {
    /// Budgets of the given sizes (a tenant share larger than the node budget is the node
    /// budget); publishes their sizes as metrics.
    pub fn new(options: BudgetOptions) -> Self {
        let options = BudgetOptions {
            tenant_bytes: options.tenant_bytes.min(options.node_bytes),
            ..options
        };
        let node_units = units_of(options.node_bytes);
        metrics::set_budgets(&options);
        Self {
            inner: Arc::new(Inner {
                options,
                node: Arc::new(Semaphore::new(node_units as usize)),
                node_units,
                tenant_units: units_of(options.tenant_bytes),
                shares: Mutex::new(HashMap::new()),
                in_use: Arc::new(AtomicU64::new(0)),
            }),
        }
    }

    /// The budgets in use.
    pub fn options(&self) -> BudgetOptions {
        self.inner.options
    }

    /// Bytes admitted and not yet answered.
    pub fn in_use_bytes(&self) -> u64 {
        self.inner.in_use.load(Ordering::Acquire)
    }

    /// The share of `payer` (`None` for node traffic, which has none).
    fn share(&self, payer: &Payer) -> Option<Arc<Semaphore>> {
        if *payer == Payer::Node {
            return None;
        }
        let mut shares = self.inner.shares.lock();
        let share = shares
            .entry(payer.clone())
            .or_insert_with(|| Arc::new(Semaphore::new(self.inner.tenant_units as usize)))
            .clone();
        Some(share)
    }

    /// Admits a request of `bytes` paid by `payer`, waiting at most the configured wait; else
    /// says which budget stayed full.
    pub async fn admit(&self, payer: &Payer, bytes: u64) -> Result<Admitted, Shed> {
        let started = Instant::now();
        let deadline = started + self.inner.options.wait;
        let units = units_of(bytes);
        let shed = |budget: BudgetKind| {
            metrics::count_shed(budget);
            Shed {
                budget,
                payer: payer.clone(),
                needed: bytes,
                budget_bytes: match budget {
                    BudgetKind::Node => self.inner.options.node_bytes,
                    BudgetKind::Tenant => self.inner.options.tenant_bytes,
                },
                waited: started.elapsed(),
            }
        };
        let share = self.share(payer);
        // One charge for both budgets: at most the share (never larger than the node budget).
        let cap = if share.is_some() {
            self.inner.tenant_units
        } else {
            self.inner.node_units
        };
        let wanted = units.min(cap);
        let tenant_permit = match share {
            Some(semaphore) => match acquire_by(semaphore, wanted, deadline).await {
                Some(permit) => Some(permit),
                None => return Err(shed(BudgetKind::Tenant)),
            },
            None => None,
        };
        let Some(node_permit) = acquire_by(self.inner.node.clone(), wanted, deadline).await else {
            return Err(shed(BudgetKind::Node));
        };
        let charged = u64::from(wanted) * UNIT_BYTES;
        let now = self.inner.in_use.fetch_add(charged, Ordering::AcqRel) + charged;
        metrics::set_in_use(now);
        Ok(Admitted {
            _tenant: tenant_permit,
            _node: node_permit,
            bytes: charged,
            in_use: self.inner.in_use.clone(),
        })
    }
}

/// `units` permits of `semaphore`, or `None` when they are not free by `deadline`.
async fn acquire_by(
    semaphore: Arc<Semaphore>,
    units: u32,
    deadline: Instant,
) -> Option<OwnedSemaphorePermit> {
    match tokio::time::timeout_at(deadline, semaphore.acquire_many_owned(units)).await {
        Ok(Ok(permit)) => Some(permit),
        // The semaphores are never closed; a closed one admits nothing.
        Ok(Err(_)) | Err(_) => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(tenant: &str) -> Payer {
        Payer::Tenant(tenant.to_owned())
    }

    fn budget(node_kib: u64, tenant_kib: u64, wait_ms: u64) -> RequestBudget {
        RequestBudget::new(BudgetOptions {
            node_bytes: node_kib * 1024,
            tenant_bytes: tenant_kib * 1024,
            wait: Duration::from_millis(wait_ms),
        })
    }

    #[tokio::test]
    async fn a_tenant_over_its_share_is_shed_while_another_tenant_is_admitted() {
        let budget = budget(100, 50, 20);
        let held = budget.admit(&t("a"), 50 * 1024).await.unwrap();
        let shed = budget.admit(&t("a"), 1).await.unwrap_err();
        assert_eq!(shed.budget, BudgetKind::Tenant);
        assert!(shed.waited >= Duration::from_millis(20), "{shed:?}");
        assert!(
            shed.message()
                .starts_with("server.max_inflight_request_bytes_per_tenant: tenant \"a\""),
            "{}",
            shed.message()
        );
        let other = budget.admit(&t("b"), 40 * 1024).await.unwrap();
        assert_eq!(budget.in_use_bytes(), 90 * 1024);
        drop(held);
        drop(other);
        assert_eq!(budget.in_use_bytes(), 0);
        budget.admit(&t("a"), 50 * 1024).await.unwrap();
    }

    #[tokio::test]
    async fn the_node_budget_sheds_when_the_tenants_together_fill_it() {
        let budget = budget(100, 60, 20);
        let _a = budget.admit(&t("a"), 60 * 1024).await.unwrap();
        let _b = budget.admit(&t("b"), 30 * 1024).await.unwrap();
        let shed = budget.admit(&t("c"), 20 * 1024).await.unwrap_err();
        assert_eq!(shed.budget, BudgetKind::Node);
        assert!(
            shed.message()
                .starts_with("server.max_inflight_request_bytes: "),
            "{}",
            shed.message()
        );
        // A refused request gave back its tenant share: "c" still has all 60 KiB.
        let _c = budget.admit(&t("c"), 10 * 1024).await.unwrap();
        // Node traffic (no tenant) is charged to the node budget only.
        assert_eq!(
            budget.admit(&Payer::Node, 1024).await.unwrap_err().budget,
            BudgetKind::Node
        );
    }

    #[tokio::test]
    async fn a_waiting_request_is_admitted_when_room_frees_within_the_wait() {
        let budget = budget(100, 100, 2_000);
        let held = budget.admit(&t("a"), 100 * 1024).await.unwrap();
        let waiting = {
            let budget = budget.clone();
            tokio::spawn(async move { budget.admit(&t("a"), 10 * 1024).await.map(|_| ()) })
        };
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(!waiting.is_finished(), "admitted while the budget was full");
        drop(held);
        waiting.await.unwrap().unwrap();
    }

    #[tokio::test]
    async fn a_request_larger_than_the_budget_takes_all_of_it_once_the_node_is_idle() {
        let budget = budget(100, 50, 20);
        let huge = budget.admit(&t("a"), 1 << 30).await.unwrap();
        assert_eq!(budget.in_use_bytes(), 50 * 1024);
        assert_eq!(
            budget.admit(&t("a"), 1).await.unwrap_err().budget,
            BudgetKind::Tenant
        );
        drop(huge);
        let _node = budget.admit(&Payer::Node, 1 << 30).await.unwrap();
        assert_eq!(budget.in_use_bytes(), 100 * 1024);
    }
}
