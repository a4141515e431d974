//! The state store (SPEC §4): one SQLite database, `STATE/state.db`, holding what a cycle hands
//! to the next. Written in one transaction per run, the run's commit point: outputs are complete
//! in a staging folder before it and published right after it; a publication a crash interrupted
//! is finished by the next run. Amounts are stored as exact decimal text, never as SQL numbers.
//!
//! Tables (see `ARCHITECTURE.md` for the columns):
//! - `cycles`: one row per cycle run: when, rule-set hash, input hashes, counts, totals, stale.
//! - `cycle_rows`: `deferred_rows` in bulk (compressed CSV parts, `bulk.rs`), by credit cycle:
//!   ledger rows a run wrote for a later credit cycle (carried into it, read only by that cycle).
//! - `pool_parts`: per cycle, what each (order, lever, recipient, currency) pool earned and had
//!   clawed back in that cycle, and the cycle's earliest row of the pool, stored by the FNV-1a
//!   hash of the order id in compressed parts with their hash range (`pools.rs`): a cycle reads
//!   only the parts that hold the orders its refunds name.
//! - `voucher_state`, `lot_state`, `lot_carry`: per cycle, closing voucher balances, incentive
//!   lots, and negative nets not yet offset.
//! - `applied_withdrawals`: per cycle, the applications it applied (an id applies once).
//! - `publication`: a staged output folder whose state is committed but not yet published.

mod bulk;
mod error;
pub mod lock;
mod pools;

use crate::calendar::Cycle;
use crate::chain::{CarriedRow, ClosingBalances, Lot, PriorBalances, PriorPool, StoredVoucher};
use crate::model::{Currency, Voucher};
use crate::money::parse_decimal;
pub use error::StateError;
use lock::StateLock;
pub use pools::{POOL_PART_ROWS, PoolRows, encode_pools, merge_pools, spill_pools};
use rusqlite::{Connection, OptionalExtension, params};
use rust_decimal::Decimal;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// Schema 2 keeps the two large tables in bulk (`cycle_rows`, see `bulk.rs`); schema 3 keeps
/// the pools by key (`pool_parts`, see `pools.rs`). A schema 2 state is migrated when opened.
const SCHEMA_VERSION: &str = "3";

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS cycles (
    cycle TEXT PRIMARY KEY,
    run_at TEXT NOT NULL,
    first_cycle INTEGER NOT NULL,
    ruleset_hash TEXT NOT NULL,
    input_hashes TEXT NOT NULL,
    lines_read INTEGER NOT NULL,
    lines_accepted INTEGER NOT NULL,
    lines_rejected INTEGER NOT NULL,
    ledger_rows INTEGER NOT NULL,
    credited TEXT NOT NULL,
    stale INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS cycle_rows (
    cycle TEXT NOT NULL,
    name TEXT NOT NULL,
    credit_cycle TEXT NOT NULL,
    part INTEGER NOT NULL,
    rows INTEGER NOT NULL,
    data BLOB NOT NULL,
    PRIMARY KEY (cycle, name, credit_cycle, part)
);
CREATE TABLE IF NOT EXISTS pool_parts (
    cycle TEXT NOT NULL,
    part INTEGER NOT NULL,
    first_hash INTEGER NOT NULL,
    last_hash INTEGER NOT NULL,
    rows INTEGER NOT NULL,
    data BLOB NOT NULL,
    PRIMARY KEY (cycle, part)
);
CREATE TABLE IF NOT EXISTS voucher_state (
    cycle TEXT NOT NULL,
    voucher_id TEXT NOT NULL,
    partner_id TEXT NOT NULL,
    voucher_type TEXT NOT NULL,
    face_value TEXT NOT NULL,
    closing TEXT NOT NULL,
    currency TEXT NOT NULL,
    issued_at TEXT NOT NULL,
    valid_from TEXT NOT NULL,
    expires_at TEXT NOT NULL,
    restricted_customer_id TEXT NOT NULL,
    service_scope TEXT NOT NULL,
    PRIMARY KEY (cycle, voucher_id)
);
CREATE TABLE IF NOT EXISTS lot_state (
    cycle TEXT NOT NULL,
    partner_id TEXT NOT NULL,
    lot_id TEXT NOT NULL,
    currency TEXT NOT NULL,
    notified_on TEXT NOT NULL,
    balance TEXT NOT NULL,
    PRIMARY KEY (cycle, partner_id, lot_id, currency)
);
CREATE TABLE IF NOT EXISTS lot_carry (
    cycle TEXT NOT NULL,
    partner_id TEXT NOT NULL,
    currency TEXT NOT NULL,
    remainder TEXT NOT NULL,
    PRIMARY KEY (cycle, partner_id, currency)
);
CREATE TABLE IF NOT EXISTS applied_withdrawals (
    cycle TEXT NOT NULL,
    application_id TEXT NOT NULL,
    PRIMARY KEY (cycle, application_id)
);
CREATE TABLE IF NOT EXISTS publication (
    cycle TEXT PRIMARY KEY,
    staged TEXT NOT NULL,
    out_root TEXT NOT NULL
);
";

/// One cycle of the chain, as `incentives status` lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CycleRecord {
    pub cycle: String,
    pub run_at: String,
    pub first_cycle: bool,
    pub ruleset_hash: String,
    /// JSON object: file → sha256.
    pub input_hashes: String,
    pub lines_read: u64,
    pub lines_accepted: u64,
    pub lines_rejected: u64,
    pub ledger_rows: u64,
    /// JSON object: currency → Σ amounts credited to this cycle (this run's and carried in).
    pub credited: String,
    pub stale: bool,
}

