//! Usage postings for many jobs at once, for the metering batcher: one lookup of every
//! workspace's free minutes, one lookup of every job's transfers, and one `create_transfers` call
//! carrying one linked chain per workspace.

use std::collections::HashMap;

use tigerbeetle_unofficial as tb;
use tigerbeetle_unofficial::error::CreateTransfersError;
use uuid::Uuid;

use super::{
    FREE_MINUTES_LEDGER, Ledger, LedgerError, MONEY_LEDGER, PostedUsage, UsagePosting,
    WorkspaceAccounts, bounded, fixed_account, link, transfer_code,
};

/// One job's usage to post: its transfers' ids and what they move.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UsageEntry {
    pub posting: UsagePosting,
    /// Free minutes used, in vCPU-minutes.
    pub free_vcpu_minutes: u64,
    /// Money charged, in micro-cents.
    pub amount: u64,
}

impl UsageEntry {
    /// The entry's transfers, not linked yet; a zero amount is left out.
    pub(super) fn transfers(&self) -> Vec<tb::Transfer> {
        let accounts = WorkspaceAccounts::of(self.posting.workspace_id);
        let user_data = u128::from_be_bytes(*self.posting.workspace_id.as_bytes());
        let mut transfers = Vec::with_capacity(2);
        if self.free_vcpu_minutes > 0 {
            transfers.push(
                tb::Transfer::new(self.posting.free_minutes_transfer_id)
                    .with_debit_account_id(accounts.free_minutes)
                    .with_credit_account_id(fixed_account::FREE_MINUTES_USED)
                    .with_amount(u128::from(self.free_vcpu_minutes))
                    .with_ledger(FREE_MINUTES_LEDGER)
                    .with_code(transfer_code::RUNNER_CHARGE)
                    .with_user_data_128(user_data),
            );
        }
        if self.amount > 0 {
            transfers.push(
                tb::Transfer::new(self.posting.charge_transfer_id)
                    .with_debit_account_id(accounts.money)
                    .with_credit_account_id(fixed_account::REVENUE)
                    .with_amount(u128::from(self.amount))
                    .with_ledger(MONEY_LEDGER)
                    .with_code(transfer_code::RUNNER_CHARGE)
                    .with_user_data_128(user_data),
            );
        }
        transfers
    }
}

impl Ledger {
    /// The free minutes left (vCPU-minutes) of each workspace, in one lookup. A workspace
    /// without ledger accounts is missing from the answer.
    pub async fn free_vcpu_minutes_left_of(
        &self,
        workspaces: &[Uuid],
    ) -> Result<HashMap<Uuid, u128>, LedgerError> {
        let by_account: HashMap<u128, Uuid> = workspaces
            .iter()
            .map(|&workspace| (WorkspaceAccounts::of(workspace).free_minutes, workspace))
            .collect();
        if by_account.is_empty() {
            return Ok(HashMap::new());
        }
        let found = bounded(
            "lookup_accounts",
            self.client
                .lookup_accounts(by_account.keys().copied().collect::<Vec<u128>>()),
        )
        .await?
        .map_err(|e| LedgerError::Send(e.to_string()))?;
        let mut left = HashMap::with_capacity(found.len());
        for account in found {
            let Some(&workspace) = by_account.get(&account.id()) else {
                continue;
            };
            // The account refuses debits beyond its credits, so this never goes below zero.
            let balance = account
                .credits_posted()
                .checked_sub(account.debits_posted())
                .ok_or(LedgerError::Overdrawn(account.id()))?;
            left.insert(workspace, balance);
        }
        Ok(left)
    }

    /// What each posting moved, if it was posted, in one lookup; in the order of `postings`.
    pub async fn find_usage_postings(
        &self,
        postings: &[UsagePosting],
    ) -> Result<Vec<Option<PostedUsage>>, LedgerError> {
        if postings.is_empty() {
            return Ok(Vec::new());
        }
        let ids: Vec<u128> = postings
            .iter()
            .flat_map(|p| [p.free_minutes_transfer_id, p.charge_transfer_id])
            .collect();
        let found: HashMap<u128, u128> =
            bounded("lookup_transfers", self.client.lookup_transfers(ids))
                .await?
                .map_err(|e| LedgerError::Send(e.to_string()))?
                .into_iter()
                .map(|transfer| (transfer.id(), transfer.amount()))
                .collect();
        Ok(postings
            .iter()
            .map(|posting| {
                let free = found.get(&posting.free_minutes_transfer_id);
                let charge = found.get(&posting.charge_transfer_id);
                // The chain is atomic: both or neither of a posting's transfers exist.
                (free.is_some() || charge.is_some()).then(|| PostedUsage {
                    free_vcpu_minutes: free.copied().unwrap_or(0),
                    amount: charge.copied().unwrap_or(0),
                })
            })
            .collect())
    }

    /// Posts every chain in one request; each chain is linked, so TigerBeetle applies it whole
    /// or not at all. Returns, per chain, `Ok` when it was applied or the reasons it was not.
    /// A chain is refused whole even when one transfer already exists: the caller posts only
    /// usage it did not find in the ledger, and meters a refused chain's jobs again one by one.
    pub async fn post_usage_chains(
        &self,
        chains: &[Vec<UsageEntry>],
    ) -> Result<Vec<Result<(), String>>, LedgerError> {
        let mut transfers = Vec::new();
        // The chain of each transfer, by its index in the request.
        let mut chain_of = Vec::new();
        for (index, chain) in chains.iter().enumerate() {
            let mut linked: Vec<tb::Transfer> =
                chain.iter().flat_map(UsageEntry::transfers).collect();
            link(&mut linked);
            chain_of.extend(std::iter::repeat_n(index, linked.len()));
            transfers.extend(linked);
        }
        let mut outcomes: Vec<Result<(), String>> = vec![Ok(()); chains.len()];
        if transfers.is_empty() {
            return Ok(outcomes);
        }
        match bounded("create_transfers", self.client.create_transfers(transfers)).await? {
            Ok(()) => {}
            Err(CreateTransfersError::Api(errors)) => {
                for error in errors.as_slice() {
                    let at = usize::try_from(error.index()).ok();
                    let chain = at.and_then(|at| chain_of.get(at)).copied().ok_or_else(|| {
                        LedgerError::CreateTransfers(format!("unknown index {}", error.index()))
                    })?;
                    let reason = format!("#{}: {:?}", error.index(), error.kind());
                    match &mut outcomes[chain] {
                        Ok(()) => outcomes[chain] = Err(reason),
                        Err(reasons) => {
                            reasons.push_str(", ");
                            reasons.push_str(&reason);
                        }
                    }
                }
            }
            Err(other) => return Err(LedgerError::CreateTransfers(other.to_string())),
        }
        Ok(outcomes)
    }
}
