//! The double-entry ledger in TigerBeetle (SPEC §8): fixed accounts, one money and one
//! free-minute account per workspace, and the sign-up credit.
//!
//! PostgreSQL keeps the descriptive records; TigerBeetle keeps the balances. Every id here is
//! derived from the business key that caused it, so a retry can never post twice.

use std::sync::Arc;
use std::time::Duration;

use sha2::{Digest, Sha256};
use tigerbeetle_unofficial as tb;
use tigerbeetle_unofficial::error::{
    CreateAccountErrorKind, CreateAccountsError, CreateTransferErrorKind, CreateTransfersError,
};
use uuid::Uuid;

pub mod adjustments;
pub mod reconcile;
mod usage_batch;

pub use usage_batch::UsageEntry;

/// The ledger of money, in micro-cents (1/1,000,000 of a cent).
pub const MONEY_LEDGER: u32 = 1;
/// The ledger of free minutes, in vCPU-minutes: a free minute is one minute on 2 vCPUs, so the
/// 1,000 free minutes of a new workspace are 2,000 vCPU-minutes and every amount stays an integer.
pub const FREE_MINUTES_LEDGER: u32 = 2;

/// Free minutes a new workspace receives (SPEC §7), in free minutes (2-vCPU minutes).
pub const SIGN_UP_FREE_MINUTES: u64 = 1_000;
/// vCPUs that one free minute stands for.
pub const VCPUS_PER_FREE_MINUTE: u64 = 2;

/// Account codes of SPEC §8.
pub mod account_code {
    pub const TENKI_RECEIVABLE: u16 = 1001;
    pub const STRIPE_RECEIVABLE: u16 = 1010;
    pub const USER: u16 = 2001;
    pub const REVENUE: u16 = 4001;
    pub const STRIPE_FEE: u16 = 5010;
    pub const MARKETING_EXPENSE: u16 = 5020;
}

/// Transfer codes of SPEC §8 used so far.
pub mod transfer_code {
    /// A Stripe payment into the workspace's account, and Stripe's fee out of the receivable.
    pub const STRIPE_PAYMENT: u16 = 1002;
    /// Money Tenki gave back from a Stripe payment (Tenki's addition): REVENUE → STRIPE_RECEIVABLE.
    pub const REFUND: u16 = 1003;
    /// A Stripe payment undone by a dispute or by support (Tenki's addition): the workspace's
    /// account → STRIPE_RECEIVABLE, so the workspace owes the amount again.
    pub const PAYMENT_REVERSAL: u16 = 1004;
    /// An add-on or slot charge of an invoice (Tenki's addition to SPEC §8's codes, next to the
    /// runner charge).
    pub const SUBSCRIPTION_CHARGE: u16 = 2020;
    /// A job's usage: money on the money ledger, free minutes on the free-minute ledger.
    pub const RUNNER_CHARGE: u16 = 2001;
    pub const USAGE_REVERSAL: u16 = 2003;
    pub const SIGN_UP_CREDIT: u16 = 3001;
    pub const PROMO_CREDIT: u16 = 3003;
    pub const PROMO_CREDIT_REVERSAL: u16 = 3004;
    /// What was left of a grant, taken back: an identity of the workspace had brought free
    /// minutes to another workspace (Tenki's addition).
    pub const FREE_GRANT_WITHDRAWAL: u16 = 3005;
}

/// The platform's own accounts. Money accounts use their code as id; the free-minute ledger's
/// counterparts (where granted minutes come from and used minutes go to) live in a separate range.
pub mod fixed_account {
    use super::account_code;

    pub const TENKI_RECEIVABLE: u128 = account_code::TENKI_RECEIVABLE as u128;
    pub const STRIPE_RECEIVABLE: u128 = account_code::STRIPE_RECEIVABLE as u128;
    pub const REVENUE: u128 = account_code::REVENUE as u128;
    pub const STRIPE_FEE: u128 = account_code::STRIPE_FEE as u128;
    pub const MARKETING_EXPENSE: u128 = account_code::MARKETING_EXPENSE as u128;
    /// Free minutes given away (the marketing expense, in vCPU-minutes).
    pub const FREE_MINUTES_GRANTED: u128 = (2 << 32) | account_code::MARKETING_EXPENSE as u128;
    /// Free minutes consumed by jobs.
    pub const FREE_MINUTES_USED: u128 = (2 << 32) | account_code::REVENUE as u128;
}