/// A staged output folder whose state is committed and which must be made the published one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PendingPublication {
    pub cycle: Cycle,
    pub staged: PathBuf,
    pub out_root: PathBuf,
}

/// A cycle's state written in an open transaction: [`PreparedCommit::commit`] is the run's
/// commit point; dropped without it (an error, a crash), it changes nothing.
pub struct PreparedCommit<'s> {
    tx: rusqlite::Transaction<'s>,
}

impl PreparedCommit<'_> {
    pub fn commit(self) -> Result<(), StateError> {
        // Test hook (debug builds only): `INCENTIVES_FAIL_AT=state` fails the commit as SQLite
        // does on a full disk (SQLITE_FULL); the transaction is rolled back as it would be.
        if crate::process::injected_failure("state").is_some() {
            return Err(sql(rusqlite::Error::SqliteFailure(
                rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_FULL),
                Some("database or disk is full".into()),
            )));
        }
        self.tx.commit().map_err(sql)
    }
}

pub struct StateStore {
    conn: Connection,
    pub dir: PathBuf,
    /// `None` for a reader ([`StateStore::open_read_only`]).
    _lock: Option<StateLock>,
}

fn sql(e: rusqlite::Error) -> StateError {
    match e.sqlite_error_code() {
        // Damage found after opening: the state is unusable, whatever the run does next.
        Some(rusqlite::ErrorCode::DatabaseCorrupt | rusqlite::ErrorCode::NotADatabase) => {
            StateError::Usage(format!(
                "state store: {e}: state.db is malformed; restore it from a backup, or start the chain again in a new --state folder"
            ))
        }
        _ => StateError::Io(format!("state store: {e}")),
    }
}

/// The first 16 bytes of every SQLite database file.
const SQLITE_HEADER: &[u8; 16] = b"SQLite format 3\0";

/// Checks `STATE` and `STATE/state.db` before SQLite opens them, so that a wrong path or a
/// damaged file is named with what to do (exit 2), not left to a bare SQLite message (or, for
/// an empty file, silently taken as a new state). Returns whether `state.db` exists.
fn check_state_files(dir: &Path, writing: bool) -> Result<bool, StateError> {
    if dir.exists() && !dir.is_dir() {
        return Err(StateError::not_a_folder(
            "--state",
            dir,
            "it holds state.db and the lock",
        ));
    }
    let path = dir.join("state.db");
    let shown = path.display();
    let meta = match std::fs::metadata(&path) {
        Ok(meta) => meta,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(false),
        Err(e) => return Err(StateError::io(shown, e)),
    };
    if meta.is_dir() {
        return Err(StateError::Usage(format!(
            "{shown}: is a folder, where the state database must be a file: move it away, or pass another --state folder"
        )));
    }
    if meta.len() == 0 {
        return Err(StateError::Usage(format!(
            "{shown}: is empty (0 bytes), not a state database: restore state.db from a backup; or, to start a new chain, remove the empty file (or pass a new --state folder) and run its first cycle with --first-cycle"
        )));
    }
    let mut header = [0u8; 16];
    let read =
        std::fs::File::open(&path).and_then(|mut f| std::io::Read::read_exact(&mut f, &mut header));
    // Shorter than a header is not one either.
    let is_sqlite = match read {
        Ok(()) => &header == SQLITE_HEADER,
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => false,
        Err(e) => return Err(StateError::io(shown, e)),
    };
    if !is_sqlite {
        return Err(StateError::Usage(format!(
            "{shown}: is not a SQLite database: restore state.db from a backup, or pass the --state folder that holds the chain"
        )));
    }
    if writing && meta.permissions().readonly() {
        return Err(StateError::Usage(format!(
            "{shown}: is read-only, and a run writes its cycle there: make it writable (chmod u+w {shown}) and run again"
        )));
    }
    Ok(true)
}

