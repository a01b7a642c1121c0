//! The custodian: wallets per account and asset (hot and cold), deposits
//! and withdrawals with confirmations, internal transfers, settlement of
//! exchange trades into custody on a configurable cycle (T+0, T+1 or
//! multi-day), chaos hooks (fail or delay settlements, freeze
//! withdrawals), and the three-way reconciliation of exchange balances,
//! custody balances and what the fills say to expect.
//!
//! [`custodian`] is the pure, deterministic domain; [`service`] runs it in
//! real time as `tradestack serve custodian`, persisted in the state store.

pub mod custodian;
pub mod service;

pub use custodian::{
    AuditRecord, Break, Custodian, CustodyChaos, CustodyConfig, CustodyError, CustodySnapshot,
    Instruction, Selector, SettlementCycle, Status, Transfer, WalletKind,
};
