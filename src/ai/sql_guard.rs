//! The static layer of natural-language queries: the model's SQL must be exactly one read-only
//! SELECT over the tenant's declared views, calling allow-listed functions only. Postgres still
//! enforces the rest (read-only transaction, a role that can read nothing else, a timeout).

use sqlparser::ast::{Expr, ObjectName, Query, SetExpr, Statement, Visit, Visitor};
use sqlparser::dialect::PostgreSqlDialect;
use sqlparser::parser::Parser;
use std::collections::HashSet;
use std::ops::ControlFlow;

/// Functions a query may call: aggregates, and pure scalar functions without side effects.
const FUNCTIONS: &[&str] = &[
    "count",
    "sum",
    "avg",
    "min",
    "max",
    "string_agg",
    "array_agg",
    "bool_and",
    "bool_or",
    "lower",
    "upper",
    "length",
    "char_length",
    "trim",
    "btrim",
    "ltrim",
    "rtrim",
    "left",
    "right",
    "replace",
    "split_part",
    "concat",
    "concat_ws",
    "strpos",
    "coalesce",
    "nullif",
    "greatest",
    "least",
    "abs",
    "round",
    "floor",
    "ceil",
    "date_trunc",
    "date_part",
    "to_char",
    "now",
    "current_date",
    "age",
    "extract",
];

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum Refusal {
    #[error("the SQL does not parse: {0}")]
    Parse(String),
    #[error("exactly one statement is allowed, {0} given")]
    StatementCount(usize),
    #[error("only SELECT queries are allowed")]
    NotSelect,
    #[error("SELECT INTO and row locks (FOR UPDATE/SHARE) are not allowed")]
    Writes,
    #[error("`{0}` is not one of the tenant's data views")]
    Relation(String),
    #[error("the function `{0}` is not allowed")]
    Function(String),
}

/// Checks `sql` against the tenant's declared views (names in schema `ai_views`).
pub fn check(sql: &str, views: &[String]) -> Result<(), Refusal> {
    let statements =
        Parser::parse_sql(&PostgreSqlDialect {}, sql).map_err(|e| Refusal::Parse(e.to_string()))?;
    if statements.len() != 1 {
        return Err(Refusal::StatementCount(statements.len()));
    }
    if !matches!(statements[0], Statement::Query(_)) {
        return Err(Refusal::NotSelect);
    }
    let mut guard = Guard {
        views: views.iter().map(|v| v.to_lowercase()).collect(),
        ctes: HashSet::new(),
    };
    match statements[0].visit(&mut guard) {
        ControlFlow::Break(refusal) => Err(refusal),
        ControlFlow::Continue(()) => Ok(()),
    }
}

struct Guard {
    views: HashSet<String>,
    ctes: HashSet<String>,
}

/// Identifier parts as Postgres sees them: unquoted names fold to lower case.
fn parts(name: &ObjectName) -> Vec<String> {
    name.0
        .iter()
        .map(|part| match part.as_ident() {
            Some(ident) if ident.quote_style.is_none() => ident.value.to_lowercase(),
            Some(ident) => ident.value.clone(),
            None => String::from("<function>"),
        })
        .collect()
}

impl Guard {
    fn relation_allowed(&self, name: &[String]) -> bool {
        match name {
            [only] => self.views.contains(only) || self.ctes.contains(only),
            [schema, view] => schema == "ai_views" && self.views.contains(view),
            _ => false,
        }
    }
}

impl Visitor for Guard {
    type Break = Refusal;

    // Nested statements too: `WITH x AS (DELETE ...)` arrives here as a DELETE.
    fn pre_visit_statement(&mut self, statement: &Statement) -> ControlFlow<Refusal> {
        match statement {
            Statement::Query(_) => ControlFlow::Continue(()),
            _ => ControlFlow::Break(Refusal::NotSelect),
        }
    }

    fn pre_visit_query(&mut self, query: &Query) -> ControlFlow<Refusal> {
        if !query.locks.is_empty() || query.for_clause.is_some() {
            return ControlFlow::Break(Refusal::Writes);
        }
        if let SetExpr::Select(select) = query.body.as_ref()
            && select.into.is_some()
        {
            return ControlFlow::Break(Refusal::Writes);
        }
        if let Some(with) = &query.with {
            for cte in &with.cte_tables {
                self.ctes.insert(cte.alias.name.value.to_lowercase());
            }
        }
        ControlFlow::Continue(())
    }