/// An error of SQLite opening or first reading `path`, with what to do.
fn open_error(path: &Path, e: rusqlite::Error) -> StateError {
    use rusqlite::ErrorCode as C;
    let shown = path.display();
    match e.sqlite_error_code() {
        Some(C::DatabaseCorrupt | C::NotADatabase) => StateError::Usage(format!(
            "{shown}: the state database is malformed ({e}): restore state.db from a backup, or start the chain again in a new --state folder"
        )),
        Some(C::ReadOnly) => StateError::Usage(format!(
            "{shown}: is read-only ({e}), and a run writes its cycle there: make it and its folder writable and run again"
        )),
        Some(C::CannotOpen | C::PermissionDenied) => StateError::Usage(format!(
            "{shown}: cannot be opened ({e}): check that the --state folder and state.db are readable and writable by this user"
        )),
        _ => StateError::Io(format!("{shown}: {e}")),
    }
}

/// Whether the database holds the table `name`: an existing state.db without `meta` and
/// `cycles` is some other SQLite file, never to be written into.
fn has_table(conn: &Connection, name: &str) -> Result<bool, rusqlite::Error> {
    conn.query_row(
        "SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = ?1",
        params![name],
        |r| r.get::<_, i64>(0),
    )
    .map(|n| n > 0)
}

fn not_a_state(path: &Path) -> StateError {
    StateError::Usage(format!(
        "{}: is a SQLite database but not an incentives state (no `meta` and `cycles` tables): pass the --state folder that holds the chain, or a new one",
        path.display()
    ))
}

fn dec(text: &str) -> Result<Decimal, StateError> {
    parse_decimal(text, 28)
        .map_err(|_| StateError::Io(format!("state store: {text:?} is not a decimal")))
}

fn currency_of(text: &str) -> Result<Currency, StateError> {
    Currency::parse(text)
        .ok_or_else(|| StateError::Io(format!("state store: {text:?} is not a currency")))
}

fn cycle(text: &str) -> Result<Cycle, StateError> {
    text.parse()
        .map_err(|e| StateError::Io(format!("state store: {e}")))
}

impl StateStore {
    /// Opens (creating if need be) the state in `dir`, holding its lock until dropped.
    pub fn open(dir: &Path) -> Result<StateStore, StateError> {
        let existed = check_state_files(dir, true)?;
        std::fs::create_dir_all(dir).map_err(|e| StateError::io(dir.display(), e))?;
        let lock = StateLock::acquire(dir)?;
        let path = dir.join("state.db");
        let conn = Connection::open(&path).map_err(|e| open_error(&path, e))?;
        if existed
            && !(has_table(&conn, "meta").map_err(|e| open_error(&path, e))?
                && has_table(&conn, "cycles").map_err(|e| open_error(&path, e))?)
        {
            return Err(not_a_state(&path));
        }
        conn.execute_batch("PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL;")
            .map_err(|e| open_error(&path, e))?;
        conn.execute_batch(SCHEMA).map_err(sql)?;
        conn.execute(
            "INSERT OR IGNORE INTO meta (key, value) VALUES ('schema_version', ?1)",
            params![SCHEMA_VERSION],
        )
        .map_err(sql)?;
        let mut conn = conn;
        let mut version: String = conn
            .query_row(
                "SELECT value FROM meta WHERE key = 'schema_version'",
                [],
                |r| r.get(0),
            )
            .map_err(sql)?;
        if version == "2" {
            let tx = conn.transaction().map_err(sql)?;
            pools::migrate_from_v2(&tx)?;
            tx.execute(
                "UPDATE meta SET value = ?1 WHERE key = 'schema_version'",
                params![SCHEMA_VERSION],
            )
            .map_err(sql)?;
            tx.commit().map_err(sql)?;
            version = SCHEMA_VERSION.to_string();
        }
        if version != SCHEMA_VERSION {
            return Err(StateError::Usage(format!(
                "{}: state schema {version} was written by an earlier release (this one reads schema {SCHEMA_VERSION}): start the chain again with its first cycle and a new --state folder",
                dir.join("state.db").display()
            )));
        }
        Ok(StateStore {
            conn,
            dir: dir.to_path_buf(),
            _lock: Some(lock),
        })
    }

