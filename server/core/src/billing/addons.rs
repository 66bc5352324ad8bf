//! Add-ons and extra concurrency slots (SPEC §10, §5), bought from the Add-ons page.
//!
//! Turning one on takes effect at once (an admission pass is asked for in the same transaction).
//! Cancelling keeps it on, and billed, to the end of the month: it ends by itself on the 1st
//! (UTC), when [`end_due`] moves it to `addon_periods`. Lowering the slot count works the same
//! way; raising it is immediate. Only owners and admins change them, and only with a card on file,
//! since they are billed monthly.

use chrono::{DateTime, Utc};
use sqlx::PgPool;
use uuid::Uuid;

use crate::money::MICRO_CENTS_PER_CENT;
use crate::workspaces::{Caller, Role};

/// One dollar in micro-cents.
const DOLLAR: i64 = 100 * MICRO_CENTS_PER_CENT;

/// An add-on a workspace can buy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Addon {
    Macos,
    PriorityBoost,
    PrioritySupport,
}

impl Addon {
    /// Every add-on, in the order the page lists them.
    pub const ALL: [Addon; 3] = [Addon::Macos, Addon::PriorityBoost, Addon::PrioritySupport];

    /// Its key in the database and in forms.
    pub fn key(self) -> &'static str {
        match self {
            Addon::Macos => "macos",
            Addon::PriorityBoost => "priority_boost",
            Addon::PrioritySupport => "priority_support",
        }
    }

    /// The add-on of `key`.
    pub fn from_key(key: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|addon| addon.key() == key)
    }

    /// Its name on the page and the invoice.
    pub fn name(self) -> &'static str {
        match self {
            Addon::Macos => "macOS M4 runners",
            Addon::PriorityBoost => "Priority queue boost",
            Addon::PrioritySupport => "Priority support",
        }
    }

    /// What it gives, in one line.
    pub fn description(self) -> &'static str {
        match self {
            Addon::Macos => {
                "Run jobs on tenki-macos-m4 labels (40 concurrent macOS jobs included)."
            }
            Addon::PriorityBoost => {
                "When the platform is short of capacity, your waiting jobs start first."
            }
            Addon::PrioritySupport => "Answers from an engineer within 4 business hours.",
        }
    }

    /// Its price per month, in micro-cents.
    pub fn monthly_price(self) -> i64 {
        match self {
            Addon::Macos => 39 * DOLLAR,
            Addon::PriorityBoost => 49 * DOLLAR,
            Addon::PrioritySupport => 250 * DOLLAR,
        }
    }
}

impl Addon {
    /// Its price for a year paid ahead, set by sales (SPEC §10), in micro-cents; `None` for an
    /// add-on sold monthly only.
    pub fn annual_price(self) -> Option<i64> {
        match self {
            Addon::Macos => Some(399 * DOLLAR),
            Addon::PriorityBoost => Some(499 * DOLLAR),
            Addon::PrioritySupport => None,
        }
    }
}

/// A runner class whose concurrency can be raised with extra slots.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SlotClass {
    X64,
    Macos,
}

impl SlotClass {
    /// Its key in the database and in forms.
    pub fn key(self) -> &'static str {
        match self {
            SlotClass::X64 => "x64",
            SlotClass::Macos => "macos",
        }
    }

    /// The class of `key`.
    pub fn from_key(key: &str) -> Option<Self> {
        match key {
            "x64" => Some(SlotClass::X64),
            "macos" => Some(SlotClass::Macos),
            _ => None,
        }
    }

    /// The price of one extra slot per month, in micro-cents (SPEC §5).
    pub fn monthly_price_per_slot(self) -> i64 {
        match self {
            SlotClass::X64 => 7 * DOLLAR,
            SlotClass::Macos => 49 * DOLLAR,
        }
    }
}

/// Most extra slots one workspace may buy per class from the page; more is a sales conversation.
pub const MAX_EXTRA_SLOTS: i32 = 1_000;

/// An add-on as the workspace has it now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ActiveAddon {
    pub addon: Addon,
    pub active_since: DateTime<Utc>,
    /// Cancelled: on until this instant (the 1st of the next month).
    pub ends_at: Option<DateTime<Utc>>,
}

/// A class's extra slots now, and a lowered count that starts on the 1st.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ExtraSlots {
    pub slots: i32,
    pub next: Option<(i32, DateTime<Utc>)>,
}

/// Everything the Add-ons page shows of a workspace.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Subscriptions {
    pub addons: Vec<ActiveAddon>,
    pub x64: ExtraSlots,
    pub macos: ExtraSlots,
    pub has_card: bool,
}