    fn pre_visit_relation(&mut self, relation: &ObjectName) -> ControlFlow<Refusal> {
        let name = parts(relation);
        if self.relation_allowed(&name) {
            ControlFlow::Continue(())
        } else {
            ControlFlow::Break(Refusal::Relation(name.join(".")))
        }
    }

    fn pre_visit_expr(&mut self, expr: &Expr) -> ControlFlow<Refusal> {
        if let Expr::Function(function) = expr {
            let name = parts(&function.name);
            let allowed = matches!(name.as_slice(), [only] if FUNCTIONS.contains(&only.as_str()));
            if !allowed {
                return ControlFlow::Break(Refusal::Function(name.join(".")));
            }
        }
        ControlFlow::Continue(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn views() -> Vec<String> {
        vec!["inbound_messages".into(), "outbound_messages".into()]
    }

    #[test]
    fn plain_selects_over_declared_views_pass() {
        for sql in [
            "SELECT count(*) FROM inbound_messages",
            "SELECT contact, count(*) FROM ai_views.inbound_messages GROUP BY contact ORDER BY 2 DESC",
            "WITH recent AS (SELECT * FROM outbound_messages WHERE sent_at > now() - interval '7 days') SELECT count(*) FROM recent",
            "SELECT i.contact FROM inbound_messages i JOIN outbound_messages o ON o.contact = i.contact",
            "SELECT date_trunc('day', received_at) d, count(*) FROM Inbound_Messages GROUP BY 1",
        ] {
            assert_eq!(check(sql, &views()), Ok(()), "{sql}");
        }
    }

    #[test]
    fn hostile_sql_is_refused() {
        let refused = |sql: &str| check(sql, &views()).expect_err(sql);
        assert_eq!(refused("DROP TABLE jobs"), Refusal::NotSelect);
        assert_eq!(refused("DELETE FROM jobs"), Refusal::NotSelect);
        assert_eq!(
            refused("UPDATE jobs SET status = 'dead'"),
            Refusal::NotSelect
        );
        assert_eq!(
            refused("SELECT 1; DROP TABLE jobs"),
            Refusal::StatementCount(2)
        );
        assert_eq!(
            refused("SELECT pg_sleep(10)"),
            Refusal::Function("pg_sleep".into())
        );
        assert_eq!(
            refused("SELECT * FROM pg_sleep(10)"),
            Refusal::Relation("pg_sleep".into())
        );
        assert_eq!(
            refused("SELECT * FROM pg_catalog.pg_class"),
            Refusal::Relation("pg_catalog.pg_class".into())
        );
        assert_eq!(
            refused("SELECT * FROM information_schema.tables"),
            Refusal::Relation("information_schema.tables".into())
        );
        assert_eq!(
            refused("SELECT * FROM jobs"),
            Refusal::Relation("jobs".into())
        );
        assert_eq!(
            refused("SELECT * FROM public.kb_chunks"),
            Refusal::Relation("public.kb_chunks".into())
        );
        assert_eq!(
            refused("SELECT * FROM inbound_messages FOR UPDATE"),
            Refusal::Writes
        );
        assert_eq!(
            refused("SELECT * INTO stolen FROM inbound_messages"),
            Refusal::Writes
        );
        assert_eq!(
            refused("WITH x AS (DELETE FROM jobs RETURNING *) SELECT * FROM x"),
            Refusal::NotSelect
        );
        assert_eq!(
            refused("SELECT set_config('app.tenant_id', 'x', false)"),
            Refusal::Function("set_config".into())
        );
        assert_eq!(
            refused("SELECT pg_catalog.count(*) FROM inbound_messages"),
            Refusal::Function("pg_catalog.count".into())
        );
        assert!(matches!(refused("SELEC nonsense"), Refusal::Parse(_)));
        assert_eq!(
            refused("SELECT * FROM (SELECT * FROM ai_views.knowledge_documents) q"),
            Refusal::Relation("ai_views.knowledge_documents".into())
        );
    }
}
