//! SQL over the store through DataFusion: each table is a provider that
//! unions its Parquet files with its in-memory batches, skipping files and
//! batches outside the time range the query's filters name.

use std::sync::Arc;
use std::time::Instant;

use datafusion::arrow::datatypes::SchemaRef;
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::catalog::{Session, TableProvider};
use datafusion::common::{ScalarValue, project_schema};
use datafusion::datasource::MemTable;
use datafusion::datasource::file_format::parquet::ParquetFormat;
use datafusion::datasource::listing::{
    ListingOptions, ListingTable, ListingTableConfig, ListingTableUrl,
};
use datafusion::error::{DataFusionError, Result as DfResult};
use datafusion::logical_expr::{
    BinaryExpr, Expr, Operator, TableProviderFilterPushDown, TableType,
};
use datafusion::physical_plan::ExecutionPlan;
use datafusion::physical_plan::empty::EmptyExec;
use datafusion::physical_plan::union::UnionExec;
use datafusion::prelude::{SessionConfig, SessionContext};

use crate::schema::TIMESTAMP;
use crate::store::Store;

/// A query's answer.
pub struct QueryResult {
    /// Column names and types.
    pub schema: SchemaRef,
    /// The rows.
    pub batches: Vec<RecordBatch>,
    /// Planning time, nanoseconds.
    pub compile_ns: u64,
    /// Execution time, nanoseconds.
    pub execute_ns: u64,
}

/// A query that failed, with the character position it failed at when the
/// SQL parser knows it.
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct QueryError {
    /// What went wrong.
    pub message: String,
    /// 0-based character offset into the query, or 0.
    pub position: usize,
}

impl QueryError {
    fn new(e: DataFusionError, sql: &str) -> QueryError {
        let message = e.to_string();
        let position = sql_position(&message, sql).unwrap_or(0);
        QueryError { message, position }
    }
}

/// Maps sqlparser's "Line: L, Column: C" to a character offset.
fn sql_position(message: &str, sql: &str) -> Option<usize> {
    let at = message.find("Line: ")?;
    let rest = &message[at + 6..];
    let (line, rest) = rest.split_once(", Column: ")?;
    let line: usize = line.trim().parse().ok()?;
    let col: usize = rest
        .chars()
        .take_while(char::is_ascii_digit)
        .collect::<String>()
        .parse()
        .ok()?;
    let before: usize = sql
        .split('\n')
        .take(line - 1)
        .map(|l| l.chars().count() + 1)
        .sum();
    Some(before + col.saturating_sub(1))
}

/// Runs SQL over a store.
#[derive(Clone)]
pub struct QueryEngine {
    store: Store,
    ctx: SessionContext,
}

impl QueryEngine {
    /// An engine over `store`.
    pub fn new(store: Store) -> QueryEngine {
        let config = SessionConfig::new()
            .with_target_partitions(2)
            .with_information_schema(true);
        QueryEngine {
            store,
            ctx: SessionContext::new_with_config(config),
        }
    }

    /// Registers tables created since the last query.
    fn refresh(&self) -> DfResult<()> {
        for name in self.store.tables() {
            if !self.ctx.table_exist(name.as_str())? {
                self.ctx.register_table(
                    name.as_str(),
                    Arc::new(StoreTable {
                        store: self.store.clone(),
                        name: name.clone(),
                    }),
                )?;
            }
        }
        Ok(())
    }

    /// Plans and runs one SQL statement.
    pub async fn sql(&self, sql: &str) -> Result<QueryResult, QueryError> {
        let started = Instant::now();
        self.refresh().map_err(|e| QueryError::new(e, sql))?;
        let df = self
            .ctx
            .sql(sql)
            .await
            .map_err(|e| QueryError::new(e, sql))?;
        let schema: SchemaRef = Arc::new(df.schema().as_arrow().clone());
        let compiled = Instant::now();
        let batches = df.collect().await.map_err(|e| QueryError::new(e, sql))?;
        Ok(QueryResult {
            schema,
            batches,
            compile_ns: (compiled - started).as_nanos() as u64,
            execute_ns: compiled.elapsed().as_nanos() as u64,
        })
    }
}

/// One store table as a DataFusion provider.
#[derive(Debug)]
struct StoreTable {
    store: Store,
    name: String,
}

#[async_trait::async_trait]
impl TableProvider for StoreTable {
    fn schema(&self) -> SchemaRef {
        self.store
            .snapshot(&self.name, i64::MAX, i64::MIN)
            .map(|s| s.schema)
            .unwrap_or_else(|| Arc::new(datafusion::arrow::datatypes::Schema::empty()))
    }

    fn table_type(&self) -> TableType {
        TableType::Base
    }

    fn supports_filters_pushdown(
        &self,
        filters: &[&Expr],
    ) -> DfResult<Vec<TableProviderFilterPushDown>> {
        Ok(vec![TableProviderFilterPushDown::Inexact; filters.len()])
    }