/// Why a change was refused.
#[derive(Debug, thiserror::Error)]
pub enum AddonError {
    #[error("only the workspace's owners and admins can change its add-ons")]
    NotAllowed,
    #[error("add a card first: add-ons are billed monthly to it")]
    NoCard,
    #[error("give a whole number of slots from 0 to {MAX_EXTRA_SLOTS}")]
    BadSlotCount,
    #[error("database")]
    Database(#[from] sqlx::Error),
}

/// The 1st of the month after `now`, 00:00 UTC: when a cancelled add-on ends.
pub fn start_of_next_month(now: DateTime<Utc>) -> DateTime<Utc> {
    crate::usage::Month::containing(now).end()
}

fn may_change(caller: &Caller) -> Result<(), AddonError> {
    match caller.member.role {
        Role::Owner | Role::Admin => Ok(()),
        Role::Member => Err(AddonError::NotAllowed),
    }
}

/// The workspace's add-ons and extra slots.
pub async fn subscriptions(db: &PgPool, workspace_id: Uuid) -> Result<Subscriptions, sqlx::Error> {
    let rows = sqlx::query!(
        "SELECT addon, active_since, ends_at FROM workspace_addons WHERE workspace_id = $1",
        workspace_id,
    )
    .fetch_all(db)
    .await?;
    let mut addons: Vec<ActiveAddon> = rows
        .into_iter()
        .filter_map(|row| {
            Some(ActiveAddon {
                addon: Addon::from_key(&row.addon)?,
                active_since: row.active_since,
                ends_at: row.ends_at,
            })
        })
        .collect();
    addons.sort_by_key(|a| Addon::ALL.iter().position(|b| *b == a.addon));
    let slots = sqlx::query!(
        "SELECT runner_class, slots, next_slots, next_slots_from FROM workspace_extra_slots
         WHERE workspace_id = $1",
        workspace_id,
    )
    .fetch_all(db)
    .await?;
    let mut x64 = ExtraSlots::default();
    let mut macos = ExtraSlots::default();
    for row in slots {
        let extra = ExtraSlots {
            slots: row.slots,
            next: row.next_slots.zip(row.next_slots_from),
        };
        match SlotClass::from_key(&row.runner_class) {
            Some(SlotClass::X64) => x64 = extra,
            Some(SlotClass::Macos) => macos = extra,
            None => {}
        }
    }
    let has_card = sqlx::query_scalar!(
        "SELECT payment_method = 'valid' FROM workspaces WHERE id = $1",
        workspace_id,
    )
    .fetch_one(db)
    .await?
    .unwrap_or(false);
    Ok(Subscriptions {
        addons,
        x64,
        macos,
        has_card,
    })
}

async fn require_card(tx: &mut sqlx::PgConnection, workspace_id: Uuid) -> Result<(), AddonError> {
    let has_card = sqlx::query_scalar!(
        "SELECT payment_method = 'valid' FROM workspaces WHERE id = $1 FOR UPDATE",
        workspace_id,
    )
    .fetch_one(&mut *tx)
    .await?
    .unwrap_or(false);
    if has_card {
        Ok(())
    } else {
        Err(AddonError::NoCard)
    }
}

/// Turns `addon` on for the caller's workspace, or keeps a cancelled one on after all.
pub async fn turn_on(
    db: &PgPool,
    caller: &Caller,
    addon: Addon,
    now: DateTime<Utc>,
) -> Result<(), AddonError> {
    may_change(caller)?;
    let workspace_id = caller.member.workspace_id;
    let mut tx = db.begin().await?;
    require_card(&mut tx, workspace_id).await?;
    sqlx::query!(
        "INSERT INTO workspace_addons (workspace_id, addon, active_since) VALUES ($1, $2, $3)
         ON CONFLICT (workspace_id, addon) DO UPDATE SET cancelled_at = NULL, ends_at = NULL",
        workspace_id,
        addon.key(),
        now,
    )
    .execute(&mut *tx)
    .await?;
    crate::admission::request_pass(&mut tx).await?;
    crate::workspaces::audit::record(
        &mut tx,
        caller,
        "addon.turned_on",
        &format!("turned on the {} add-on", addon.name()),
        now,
    )
    .await?;
    tx.commit().await?;
    tracing::info!(%workspace_id, addon = addon.key(), "add-on on");
    Ok(())
}

/// Cancels `addon`: it stays on, and billed, until the 1st of next month.
pub async fn cancel(
    db: &PgPool,
    caller: &Caller,
    addon: Addon,
    now: DateTime<Utc>,
) -> Result<(), AddonError> {
    may_change(caller)?;
    let mut tx = db.begin().await?;
    let cancelled = sqlx::query!(
        "UPDATE workspace_addons SET cancelled_at = $3, ends_at = $4
         WHERE workspace_id = $1 AND addon = $2 AND cancelled_at IS NULL",
        caller.member.workspace_id,
        addon.key(),
        now,
        start_of_next_month(now),
    )
    .execute(&mut *tx)
    .await?
    .rows_affected();
    if cancelled > 0 {
        crate::workspaces::audit::record(
            &mut tx,
            caller,
            "addon.cancelled",
            &format!(
                "cancelled the {} add-on (on until {})",
                addon.name(),
                start_of_next_month(now).format("%Y-%m-%d")
            ),
            now,
        )
        .await?;
    }
    tx.commit().await?;
    Ok(())
}

/// Sets the caller's extra slots of `class` to `slots`: more at once, fewer from the 1st.
pub async fn set_extra_slots(
    db: &PgPool,
    caller: &Caller,
    class: SlotClass,
    slots: i32,
    now: DateTime<Utc>,
) -> Result<(), AddonError> {
    may_change(caller)?;
    if !(0..=MAX_EXTRA_SLOTS).contains(&slots) {
        return Err(AddonError::BadSlotCount);
    }
    let workspace_id = caller.member.workspace_id;
    let mut tx = db.begin().await?;
    let current = sqlx::query_scalar!(
        "SELECT slots FROM workspace_extra_slots WHERE workspace_id = $1 AND runner_class = $2
         FOR UPDATE",
        workspace_id,
        class.key(),
    )
    .fetch_optional(&mut *tx)
    .await?
    .unwrap_or(0);
    if slots > current {
        require_card(&mut tx, workspace_id).await?;
    }
    if slots >= current {
        sqlx::query!(
            "INSERT INTO workspace_extra_slots (workspace_id, runner_class, slots) VALUES ($1, $2, $3)
             ON CONFLICT (workspace_id, runner_class)
                 DO UPDATE SET slots = EXCLUDED.slots, next_slots = NULL, next_slots_from = NULL",
            workspace_id,
            class.key(),
            slots,
        )
        .execute(&mut *tx)
        .await?;
        crate::admission::request_pass(&mut tx).await?;
    } else {
        sqlx::query!(
            "UPDATE workspace_extra_slots SET next_slots = $3, next_slots_from = $4
             WHERE workspace_id = $1 AND runner_class = $2",
            workspace_id,
            class.key(),
            slots,
            start_of_next_month(now),
        )
        .execute(&mut *tx)
        .await?;
    }
    if slots != current {
        let when = if slots > current {
            "now".to_owned()
        } else {
            format!("from {}", start_of_next_month(now).format("%Y-%m-%d"))
        };
        crate::workspaces::audit::record(
            &mut tx,
            caller,
            "slots.changed",
            &format!(
                "set extra {} slots from {current} to {slots} ({when})",
                class.key()
            ),
            now,
        )
        .await?;
    }
    tx.commit().await?;
    Ok(())
}

/// What [`end_due`] ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Ended {
    pub addons: u64,
    pub slot_changes: u64,
}