    /// Opens the state in `dir` to read it without its lock (what `whatif` does: it never
    /// writes), in one read transaction, so every query sees the same committed state even if a
    /// run commits meanwhile. A state of an earlier schema is not migrated here: the next run on it
    /// does that.
    pub fn open_read_only(dir: &Path) -> Result<StateStore, StateError> {
        let path = dir.join("state.db");
        if !check_state_files(dir, false)? {
            return Err(StateError::Usage(format!("{}: no state.db", dir.display())));
        }
        let conn = Connection::open_with_flags(&path, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
            .map_err(|e| open_error(&path, e))?;
        if !(has_table(&conn, "meta").map_err(|e| open_error(&path, e))?
            && has_table(&conn, "cycles").map_err(|e| open_error(&path, e))?)
        {
            return Err(not_a_state(&path));
        }
        conn.execute_batch("BEGIN").map_err(sql)?;
        let version: String = conn
            .query_row(
                "SELECT value FROM meta WHERE key = 'schema_version'",
                [],
                |r| r.get(0),
            )
            .map_err(sql)?;
        if version != SCHEMA_VERSION {
            return Err(StateError::Usage(format!(
                "{}: state schema {version}, and this release reads schema {SCHEMA_VERSION}: the next run on this state migrates it (or re-run its last cycle), then ask again",
                path.display()
            )));
        }
        Ok(StateStore {
            conn,
            dir: dir.to_path_buf(),
            _lock: None,
        })
    }

    /// Every cycle run, oldest first.
    pub fn chain(&self) -> Result<Vec<CycleRecord>, StateError> {
        read_cycles(&self.conn)
    }

    /// The state's version: a digest of the chain as committed (every cycle's record), so a
    /// commit of any cycle changes it. Shards record the version their slice was read from;
    /// the merge refuses parts of another (SPEC §9).
    pub fn version(&self) -> Result<String, StateError> {
        use sha2::Digest;
        let mut hasher = sha2::Sha256::new();
        for c in self.chain()? {
            hasher.update(format!("{c:?}\n").as_bytes());
        }
        Ok(hex::encode(hasher.finalize()))
    }

    /// The state's version when there is no `state.db` yet (that of an empty chain).
    pub fn empty_version() -> String {
        use sha2::Digest;
        hex::encode(sha2::Sha256::new().finalize())
    }

    /// SPEC §4's chain rules: M needs M−1, not stale, unless it is the first cycle.
    pub fn check_chain(&self, m: Cycle, first_cycle: bool) -> Result<(), StateError> {
        let chain = self.chain()?;
        if first_cycle {
            // A chain starts once: `--first-cycle` re-runs the chain's own first cycle (the
            // later ones become stale) or starts an empty state, never rewrites a chain from
            // another month.
            let first = chain.iter().map(|c| c.cycle.as_str()).min();
            return match first {
                None => Ok(()),
                Some(first) if first == m.to_string() => Ok(()),
                Some(first) => Err(StateError::Usage(format!(
                    "--first-cycle {m}: the state in {} holds a chain that starts at {first}; \
                     --first-cycle only starts an empty state or re-runs that chain's first cycle ({first}). \
                     Nothing was changed. To start a new chain at {m}, pass a new --state folder; \
                     to continue this chain, run the cycle after its last one without --first-cycle",
                    self.dir.display(),
                ))),
            };
        }
        let previous = m.previous().to_string();
        match chain.iter().find(|c| c.cycle == previous) {
            None => Err(StateError::Usage(format!(
                "cycle {m} needs cycle {previous} in the state ({}), and it is not there: run {previous} first, or pass --first-cycle if {m} starts the chain",
                self.dir.display()
            ))),
            Some(p) if p.stale => Err(StateError::Usage(format!(
                "cycle {previous} is stale (an earlier cycle was re-run after it): re-run {previous} before {m}"
            ))),
            Some(_) => Ok(()),
        }
    }

    /// What cycles before `m` left in the pools of the orders `wanted` (those this cycle's
    /// refunds and negative lines claw back from), summed over those cycles.
    pub fn prior_pools(
        &self,
        m: Cycle,
        wanted: &std::collections::BTreeSet<&str>,
    ) -> Result<Vec<PriorPool>, StateError> {
        pools::prior_pools(&self.conn, m, wanted)
    }

    /// The rows cycles before `m` deferred to `m` (stored by credit cycle: only these are read).
    pub fn carried(&self, m: Cycle) -> Result<Vec<CarriedRow>, StateError> {
        let key = m.to_string();
        let mut carried = Vec::new();
        for data in self.parts("deferred_rows", "credit_cycle = ?1 AND cycle < ?1", &key)? {
            bulk::decode_part(&data, DEFERRED_COLUMNS, |r| {
                let s = |i: usize| r[i].to_string();
                carried.push(CarriedRow {
                    entry_id: s(0),
                    partner_id: s(1),
                    customer_id: s(2),
                    line_id: s(3),
                    order_id: s(4),
                    lever: s(5),
                    rule_id: s(6),
                    kind: r[7].parse().map_err(|()| {
                        StateError::Io(format!("state store: {:?} is not a ledger kind", &r[7]))
                    })?,
                    ref_id: s(8),
                    earned_cycle: cycle(&r[9])?,
                    credit_cycle: cycle(&r[10])?,
                    base: dec(&r[11])?,
                    rate: (!r[12].is_empty()).then(|| dec(&r[12])).transpose()?,
                    amount: dec(&r[13])?,
                    currency: currency_of(&r[14])?,
                    ruleset_hash: s(15),
                });
                Ok(())
            })?;
        }
        Ok(carried)
    }

    /// The stored parts of table `name` whose rows match `filter` (with `?1` bound to `key`),
    /// in the order they were written (cycle, credit cycle, part).
    fn parts(&self, name: &str, filter: &str, key: &str) -> Result<Vec<Vec<u8>>, StateError> {
        let mut stmt = self
            .conn
            .prepare(&format!(
                "SELECT data FROM cycle_rows WHERE name = ?2 AND {filter}
                 ORDER BY cycle, credit_cycle, part"
            ))
            .map_err(sql)?;
        let rows = stmt
            .query_map(params![key, name], |r| r.get::<_, Vec<u8>>(0))
            .map_err(sql)?;
        rows.collect::<Result<Vec<_>, _>>().map_err(sql)
    }

    /// Prepares the run's commit point: in one open transaction, replaces everything cycle `m`
    /// wrote, marks later cycles stale, and records the staged folder to publish. Nothing is
    /// visible (and a crash changes nothing) until [`PreparedCommit::commit`]; the run prepares
    /// it while its outputs are still being synced and commits once they are.
    pub fn prepare_commit(
        &mut self,
        record: &CycleRecord,
        deferred: DeferredRows,
        pools: PoolRows,
        balances: &ClosingBalances,
        publication: &PendingPublication,
    ) -> Result<PreparedCommit<'_>, StateError> {
        let m = record.cycle.as_str();
        let tx = self.conn.transaction().map_err(sql)?;
        tx.execute("DELETE FROM cycles WHERE cycle = ?1", params![m])
            .map_err(sql)?;
        tx.execute("DELETE FROM cycle_rows WHERE cycle = ?1", params![m])
            .map_err(sql)?;
        for table in [
            "voucher_state",
            "lot_state",
            "lot_carry",
            "applied_withdrawals",
        ] {
            tx.execute(&format!("DELETE FROM {table} WHERE cycle = ?1"), params![m])
                .map_err(sql)?;
        }
        tx.execute("UPDATE cycles SET stale = 1 WHERE cycle > ?1", params![m])
            .map_err(sql)?;
        tx.execute(
            "INSERT INTO cycles (cycle, run_at, first_cycle, ruleset_hash, input_hashes, lines_read,
                 lines_accepted, lines_rejected, ledger_rows, credited, stale)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, 0)",
            params![
                m,
                record.run_at,
                record.first_cycle as i64,
                record.ruleset_hash,
                record.input_hashes,
                record.lines_read as i64,
                record.lines_accepted as i64,
                record.lines_rejected as i64,
                record.ledger_rows as i64,
                record.credited
            ],
        )
        .map_err(sql)?;
        {
            let mut insert = tx
                .prepare(
                    "INSERT INTO cycle_rows (cycle, name, credit_cycle, part, rows, data)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                )
                .map_err(sql)?;
            let (deferred, shelf) = deferred.finish()?;
            for (credit, parts) in deferred {
                for (n, part) in parts.iter().enumerate() {
                    insert
                        .execute(params![
                            m,
                            "deferred_rows",
                            credit,
                            n as i64,
                            part.rows as i64,
                            shelf.take(part)?
                        ])
                        .map_err(sql)?;
                }
            }
            tx.execute("DELETE FROM pool_parts WHERE cycle = ?1", params![m])
                .map_err(sql)?;
            pools::store(&tx, m, pools)?;
            let mut insert = tx
                .prepare(
                    "INSERT INTO voucher_state (cycle, voucher_id, partner_id, voucher_type, face_value, closing,
                         currency, issued_at, valid_from, expires_at, restricted_customer_id, service_scope)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)",
                )
                .map_err(sql)?;
            for (v, partner_id, closing) in &balances.vouchers {
                let t = crate::calendar::format_instant;
                insert
                    .execute(params![
                        m,
                        v.voucher_id.as_str(),
                        partner_id,
                        v.voucher_type,
                        v.face_value.to_string(),
                        closing.to_string(),
                        v.currency.as_str(),
                        t(v.issued_at),
                        t(v.valid_from),
                        t(v.expires_at),
                        v.restricted_customer_id.as_deref().unwrap_or(""),
                        v.service_scope
                            .iter()
                            .map(|s| s.as_str())
                            .collect::<Vec<_>>()
                            .join(";")
                    ])
                    .map_err(sql)?;
            }
            let mut insert = tx
                .prepare(
                    "INSERT INTO lot_state (cycle, partner_id, lot_id, currency, notified_on, balance)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                )
                .map_err(sql)?;
            for lot in &balances.lots {
                insert
                    .execute(params![
                        m,
                        lot.partner_id,
                        lot.lot_id,
                        lot.currency.as_str(),
                        lot.notified_on.to_string(),
                        lot.balance.to_string()
                    ])
                    .map_err(sql)?;
            }
            let mut insert = tx
                .prepare("INSERT INTO lot_carry (cycle, partner_id, currency, remainder) VALUES (?1, ?2, ?3, ?4)")
                .map_err(sql)?;
            for ((partner_id, currency), remainder) in &balances.carry {
                insert
                    .execute(params![
                        m,
                        partner_id,
                        currency.as_str(),
                        remainder.to_string()
                    ])
                    .map_err(sql)?;
            }
            let mut insert = tx
                .prepare("INSERT INTO applied_withdrawals (cycle, application_id) VALUES (?1, ?2)")
                .map_err(sql)?;
            for id in &balances.applied {
                insert.execute(params![m, id]).map_err(sql)?;
            }
        }
        tx.execute(
            "INSERT OR REPLACE INTO publication (cycle, staged, out_root) VALUES (?1, ?2, ?3)",
            params![
                m,
                publication.staged.display().to_string(),
                publication.out_root.display().to_string()
            ],
        )
        .map_err(sql)?;
        Ok(PreparedCommit { tx })
    }

    /// Closing vouchers, lots, carries of cycle `m − 1`, and every application applied before `m`.
    pub fn prior_balances(
        &self,
        m: Cycle,
    ) -> Result<(Vec<StoredVoucher>, PriorBalances), StateError> {
        let previous = m.previous().to_string();
        let mut vouchers = Vec::new();
        let mut stmt = self
            .conn
            .prepare(
                "SELECT voucher_id, partner_id, voucher_type, face_value, closing, currency, issued_at, valid_from,
                        expires_at, restricted_customer_id, service_scope
                 FROM voucher_state WHERE cycle = ?1 ORDER BY voucher_id",
            )
            .map_err(sql)?;
        let mut rows = stmt.query(params![previous]).map_err(sql)?;
        let instant = |t: &str| {
            crate::calendar::parse_instant(t)
                .ok_or_else(|| StateError::Io(format!("state store: {t:?} is not an instant")))
        };
        let mut partners = Vec::new();
        while let Some(r) = rows.next().map_err(sql)? {
            let g = |i: usize| r.get::<_, String>(i).map_err(sql);
            let restricted = g(9)?;
            let scope = g(10)?;
            partners.push(g(1)?);
            vouchers.push(Voucher {
                source_row: 0,
                voucher_id: g(0)?.into(),
                partner: crate::model::PartnerIdx(0),
                voucher_type: g(2)?,
                face_value: dec(&g(3)?)?,
                opening_balance: dec(&g(4)?)?,
                currency: Currency::parse(&g(5)?)
                    .ok_or_else(|| StateError::Io("state store: bad currency".into()))?,
                issued_at: instant(&g(6)?)?,
                valid_from: instant(&g(7)?)?,
                expires_at: instant(&g(8)?)?,
                restricted_customer_id: (!restricted.is_empty()).then(|| restricted.into()),
                service_scope: if scope.is_empty() {
                    Vec::new()
                } else {
                    scope.split(';').map(Into::into).collect()
                },
            });
        }
        drop(rows);
        drop(stmt);
        // The partner of a stored voucher is kept by id: it is resolved against this cycle's partners.
        let mut prior = PriorBalances::default();
        let mut stmt = self
            .conn
            .prepare("SELECT partner_id, lot_id, currency, notified_on, balance FROM lot_state WHERE cycle = ?1")
            .map_err(sql)?;
        let mut rows = stmt.query(params![previous]).map_err(sql)?;
        while let Some(r) = rows.next().map_err(sql)? {
            let g = |i: usize| r.get::<_, String>(i).map_err(sql);
            prior.lots.push(Lot {
                partner_id: g(0)?,
                lot_id: g(1)?,
                currency: Currency::parse(&g(2)?)
                    .ok_or_else(|| StateError::Io("state store: bad currency".into()))?,
                notified_on: crate::calendar::parse_date(&g(3)?)
                    .ok_or_else(|| StateError::Io("state store: bad date".into()))?,
                balance: dec(&g(4)?)?,
            });
        }
        drop(rows);
        drop(stmt);
        let mut stmt = self
            .conn
            .prepare("SELECT partner_id, currency, remainder FROM lot_carry WHERE cycle = ?1")
            .map_err(sql)?;
        let mut rows = stmt.query(params![previous]).map_err(sql)?;
        while let Some(r) = rows.next().map_err(sql)? {
            let g = |i: usize| r.get::<_, String>(i).map_err(sql);
            if let Some(c) = Currency::parse(&g(1)?) {
                prior.carry.insert((g(0)?, c), dec(&g(2)?)?);
            }
        }
        drop(rows);
        drop(stmt);
        let mut stmt = self
            .conn
            .prepare("SELECT application_id FROM applied_withdrawals WHERE cycle < ?1")
            .map_err(sql)?;
        let mut rows = stmt.query(params![m.to_string()]).map_err(sql)?;
        while let Some(r) = rows.next().map_err(sql)? {
            prior.applied.insert(r.get::<_, String>(0).map_err(sql)?);
        }
        Ok((
            vouchers
                .into_iter()
                .zip(partners)
                .map(|(voucher, partner_id)| StoredVoucher {
                    voucher,
                    partner_id,
                })
                .collect(),
            prior,
        ))
    }

    /// Publications committed but not yet published (a crash or a failure between the two).
    pub fn pending_publications(&self) -> Result<Vec<PendingPublication>, StateError> {
        Ok(read_publications(&self.conn)?.into_values().collect())
    }

    pub fn published(&self, m: Cycle) -> Result<(), StateError> {
        self.conn
            .execute(
                "DELETE FROM publication WHERE cycle = ?1",
                params![m.to_string()],
            )
            .map_err(sql)?;
        Ok(())
    }

    /// Whether the state holds cycle `m`.
    pub fn has(&self, m: Cycle) -> Result<bool, StateError> {
        self.conn
            .query_row(
                "SELECT 1 FROM cycles WHERE cycle = ?1",
                params![m.to_string()],
                |_| Ok(()),
            )
            .optional()
            .map(|r| r.is_some())
            .map_err(sql)
    }
}