/// How long any one TigerBeetle call may take. A call to a cluster that is down never returns on
/// its own, so every call is bounded.
const CALL_TIMEOUT: Duration = Duration::from_secs(5);

/// What went wrong talking to TigerBeetle.
#[derive(Debug, thiserror::Error)]
pub enum LedgerError {
    #[error("TigerBeetle did not answer within {0:?}")]
    Timeout(Duration),
    #[error("could not create the TigerBeetle client: {0}")]
    Connect(String),
    #[error("TigerBeetle refused to create accounts: {0}")]
    CreateAccounts(String),
    #[error("TigerBeetle refused the transfers: {0}")]
    CreateTransfers(String),
    #[error("TigerBeetle request failed: {0}")]
    Send(String),
    #[error("TigerBeetle has no account {0:#x}")]
    MissingAccount(u128),
    #[error("TigerBeetle has no transfer {0:#x}")]
    MissingTransfer(u128),
    #[error("account {0:#x} has more debits than credits, which its flags forbid")]
    Overdrawn(u128),
}

/// One workspace's pair of ledger accounts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WorkspaceAccounts {
    /// Money (micro-cents) on [`MONEY_LEDGER`]: charges debit it, payments and credits credit it.
    pub money: u128,
    /// Free minutes (vCPU-minutes) on [`FREE_MINUTES_LEDGER`]; it can never go below zero.
    pub free_minutes: u128,
}

impl WorkspaceAccounts {
    /// The accounts of a workspace, derived from its id.
    pub fn of(workspace_id: Uuid) -> Self {
        Self {
            money: derive_id("workspace-money", workspace_id.as_bytes()),
            free_minutes: derive_id("workspace-free-minutes", workspace_id.as_bytes()),
        }
    }
}

/// The transfer that grants workspace `workspace_id` free minutes for grant key `key` (a
/// normalized verified e-mail, or a card): posting it again is a no-op. One grant per key across
/// workspaces is the registry's primary key (`free_grant_keys`); the workspace is part of the id
/// because one TigerBeetle cluster may serve several databases (the tests' cluster does).
pub fn free_grant_transfer_id(workspace_id: Uuid, key: &str) -> u128 {
    free_grant_id("free-minutes-grant", workspace_id, key)
}

/// The id of the withdrawal of the grant made as [`free_grant_transfer_id`]`(workspace_id, key)`.
pub fn free_grant_withdrawal_id(workspace_id: Uuid, key: &str) -> u128 {
    free_grant_id("free-minutes-withdrawal", workspace_id, key)
}

fn free_grant_id(what: &str, workspace_id: Uuid, key: &str) -> u128 {
    derive_id(
        what,
        &[workspace_id.as_bytes().as_slice(), key.as_bytes()].concat(),
    )
}

/// The ledger transfers of one job's usage; their ids derive from the workspace and job key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UsagePosting {
    pub workspace_id: Uuid,
    /// Free minutes: the workspace's free-minute account → FREE_MINUTES_USED.
    pub free_minutes_transfer_id: u128,
    /// Money: the workspace's money account → REVENUE.
    pub charge_transfer_id: u128,
}

impl UsagePosting {
    /// The transfers of job `job_key` in `workspace_id`.
    pub fn for_job(workspace_id: Uuid, job_key: &str) -> Self {
        let key = [workspace_id.as_bytes().as_slice(), job_key.as_bytes()].concat();
        Self {
            workspace_id,
            free_minutes_transfer_id: derive_id("usage-free-minutes", &key),
            charge_transfer_id: derive_id("usage-charge", &key),
        }
    }
}

/// What a usage posting moved, as found in the ledger.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PostedUsage {
    pub free_vcpu_minutes: u128,
    pub amount: u128,
}