/// Ends the cancelled add-ons and applies the lowered slot counts whose time has come (hourly,
/// and on the 1st right after midnight UTC). Idempotent.
pub async fn end_due(db: &PgPool, now: DateTime<Utc>) -> Result<Ended, sqlx::Error> {
    let mut tx = db.begin().await?;
    let addons = sqlx::query!(
        "WITH ended AS (
             DELETE FROM workspace_addons WHERE ends_at <= $1
             RETURNING workspace_id, addon, active_since, ends_at)
         INSERT INTO addon_periods (workspace_id, addon, started_at, ended_at)
         SELECT workspace_id, addon, active_since, ends_at FROM ended
         ON CONFLICT DO NOTHING",
        now,
    )
    .execute(&mut *tx)
    .await?
    .rows_affected();
    let slot_changes = sqlx::query!(
        "UPDATE workspace_extra_slots
         SET previous_slots = slots, previous_until = next_slots_from,
             slots = next_slots, next_slots = NULL, next_slots_from = NULL
         WHERE next_slots_from <= $1",
        now,
    )
    .execute(&mut *tx)
    .await?
    .rows_affected();
    tx.commit().await?;
    Ok(Ended {
        addons,
        slot_changes,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ten_extra_x64_slots_cost_70_dollars_and_five_macos_slots_245_a_month() {
        assert_eq!(10 * SlotClass::X64.monthly_price_per_slot(), 70 * DOLLAR);
        assert_eq!(5 * SlotClass::Macos.monthly_price_per_slot(), 245 * DOLLAR);
        assert_eq!(Addon::Macos.monthly_price(), 3_900_000_000);
        assert_eq!(Addon::PriorityBoost.monthly_price(), 4_900_000_000);
        assert_eq!(Addon::PrioritySupport.monthly_price(), 25_000_000_000);
    }
}