/// The one command that makes a cycle's outputs again (its staged folder was lost before
/// publication): a re-run of the cycle on the same state and output folder.
pub fn repair_command(
    cycle: Cycle,
    first_cycle: bool,
    state_dir: &Path,
    out_root: &Path,
) -> String {
    format!(
        "incentives run --cycle {cycle} --input <the folder of {cycle}'s exports> --state {} --out {}{}",
        state_dir.display(),
        out_root.display(),
        if first_cycle { " --first-cycle" } else { "" }
    )
}

/// The publications recorded in a state (committed, not yet published), by cycle.
fn read_publications(
    conn: &Connection,
) -> Result<BTreeMap<String, PendingPublication>, StateError> {
    let mut stmt = conn
        .prepare("SELECT cycle, staged, out_root FROM publication ORDER BY cycle")
        .map_err(sql)?;
    let rows = stmt
        .query_map([], |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, String>(2)?,
            ))
        })
        .map_err(sql)?;
    let mut pending = BTreeMap::new();
    for row in rows {
        let (c, staged, out_root) = row.map_err(sql)?;
        pending.insert(
            c.clone(),
            PendingPublication {
                cycle: cycle(&c)?,
                staged: staged.into(),
                out_root: out_root.into(),
            },
        );
    }
    Ok(pending)
}