/// A TigerBeetle id derived from a business key: SHA-256 of the domain and key, first 16 bytes.
/// Never 0 or `u128::MAX`, which TigerBeetle reserves.
pub fn derive_id(domain: &str, key: &[u8]) -> u128 {
    let mut hasher = Sha256::new();
    hasher.update(domain.as_bytes());
    hasher.update([0]);
    hasher.update(key);
    let digest = hasher.finalize();
    let mut bytes = [0u8; 16];
    bytes.copy_from_slice(&digest[..16]);
    match u128::from_be_bytes(bytes) {
        0 => 1,
        u128::MAX => u128::MAX - 1,
        id => id,
    }
}

/// A handle on the TigerBeetle cluster. Cheap to clone.
#[derive(Clone)]
pub struct Ledger {
    client: Arc<tb::Client>,
}

impl std::fmt::Debug for Ledger {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Ledger")
    }
}

impl Ledger {
    /// A client for the cluster at `addresses` (comma-separated `host:port` of every replica).
    /// Connecting is lazy: this succeeds even while the cluster is down.
    pub fn connect(cluster_id: u128, addresses: &str) -> Result<Self, LedgerError> {
        let client = tb::Client::new(cluster_id, addresses)
            .map_err(|e| LedgerError::Connect(e.to_string()))?;
        Ok(Self {
            client: Arc::new(client),
        })
    }

    /// Creates the platform's fixed accounts; accounts that exist already are left as they are.
    pub async fn ensure_fixed_accounts(&self) -> Result<(), LedgerError> {
        use account_code as code;
        use fixed_account as id;
        let accounts = vec![
            tb::Account::new(id::TENKI_RECEIVABLE, MONEY_LEDGER, code::TENKI_RECEIVABLE),
            tb::Account::new(id::STRIPE_RECEIVABLE, MONEY_LEDGER, code::STRIPE_RECEIVABLE),
            tb::Account::new(id::REVENUE, MONEY_LEDGER, code::REVENUE),
            tb::Account::new(id::STRIPE_FEE, MONEY_LEDGER, code::STRIPE_FEE),
            tb::Account::new(id::MARKETING_EXPENSE, MONEY_LEDGER, code::MARKETING_EXPENSE),
            tb::Account::new(
                id::FREE_MINUTES_GRANTED,
                FREE_MINUTES_LEDGER,
                code::MARKETING_EXPENSE,
            ),
            tb::Account::new(id::FREE_MINUTES_USED, FREE_MINUTES_LEDGER, code::REVENUE),
        ];
        self.create_accounts(accounts).await
    }

    /// Opens a workspace's accounts. Safe to repeat: they are created once.
    pub async fn open_workspace(&self, workspace_id: Uuid) -> Result<(), LedgerError> {
        let accounts = WorkspaceAccounts::of(workspace_id);
        let user_data = u128::from_be_bytes(*workspace_id.as_bytes());
        self.create_accounts(vec![
            tb::Account::new(accounts.money, MONEY_LEDGER, account_code::USER)
                .with_user_data_128(user_data),
            tb::Account::new(
                accounts.free_minutes,
                FREE_MINUTES_LEDGER,
                account_code::USER,
            )
            .with_user_data_128(user_data)
            .with_flags(tb::account::Flags::DEBITS_MUST_NOT_EXCEED_CREDITS),
        ])
        .await
    }

    /// Grants a workspace its free minutes as transfer `transfer_id` (derived from the workspace
    /// and the grant key, [`free_grant_transfer_id`]). Safe to repeat.
    pub async fn grant_free_minutes(
        &self,
        workspace_id: Uuid,
        transfer_id: u128,
    ) -> Result<(), LedgerError> {
        let grant = tb::Transfer::new(transfer_id)
            .with_debit_account_id(fixed_account::FREE_MINUTES_GRANTED)
            .with_credit_account_id(WorkspaceAccounts::of(workspace_id).free_minutes)
            .with_amount(u128::from(SIGN_UP_FREE_MINUTES * VCPUS_PER_FREE_MINUTE))
            .with_ledger(FREE_MINUTES_LEDGER)
            .with_code(transfer_code::SIGN_UP_CREDIT)
            .with_user_data_128(u128::from_be_bytes(*workspace_id.as_bytes()));
        self.create_transfers(vec![grant]).await
    }