    async fn scan(
        &self,
        state: &dyn Session,
        projection: Option<&Vec<usize>>,
        filters: &[Expr],
        limit: Option<usize>,
    ) -> DfResult<Arc<dyn ExecutionPlan>> {
        let (from, to) = time_bounds(filters);
        let snap = self
            .store
            .snapshot(&self.name, from, to)
            .ok_or_else(|| DataFusionError::Plan(format!("table {} is gone", self.name)))?;
        let mut parts: Vec<Arc<dyn ExecutionPlan>> = Vec::new();
        if !snap.files.is_empty() {
            let urls = snap
                .files
                .iter()
                .map(|p| ListingTableUrl::parse(p.to_string_lossy()))
                .collect::<DfResult<Vec<_>>>()?;
            // No sort order is declared: files are sorted by symbols, then
            // time, and row-group statistics do the pruning.
            let options = ListingOptions::new(Arc::new(ParquetFormat::default()))
                .with_file_extension(".parquet");
            let config = ListingTableConfig::new_with_multi_paths(urls)
                .with_listing_options(options)
                .with_schema(snap.schema.clone());
            let table = ListingTable::try_new(config)?;
            parts.push(table.scan(state, projection, filters, limit).await?);
        }
        if !snap.batches.is_empty() {
            // Two partitions: both cores scan.
            let mid = snap.batches.len().div_ceil(2);
            let (a, b) = snap.batches.split_at(mid);
            let partitions: Vec<Vec<RecordBatch>> = [a, b]
                .into_iter()
                .filter(|p| !p.is_empty())
                .map(<[RecordBatch]>::to_vec)
                .collect();
            let mem = MemTable::try_new(snap.schema.clone(), partitions)?;
            parts.push(mem.scan(state, projection, filters, limit).await?);
        }
        if parts.is_empty() {
            return Ok(Arc::new(EmptyExec::new(project_schema(
                &snap.schema,
                projection,
            )?)));
        }
        UnionExec::try_new(parts)
    }
}

/// The designated-timestamp range `[from, to]` that `filters` (all ANDed)
/// allow; the whole range when they say nothing about it.
pub fn time_bounds(filters: &[Expr]) -> (i64, i64) {
    let mut range = (i64::MIN, i64::MAX);
    for f in filters {
        narrow(f, &mut range);
    }
    range
}

fn narrow(e: &Expr, range: &mut (i64, i64)) {
    match e {
        Expr::BinaryExpr(BinaryExpr { left, op, right }) => {
            if *op == Operator::And {
                narrow(left, range);
                narrow(right, range);
                return;
            }
            let (op, v) = match (is_ts(left), is_ts(right)) {
                (true, false) => match nanos(right) {
                    Some(v) => (*op, v),
                    None => return,
                },
                (false, true) => match (nanos(left), op.swap()) {
                    (Some(v), Some(op)) => (op, v),
                    _ => return,
                },
                _ => return,
            };
            match op {
                Operator::Gt => range.0 = range.0.max(v.saturating_add(1)),
                Operator::GtEq => range.0 = range.0.max(v),
                Operator::Lt => range.1 = range.1.min(v.saturating_sub(1)),
                Operator::LtEq => range.1 = range.1.min(v),
                Operator::Eq => {
                    range.0 = range.0.max(v);
                    range.1 = range.1.min(v);
                }
                _ => {}
            }
        }
        Expr::Between(b) if !b.negated && is_ts(&b.expr) => {
            if let (Some(lo), Some(hi)) = (nanos(&b.low), nanos(&b.high)) {
                range.0 = range.0.max(lo);
                range.1 = range.1.min(hi);
            }
        }
        _ => {}
    }
}

fn is_ts(e: &Expr) -> bool {
    matches!(e, Expr::Column(c) if c.name == TIMESTAMP)
}

/// A literal timestamp in nanoseconds (rounded outward for coarser units).
fn nanos(e: &Expr) -> Option<i64> {
    let Expr::Literal(v, _) = e else { return None };
    match v {
        ScalarValue::TimestampNanosecond(Some(n), _) => Some(*n),
        ScalarValue::TimestampMicrosecond(Some(n), _) => n.checked_mul(1_000),
        ScalarValue::TimestampMillisecond(Some(n), _) => n.checked_mul(1_000_000),
        ScalarValue::TimestampSecond(Some(n), _) => n.checked_mul(1_000_000_000),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::prelude::{col, lit};

    fn ts(n: i64) -> Expr {
        lit(ScalarValue::TimestampNanosecond(Some(n), None))
    }

    #[test]
    fn bounds_come_from_comparisons_on_the_timestamp() {
        let f = col(TIMESTAMP).gt_eq(ts(10)).and(col(TIMESTAMP).lt(ts(20)));
        assert_eq!(time_bounds(&[f]), (10, 19));
        let f = ts(5).lt(col(TIMESTAMP));
        assert_eq!(time_bounds(&[f]), (6, i64::MAX));
        let f = col(TIMESTAMP).between(ts(3), ts(4));
        assert_eq!(time_bounds(&[f]), (3, 4));
        // Disjunctions and other columns say nothing.
        let f = col(TIMESTAMP).lt(ts(3)).or(col(TIMESTAMP).gt(ts(9)));
        assert_eq!(
            time_bounds(&[f, col("price").gt(lit(1))]),
            (i64::MIN, i64::MAX)
        );
    }

    #[test]
    fn parser_positions_become_offsets() {
        let sql = "SELECT *\nFROM t WHERE";
        assert_eq!(
            sql_position("sql parser error: x at Line: 2, Column: 6", sql),
            Some(14)
        );
        assert_eq!(sql_position("no position", sql), None);
    }
}