/// Every cycle of the `cycles` table, oldest first.
fn read_cycles(conn: &Connection) -> Result<Vec<CycleRecord>, StateError> {
    let mut stmt = conn
        .prepare(
            "SELECT cycle, run_at, first_cycle, ruleset_hash, input_hashes, lines_read, lines_accepted,
                    lines_rejected, ledger_rows, credited, stale FROM cycles ORDER BY cycle",
        )
        .map_err(sql)?;
    let rows = stmt
        .query_map([], |r| {
            Ok(CycleRecord {
                cycle: r.get(0)?,
                run_at: r.get(1)?,
                first_cycle: r.get::<_, i64>(2)? != 0,
                ruleset_hash: r.get(3)?,
                input_hashes: r.get(4)?,
                lines_read: r.get::<_, i64>(5)? as u64,
                lines_accepted: r.get::<_, i64>(6)? as u64,
                lines_rejected: r.get::<_, i64>(7)? as u64,
                ledger_rows: r.get::<_, i64>(8)? as u64,
                credited: r.get(9)?,
                stale: r.get::<_, i64>(10)? != 0,
            })
        })
        .map_err(sql)?;
    rows.collect::<Result<Vec<_>, _>>().map_err(sql)
}

/// Columns of a stored `deferred_rows` part: the ledger row as the run's journal wrote it.
pub const DEFERRED_COLUMNS: &[&str] = crate::chain::LEDGER_COLUMNS;