    /// Takes back what is left of a workspace's free minutes, at most one grant's worth, as
    /// transfer `transfer_id`: a balancing debit, so never more than the balance. Returns the
    /// vCPU-minutes taken. Safe to repeat: once posted, the transfer is read back, not posted
    /// again (a retried balancing transfer would not match the amount it settled on).
    pub async fn withdraw_free_minutes(
        &self,
        workspace_id: Uuid,
        transfer_id: u128,
    ) -> Result<u128, LedgerError> {
        if let Some(posted) = self.lookup_transfers(vec![transfer_id]).await?.first() {
            return Ok(posted.amount());
        }
        let withdrawal = tb::Transfer::new(transfer_id)
            .with_debit_account_id(WorkspaceAccounts::of(workspace_id).free_minutes)
            .with_credit_account_id(fixed_account::FREE_MINUTES_GRANTED)
            .with_amount(u128::from(SIGN_UP_FREE_MINUTES * VCPUS_PER_FREE_MINUTE))
            .with_ledger(FREE_MINUTES_LEDGER)
            .with_code(transfer_code::FREE_GRANT_WITHDRAWAL)
            .with_flags(tb::transfer::Flags::BALANCING_DEBIT)
            .with_user_data_128(u128::from_be_bytes(*workspace_id.as_bytes()));
        match bounded(
            "create_transfers",
            self.client.create_transfers(vec![withdrawal]),
        )
        .await?
        {
            Ok(()) => {}
            Err(CreateTransfersError::Api(errors)) => {
                let kinds: Vec<CreateTransferErrorKind> =
                    errors.as_slice().iter().map(|e| e.kind()).collect();
                // Nothing left to take back.
                if kinds
                    .iter()
                    .any(|k| matches!(k, CreateTransferErrorKind::ExceedsCredits))
                {
                    return Ok(0);
                }
                if !kinds
                    .iter()
                    .all(|k| matches!(k, CreateTransferErrorKind::Exists))
                {
                    return Err(LedgerError::CreateTransfers(format!("{kinds:?}")));
                }
            }
            Err(other) => return Err(LedgerError::CreateTransfers(other.to_string())),
        }
        self.lookup_transfers(vec![transfer_id])
            .await?
            .first()
            .map(tb::Transfer::amount)
            .ok_or(LedgerError::MissingTransfer(transfer_id))
    }

    /// A workspace's free minutes left, in vCPU-minutes.
    pub async fn free_vcpu_minutes_left(&self, workspace_id: Uuid) -> Result<u128, LedgerError> {
        self.free_vcpu_minutes_left_of(&[workspace_id])
            .await?
            .remove(&workspace_id)
            .ok_or(LedgerError::MissingAccount(
                WorkspaceAccounts::of(workspace_id).free_minutes,
            ))
    }

    /// Posts one job's usage as one linked chain: both transfers or neither. A zero amount is
    /// left out. Re-posting the same chain is a no-op.
    pub async fn post_usage(
        &self,
        posting: &UsagePosting,
        free_vcpu_minutes: u64,
        amount: u64,
    ) -> Result<(), LedgerError> {
        let mut chain = UsageEntry {
            posting: *posting,
            free_vcpu_minutes,
            amount,
        }
        .transfers();
        link(&mut chain);
        self.create_transfers(chain).await
    }

    /// The usage a posting moved, if it was posted (the chain is atomic: both or neither).
    pub async fn find_usage_posting(
        &self,
        posting: &UsagePosting,
    ) -> Result<Option<PostedUsage>, LedgerError> {
        Ok(self
            .find_usage_postings(std::slice::from_ref(posting))
            .await?
            .into_iter()
            .next()
            .flatten())
    }

    /// Gives back what a job's usage posting moved (code 2003), as one linked chain whose ids
    /// derive from the posting. Returns the ids of the transfers posted (none for a free job).
    pub async fn post_usage_reversal(
        &self,
        posting: &UsagePosting,
        free_vcpu_minutes: u64,
        amount: u64,
    ) -> Result<Vec<u128>, LedgerError> {
        let accounts = WorkspaceAccounts::of(posting.workspace_id);
        let user_data = u128::from_be_bytes(*posting.workspace_id.as_bytes());
        let key = posting.charge_transfer_id.to_be_bytes();
        let mut chain = Vec::with_capacity(2);
        if free_vcpu_minutes > 0 {
            chain.push(
                tb::Transfer::new(derive_id("usage-reversal-free-minutes", &key))
                    .with_debit_account_id(fixed_account::FREE_MINUTES_USED)
                    .with_credit_account_id(accounts.free_minutes)
                    .with_amount(u128::from(free_vcpu_minutes))
                    .with_ledger(FREE_MINUTES_LEDGER)
                    .with_code(transfer_code::USAGE_REVERSAL)
                    .with_user_data_128(user_data),
            );
        }
        if amount > 0 {
            chain.push(
                tb::Transfer::new(derive_id("usage-reversal-charge", &key))
                    .with_debit_account_id(fixed_account::REVENUE)
                    .with_credit_account_id(accounts.money)
                    .with_amount(u128::from(amount))
                    .with_ledger(MONEY_LEDGER)
                    .with_code(transfer_code::USAGE_REVERSAL)
                    .with_user_data_128(user_data),
            );
        }
        let ids = chain.iter().map(tb::Transfer::id).collect();
        link(&mut chain);
        self.create_transfers(chain).await?;
        Ok(ids)
    }

    /// Promotional credit to a workspace (`amount > 0`: marketing expense → workspace, code
    /// 3003) or its deduction (`amount < 0`: back, code 3004), one transfer whose id derives from
    /// `key`. Returns its id.
    pub async fn post_promotional_credit(
        &self,
        workspace_id: Uuid,
        key: &str,
        amount: i64,
    ) -> Result<u128, LedgerError> {
        let money = WorkspaceAccounts::of(workspace_id).money;
        let (debit, credit, code) = if amount > 0 {
            (
                fixed_account::MARKETING_EXPENSE,
                money,
                transfer_code::PROMO_CREDIT,
            )
        } else {
            (
                money,
                fixed_account::MARKETING_EXPENSE,
                transfer_code::PROMO_CREDIT_REVERSAL,
            )
        };
        let id = derive_id("promotional-credit", key.as_bytes());
        let transfer = tb::Transfer::new(id)
            .with_debit_account_id(debit)
            .with_credit_account_id(credit)
            .with_amount(u128::from(amount.unsigned_abs()))
            .with_ledger(MONEY_LEDGER)
            .with_code(code)
            .with_user_data_128(u128::from_be_bytes(*workspace_id.as_bytes()));
        self.create_transfers(vec![transfer]).await?;
        Ok(id)
    }

    /// An invoice's add-on or slot charge: the workspace's account → REVENUE (code 2020), one
    /// transfer whose id derives from `key` (invoice and line).
    pub async fn post_subscription_charge(
        &self,
        workspace_id: Uuid,
        key: &str,
        amount: i64,
    ) -> Result<u128, LedgerError> {
        let id = derive_id("subscription-charge", key.as_bytes());
        let transfer = tb::Transfer::new(id)
            .with_debit_account_id(WorkspaceAccounts::of(workspace_id).money)
            .with_credit_account_id(fixed_account::REVENUE)
            .with_amount(u128::from(amount.unsigned_abs()))
            .with_ledger(MONEY_LEDGER)
            .with_code(transfer_code::SUBSCRIPTION_CHARGE)
            .with_user_data_128(u128::from_be_bytes(*workspace_id.as_bytes()));
        self.create_transfers(vec![transfer]).await?;
        Ok(id)
    }