/// Journal rows credited to later cycles, encoded as the writer goes, per credit cycle, each
/// part shelved as it closes.
pub struct DeferredRows {
    by_credit_cycle: BTreeMap<String, (bulk::PartsEncoder, Vec<bulk::Shelved>)>,
    shelf: bulk::Shelf,
    rows: u64,
}

impl crate::chain::DeferredSink for DeferredRows {
    /// Adds `rows` ledger rows credited to `credit_cycle`, formatted as CSV records of
    /// [`DEFERRED_COLUMNS`] exactly as the journal wrote them.
    fn csv_rows(&mut self, credit_cycle: &str, csv: &[u8], rows: u64) -> Result<(), String> {
        self.add(credit_cycle, csv, rows).map_err(|e| e.to_string())
    }
}

impl DeferredRows {
    /// No rows yet; their parts will be shelved in `dir` (the run's spill folder).
    pub fn new(dir: Option<&Path>) -> DeferredRows {
        DeferredRows {
            by_credit_cycle: BTreeMap::new(),
            shelf: bulk::Shelf::new(dir),
            rows: 0,
        }
    }

    fn add(&mut self, credit_cycle: &str, csv: &[u8], rows: u64) -> Result<(), StateError> {
        if !self.by_credit_cycle.contains_key(credit_cycle) {
            self.by_credit_cycle.insert(
                credit_cycle.to_string(),
                (bulk::PartsEncoder::new(DEFERRED_COLUMNS), Vec::new()),
            );
        }
        if let Some((enc, shelved)) = self.by_credit_cycle.get_mut(credit_cycle) {
            enc.csv_rows(csv, rows)?;
            for part in enc.take_closed() {
                shelved.push(self.shelf.put(&part)?);
            }
        }
        self.rows += rows;
        Ok(())
    }

    pub fn len(&self) -> u64 {
        self.rows
    }

    pub fn is_empty(&self) -> bool {
        self.rows == 0
    }

    /// Every part closed and shelved: the parts of each credit cycle, in order, and the shelf.
    fn finish(self) -> Result<(BTreeMap<String, Vec<bulk::Shelved>>, bulk::Shelf), StateError> {
        let mut shelf = self.shelf;
        let mut all = BTreeMap::new();
        for (credit, (enc, mut shelved)) in self.by_credit_cycle {
            for part in enc.finish()? {
                shelved.push(shelf.put(&part)?);
            }
            all.insert(credit, shelved);
        }
        Ok((all, shelf))
    }
}

/// A cycle's record and the publication recorded for it, if any.
pub type StoredCycle = (CycleRecord, Option<PendingPublication>);

/// The chain in the state folder `dir`, read without the lock (SQLite lets a reader see the last
/// committed state while a run works): each cycle's record and the publication recorded for it
/// (committed, maybe not yet published). `Ok(None)` when there is no state.db there.
pub fn read_chain(dir: &Path) -> Result<Option<Vec<StoredCycle>>, StateError> {
    let path = dir.join("state.db");
    if !check_state_files(dir, false)? {
        return Ok(None);
    }
    let conn = Connection::open_with_flags(&path, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
        .map_err(|e| open_error(&path, e))?;
    if !(has_table(&conn, "meta").map_err(|e| open_error(&path, e))?
        && has_table(&conn, "cycles").map_err(|e| open_error(&path, e))?)
    {
        return Err(not_a_state(&path));
    }
    let mut publications = if has_table(&conn, "publication").map_err(sql)? {
        read_publications(&conn)?
    } else {
        BTreeMap::new()
    };
    Ok(Some(
        read_cycles(&conn)?
            .into_iter()
            .map(|record| {
                let publication = publications.remove(&record.cycle);
                (record, publication)
            })
            .collect(),
    ))
}

/// A shard's slice of the prior state (SPEC §9), exported by `split` so that shards never open
/// `state.db`: the rows carried into the cycle, the vouchers and balances of the shard's
/// partners, with the state's version they were read at.
#[derive(serde::Serialize, serde::Deserialize)]
pub struct Slice {
    pub state_version: String,
    pub first_cycle: bool,
    pub carried: Vec<CarriedRow>,
    pub vouchers: Vec<StoredVoucher>,
    pub balances: PriorBalances,
}

pub fn write_slice(path: &Path, slice: &Slice) -> Result<(), StateError> {
    let json = serde_json::to_vec(slice).map_err(|e| StateError::Io(e.to_string()))?;
    std::fs::write(path, json).map_err(|e| StateError::io(path.display(), e))
}

pub fn read_slice(path: &Path) -> Result<Slice, StateError> {
    let bytes = std::fs::read(path).map_err(|e| StateError::io(path.display(), e))?;
    serde_json::from_slice(&bytes).map_err(|e| {
        StateError::Io(format!(
            "{}: {e}: split again into a new --parts",
            path.display()
        ))
    })
}