    /// A Stripe payment of an invoice (SPEC §8): `amount` debited to STRIPE_RECEIVABLE and
    /// credited to the workspace's account, and Stripe's `fee` debited to STRIPE_FEE and credited
    /// to STRIPE_RECEIVABLE. Both code 1002, ids derived from `invoice_key`.
    pub async fn post_stripe_payment(
        &self,
        workspace_id: Uuid,
        invoice_key: &str,
        amount: i64,
        fee: i64,
    ) -> Result<(), LedgerError> {
        let user = u128::from_be_bytes(*workspace_id.as_bytes());
        let mut transfers = vec![
            tb::Transfer::new(derive_id("stripe-payment", invoice_key.as_bytes()))
                .with_debit_account_id(fixed_account::STRIPE_RECEIVABLE)
                .with_credit_account_id(WorkspaceAccounts::of(workspace_id).money)
                .with_amount(u128::from(amount.unsigned_abs()))
                .with_ledger(MONEY_LEDGER)
                .with_code(transfer_code::STRIPE_PAYMENT)
                .with_user_data_128(user),
        ];
        if fee > 0 {
            transfers.push(
                tb::Transfer::new(derive_id("stripe-fee", invoice_key.as_bytes()))
                    .with_debit_account_id(fixed_account::STRIPE_FEE)
                    .with_credit_account_id(fixed_account::STRIPE_RECEIVABLE)
                    .with_amount(u128::from(fee.unsigned_abs()))
                    .with_ledger(MONEY_LEDGER)
                    .with_code(transfer_code::STRIPE_PAYMENT)
                    .with_user_data_128(user),
            );
        }
        // Not linked: a retry finds both existing, which a linked chain would refuse as a whole
        // ("linked event failed"); each is idempotent by its id.
        self.create_transfers(transfers).await
    }

    /// Undoes `amount` of a Stripe payment (one transfer, id derived from `key`): a refund takes
    /// it back from REVENUE (code 1003); a dispute or support's reversal from the workspace's
    /// account (code 1004), which then owes it again.
    pub async fn post_payment_reversal(
        &self,
        workspace_id: Uuid,
        key: &str,
        amount: i64,
        refund: bool,
    ) -> Result<u128, LedgerError> {
        let id = derive_id("payment-reversal", key.as_bytes());
        let (debit, code) = if refund {
            (fixed_account::REVENUE, transfer_code::REFUND)
        } else {
            (
                WorkspaceAccounts::of(workspace_id).money,
                transfer_code::PAYMENT_REVERSAL,
            )
        };
        let transfer = tb::Transfer::new(id)
            .with_debit_account_id(debit)
            .with_credit_account_id(fixed_account::STRIPE_RECEIVABLE)
            .with_amount(u128::from(amount.unsigned_abs()))
            .with_ledger(MONEY_LEDGER)
            .with_code(code)
            .with_user_data_128(u128::from_be_bytes(*workspace_id.as_bytes()));
        self.create_transfers(vec![transfer]).await?;
        Ok(id)
    }

    /// The posted debits and credits of an account, or `None` if it does not exist.
    pub async fn account_totals(&self, id: u128) -> Result<Option<(u128, u128)>, LedgerError> {
        let found = bounded("lookup_accounts", self.client.lookup_accounts(vec![id]))
            .await?
            .map_err(|e| LedgerError::Send(e.to_string()))?;
        Ok(found
            .first()
            .map(|account| (account.debits_posted(), account.credits_posted())))
    }

    /// Transfers by id; missing ones are left out.
    pub async fn lookup_transfers(&self, ids: Vec<u128>) -> Result<Vec<tb::Transfer>, LedgerError> {
        bounded("lookup_transfers", self.client.lookup_transfers(ids))
            .await?
            .map_err(|e| LedgerError::Send(e.to_string()))
    }

    /// Proves the cluster answers: looks up one fixed account.
    pub async fn ping(&self, within: Duration) -> Result<(), LedgerError> {
        let answer = tokio::time::timeout(
            within,
            self.client
                .lookup_accounts(vec![fixed_account::TENKI_RECEIVABLE]),
        )
        .await
        .map_err(|_| LedgerError::Timeout(within))?;
        answer.map_err(|e| LedgerError::Send(e.to_string()))?;
        Ok(())
    }

    async fn create_accounts(&self, accounts: Vec<tb::Account>) -> Result<(), LedgerError> {
        match bounded("create_accounts", self.client.create_accounts(accounts)).await? {
            Ok(()) => Ok(()),
            Err(CreateAccountsError::Api(errors)) => {
                let refused: Vec<String> = errors
                    .as_slice()
                    .iter()
                    .filter(|e| !matches!(e.kind(), CreateAccountErrorKind::Exists))
                    .map(|e| format!("#{}: {:?}", e.index(), e.kind()))
                    .collect();
                if refused.is_empty() {
                    Ok(())
                } else {
                    Err(LedgerError::CreateAccounts(refused.join(", ")))
                }
            }
            Err(other) => Err(LedgerError::CreateAccounts(other.to_string())),
        }
    }

    async fn create_transfers(&self, transfers: Vec<tb::Transfer>) -> Result<(), LedgerError> {
        match bounded("create_transfers", self.client.create_transfers(transfers)).await? {
            Ok(()) => Ok(()),
            Err(CreateTransfersError::Api(errors)) => {
                // `Exists` is a retry of a transfer already posted: the outcome we wanted.
                let refused: Vec<String> = errors
                    .as_slice()
                    .iter()
                    .filter(|e| !matches!(e.kind(), CreateTransferErrorKind::Exists))
                    .map(|e| format!("#{}: {:?}", e.index(), e.kind()))
                    .collect();
                if refused.is_empty() {
                    Ok(())
                } else {
                    Err(LedgerError::CreateTransfers(refused.join(", ")))
                }
            }
            Err(other) => Err(LedgerError::CreateTransfers(other.to_string())),
        }
    }
}

/// Links every transfer to the next: TigerBeetle applies the chain atomically.
fn link(chain: &mut [tb::Transfer]) {
    let last = chain.len().saturating_sub(1);
    for transfer in chain.iter_mut().take(last) {
        let flags = transfer.flags() | tb::transfer::Flags::LINKED;
        transfer.set_flags(flags);
    }
}

/// Runs one TigerBeetle request, cut off after [`CALL_TIMEOUT`], and records how long it took
/// (`ledger_request_seconds`, by operation): every request is a durable write on the cluster.
async fn bounded<T>(
    operation: &'static str,
    call: impl Future<Output = T>,
) -> Result<T, LedgerError> {
    let started = std::time::Instant::now();
    let answer = tokio::time::timeout(CALL_TIMEOUT, call).await;
    metrics::histogram!("ledger_request_seconds", "operation" => operation)
        .record(started.elapsed().as_secs_f64());
    answer.map_err(|_| LedgerError::Timeout(CALL_TIMEOUT))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn derived_ids_are_stable_and_distinct_per_domain() {
        let workspace = Uuid::from_u128(42);
        let ada = "email:ada@example.com";
        assert_eq!(
            free_grant_transfer_id(workspace, ada),
            free_grant_transfer_id(workspace, ada)
        );
        assert_ne!(
            free_grant_transfer_id(workspace, ada),
            free_grant_transfer_id(workspace, "email:bob@example.com")
        );
        assert_ne!(
            free_grant_transfer_id(workspace, ada),
            free_grant_transfer_id(Uuid::from_u128(43), ada)
        );
        let accounts = WorkspaceAccounts::of(workspace);
        assert_ne!(accounts.money, accounts.free_minutes);
        assert_ne!(free_grant_transfer_id(workspace, ada), accounts.money);
        assert_ne!(
            WorkspaceAccounts::of(Uuid::from_u128(43)).money,
            accounts.money
        );
    }

    #[test]
    fn fixed_free_minute_accounts_do_not_collide_with_money_accounts() {
        let ids = [
            fixed_account::TENKI_RECEIVABLE,
            fixed_account::STRIPE_RECEIVABLE,
            fixed_account::REVENUE,
            fixed_account::STRIPE_FEE,
            fixed_account::MARKETING_EXPENSE,
            fixed_account::FREE_MINUTES_GRANTED,
            fixed_account::FREE_MINUTES_USED,
        ];
        let unique: std::collections::HashSet<_> = ids.iter().collect();
        assert_eq!(unique.len(), ids.len());
    }
}
